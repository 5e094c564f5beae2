// dtrain/shard/decoder.h: the streaming decoder. Fed chunks in any order (duplicates
// welcome), it verifies each against an opened manifest before writing it at its
// offset, and rebuilds a stripe's missing data chunks from parity as soon as any k of
// its chunks are verified. A delta-coded manifest also needs the base version's bytes:
// each delta-coded chunk is checked against its wire digest, decoded (delta.h) and checked
// against its plain digest before it is written. Rules: docs/shard.md "Decoding",
// "Delta coding".
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/shard/chunker.h"
#include "dtrain/shard/erasure.h"
#include "dtrain/shard/manifest.h"

namespace dtrain::shard {

class decoder {
 public:
  /// Receives verified checkpoint bytes [offset, offset + bytes.size()), each data chunk
  /// exactly once. A non-ok status is returned from add_chunk unchanged (the chunk
  /// counts as not written, so the same chunk may be added again).
  using write_fn = std::function<status(std::uint64_t offset, std::span<const std::byte> bytes)>;
  /// Reads back checkpoint bytes [offset, offset + into.size()) that write_fn wrote
  /// earlier (see set_read_back).
  using read_fn = std::function<status(std::uint64_t offset, std::span<std::byte> into)>;

  /// A decoder writing into `out` (exactly man.total_size bytes, caller-owned, must
  /// outlive the decoder). `man` should come from open_manifest; it is copied.
  /// Errors: invalid_argument when out.size() != man.total_size or check_manifest(man)
  /// fails; failed_precondition for a delta-coded manifest (delta codec != none: use the
  /// overloads taking the base).
  static result<decoder> create(const manifest& man, std::span<std::byte> out);
  /// The same, writing through `write` (a file, a mapped region, a socket). With m > 0
  /// the decoder keeps copies of the verified chunks of stripes still incomplete, so that
  /// it can rebuild them: up to one stripe's bytes per incomplete stripe.
  static result<decoder> create(const manifest& man, write_fn write);
  /// Decoders for a manifest that may be delta-coded: `base` is the checkpoint bytes of
  /// version man.delta_base (caller-owned, must outlive the decoder; ignored when the
  /// manifest is not delta-coded). Which base it is cannot be checked up front: a wrong
  /// base shows as data_loss from add_chunk on the first delta-coded chunk (its plain
  /// digest). `out` may be the very buffer `base` views (same start: each chunk reads
  /// only its own range of the base, before writing it), for an in-place update; no
  /// other overlap. With m > 0, the delta-coded bytes of incomplete stripes are kept for
  /// rebuilds (as write_fn does for every chunk).
  /// Errors: as the two above (never failed_precondition).
  static result<decoder> create(const manifest& man, std::span<std::byte> out, std::span<const std::byte> base);
  static result<decoder> create(const manifest& man, write_fn write, std::span<const std::byte> base);

  /// Verifies chunk `chunk_index` (global order: data chunks, then parity, see
  /// chunker.h) as it travels (man.chunk_length, man.digest) and, if it is a data chunk
  /// not yet written, writes it (delta-coded ones decoded and checked against their
  /// plain digest first). Rebuilds the
  /// chunk's stripe once k of its chunks are verified (the rebuilt chunks are checked
  /// against their digests too). Adding a chunk already held (received or rebuilt)
  /// verifies it and returns ok without writing again.
  /// Errors: out_of_range for an index >= chunk_count(); data_loss naming the chunk when
  /// its length or digest does not match (nothing written: fetch it elsewhere); data_loss
  /// naming the stripe when parity rebuilds data that fails its digest (the origin signed
  /// inconsistent parity: the chunk just added is held, but the stripe is never rebuilt
  /// again and completes only from its own data chunks); data_loss naming the chunk when
  /// a delta-coded chunk (received or rebuilt) does not decode to its plain digest (a
  /// wrong base, or a bad frame signed by the origin: nothing written, the chunk is not
  /// held); a write_fn error unchanged.
  status add_chunk(std::size_t chunk_index, std::span<const std::byte> bytes);

  /// One chunk for add_chunks.
  struct chunk_input {
    std::size_t index = 0;
    std::span<const std::byte> bytes;
  };
  /// add_chunk for several chunks: their digests are computed together first
  /// (hash_chunks: BLAKE2b-256 hashes four at a time on AVX2, about 3x faster per core),
  /// then each is verified and added in the given order, exactly as add_chunk would.
  /// Returns one status per chunk, each as add_chunk would return it; a failure of one
  /// chunk does not stop the others.
  std::vector<status> add_chunks(std::span<const chunk_input> chunks);

  /// For decoders writing through write_fn with parity (m > 0): instead of keeping a copy
  /// of every verified data chunk of an incomplete stripe, read the chunks back through
  /// `read` when a stripe is rebuilt (rarely: only when a data chunk was not fetched).
  /// Saves one allocation and one copy per chunk. Delta-coded chunks are still kept (the
  /// written bytes are their decoded form, not the wire bytes parity covers). Call before
  /// the first add_chunk; no effect on decoders writing into a buffer. A read error
  /// during a rebuild is returned from add_chunk unchanged (the rebuild is retried when a
  /// chunk of the stripe is added again). Bytes read back are not re-verified one by one,
  /// but every rebuilt chunk is checked against its digest before it is written.
  void set_read_back(read_fn read) { read_ = std::move(read); }

  /// True once every data chunk has been written (received or rebuilt).
  bool complete() const noexcept { return data_left_ == 0; }
  /// What must still be fetched: for each incomplete stripe, the first (k − held) of
  /// its missing data chunks (any other missing chunk of that stripe, parity included,
  /// can stand in for one of them); with m = 0, for a stripe whose parity proved
  /// inconsistent, or one whose rebuild a failed write interrupted, every missing data
  /// chunk. Ascending.
  std::vector<std::size_t> missing_chunks() const;
  /// True when chunk i is held: verified, or (a data chunk) rebuilt.
  bool has_chunk(std::size_t i) const noexcept { return i < have_.size() && have_[i] != 0; }
  std::size_t chunk_count() const noexcept { return have_.size(); }
  const manifest& man() const noexcept { return man_; }

 private:
  decoder() = default;
  static result<decoder> make(const manifest& man, std::span<std::byte> out, write_fn write,
                              std::optional<std::span<const std::byte>> base);
  status write(std::size_t data_index, std::span<const std::byte> bytes);
  status check_shape(std::size_t chunk_index, std::span<const std::byte> bytes) const;
  status add_hashed(std::size_t chunk_index, std::span<const std::byte> bytes, const chunk_digest& got);
  // Wire bytes of data chunk i (verified) -> its plain bytes (into scratch_ unless raw).
  result<std::span<const std::byte>> plain(std::size_t data_index, std::span<const std::byte> wire);
  bool keep_wire(std::size_t data_index) const noexcept {
    return (write_ != nullptr && read_ == nullptr) || man_.delta_coded(data_index);
  }
  std::size_t stripe_of(std::size_t i) const noexcept;
  status try_rebuild(std::size_t stripe);

  manifest man_;
  stripe_layout layout_;
  std::optional<rs_code> code_;
  std::span<std::byte> out_;
  write_fn write_;
  read_fn read_;
  std::span<const std::byte> base_;
  std::vector<std::byte> scratch_;           // a decoded delta chunk
  std::vector<std::uint8_t> have_;           // per global chunk
  std::vector<std::size_t> stripe_held_;     // chunks held per stripe, virtual zero chunks included
  std::vector<std::uint8_t> stripe_done_;    // every data chunk of the stripe written
  std::vector<std::uint8_t> stripe_bad_;     // parity rebuilt a chunk with a wrong digest
  std::vector<std::vector<std::byte>> kept_; // per global chunk: copy kept for a rebuild
  std::size_t data_left_ = 0;
};

}  // namespace dtrain::shard
