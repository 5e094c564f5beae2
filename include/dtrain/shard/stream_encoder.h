// dtrain/shard/stream_encoder.h: streaming checkpoint encoding. Bytes go in as a trainer
// serialises them; each chunk (data, then its stripe's parity) goes out to a sink as soon
// as it is final; finish() gives the manifest encode() would give for the same bytes.
// Rules and memory bound: docs/shard.md "Streaming encoding".
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/shard/chunker.h"
#include "dtrain/shard/encoder.h"
#include "dtrain/shard/manifest.h"

namespace dtrain::shard {

/// Encodes a checkpoint whose bytes arrive in pieces. Chunking, digests, parity, delta
/// coding and the manifest are exactly encode()'s / encode_tensors()'s; only the bytes
/// are not all in memory at once. Memory, allocated by create(): one stripe of data
/// chunks and its m parity chunks (k + m chunks of the plan's longest chunk length, at
/// most chunk_size), or one chunk without parity (m = 0), plus the manifest's tables;
/// with delta coding also the delta-coded forms of the current stripe's chunks (each
/// smaller than its chunk). Movable, not copyable; one object is not safe to use from
/// several threads at once. A moved-from encoder answers every call with
/// failed_precondition.
class stream_encoder {
 public:
  /// Receives each chunk as soon as it is final, by global index (chunker.h): data chunks
  /// as they complete, in order; a stripe's m parity chunks right after its last data
  /// chunk, before the next stripe's first. Bytes are as they travel (encoded_checkpoint::
  /// chunk(i): delta-coded when the manifest says so). Each index is delivered exactly
  /// once. The span is valid only during the call. A non-ok status stops the encoder: it
  /// is returned from write() unchanged and the encoder refuses further calls. The sink
  /// must not call back into the encoder (such a call gets failed_precondition).
  using chunk_sink = std::function<status(std::size_t index, std::span<const std::byte> bytes)>;

  /// A byte file of exactly `total_size` bytes (plan_file_chunks). With opts.delta_base,
  /// the base's bytes are read during write() and must outlive the encoder.
  /// Errors: invalid_argument exactly where encode() gives it for the same size and
  /// options (chunk size, erasure parameters, hash algorithm, delta base version, zstd
  /// level), and for an empty sink.
  static result<stream_encoder> create(std::uint64_t total_size, const encode_options& opts, chunk_sink sink);
  /// Contiguous named tensors (plan_tensor_chunks): the checkpoint is their bytes in list
  /// order, the sum of their sizes; the manifest carries the tensor table.
  /// Errors: invalid_argument as encode_tensors() (also a name, dtype or shape the
  /// manifest cannot hold), and for an empty sink.
  static result<stream_encoder> create_tensors(std::span<const tensor_desc> tensors, const encode_options& opts,
                                               chunk_sink sink);

  stream_encoder(stream_encoder&&) noexcept;
  stream_encoder& operator=(stream_encoder&&) noexcept;
  stream_encoder(const stream_encoder&) = delete;
  stream_encoder& operator=(const stream_encoder&) = delete;
  ~stream_encoder();

  /// Appends the next bytes of the checkpoint (any split; an empty span is a no-op) and
  /// hands every chunk they complete to the sink before returning. `bytes` may be
  /// released as soon as write() returns. Deterministic: the chunks and the manifest do
  /// not depend on how the input is split.
  /// Errors (each one stops the encoder: later calls get failed_precondition):
  /// out_of_range when more than total_size bytes would have arrived (checked before any
  /// of them is used: nothing more reaches the sink); failed_precondition after finish()
  /// or after an earlier error; the sink's error unchanged; internal if zstd fails.
  status write(std::span<const std::byte> bytes);

  /// After exactly total_size bytes: the unsigned manifest, equal to encode()'s for the
  /// same bytes and options (sign_manifest gives the same bytes). Every chunk has reached
  /// the sink by then (the last write() delivered them); the buffers are released.
  /// Errors (each one stops the encoder): failed_precondition when bytes are missing (the
  /// message says how many) or after finish() or an earlier error.
  result<manifest> finish();

  /// Checkpoint bytes received so far, and the total create() was given.
  std::uint64_t bytes_written() const noexcept;
  std::uint64_t total_size() const noexcept;

 private:
  struct impl;
  explicit stream_encoder(std::unique_ptr<impl> p) noexcept;
  static result<stream_encoder> make(std::uint64_t total_size, std::vector<chunk_span> plan,
                                     std::vector<tensor_entry> tensors, const encode_options& opts, chunk_sink sink);
  std::unique_ptr<impl> impl_;
};

}  // namespace dtrain::shard
