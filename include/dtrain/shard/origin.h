// dtrain/shard/origin.h: the origin publisher. Encodes and signs a checkpoint, writes
// it as a complete version directory that appears with one rename, then moves `latest`,
// then prunes old versions: any static HTTP server serving the root is an origin.
// Layout: docs/formats/shard_layout.md; rules: docs/shard.md "Distribution".
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/crypto/identity.h"
#include "dtrain/shard/chunker.h"
#include "dtrain/shard/encoder.h"
#include "dtrain/shard/layout.h"
#include "dtrain/shard/stream_encoder.h"

namespace dtrain::shard {

struct publisher_options {
  std::filesystem::path root;  ///< created when missing; owned by this publisher alone
  crypto::identity origin;     ///< signs every manifest
  std::size_t keep_versions = 5;  ///< >= 1: version directories kept, the latest included
  /// Chunking, hashing and erasure parameters. `version` is ignored (the publisher sets
  /// it); created_unix 0 means "now" (the system clock); delta_base is ignored (see
  /// delta_from_previous).
  encode_options encoding;
  /// Delta-code each version against the one this publisher object published just
  /// before it (XOR + zstd at encoding.zstd_level, docs/shard.md "Delta coding"); the
  /// publisher keeps a copy of the last checkpoint's bytes for that. The first version
  /// after create() goes out in full. A client decodes a delta-coded version only with
  /// the previous version in its out_dir (fetch() says failed_precondition otherwise),
  /// so use it where every client fetches every version, as peers do at each outer step.
  bool delta_from_previous = false;
};

class publisher;

/// One version being published from a stream (publisher::begin): the checkpoint's bytes
/// go in as they are produced, each chunk file is written into the version's temp
/// directory as soon as it is final, and commit() makes the version appear. Memory is
/// one stripe, not the checkpoint (stream_encoder.h). Destroying it before commit()
/// removes the temp directory: nothing is published. Movable, not copyable.
class publication {
 public:
  publication(publication&&) noexcept;
  publication& operator=(publication&&) noexcept;
  publication(const publication&) = delete;
  publication& operator=(const publication&) = delete;
  ~publication();

  /// Appends the checkpoint's next bytes (any split). Errors: as stream_encoder::write
  /// (out_of_range for bytes past the announced size), unavailable when a chunk file
  /// cannot be written, failed_precondition after commit() or an earlier error. Any
  /// error ends the publication: commit() then fails and nothing is published.
  status write(std::span<const std::byte> bytes);
  /// After exactly the announced bytes: signs the manifest, writes it, renames the
  /// version directory into place, replaces `latest`, prunes (as publish()). Returns the
  /// version. Errors: failed_precondition when bytes are missing, after an error, or
  /// when called twice; as publish() otherwise.
  result<std::uint64_t> commit();
  std::uint64_t version() const noexcept { return version_; }

 private:
  friend class publisher;
  publication() = default;
  publisher* pub_ = nullptr;
  std::unique_ptr<version_writer> writer_;  // on the heap: the encoder's sink points at it
  std::optional<stream_encoder> enc_;
  std::uint64_t version_ = 0;
  bool failed_ = false;
};

/// Publishes checkpoint versions into a directory. Movable; not thread-safe (one thread
/// publishes), and a root must have one writer (publisher or relay) at a time. Readers
/// (HTTP servers, clients) may read the root at any moment.
class publisher {
 public:
  /// Creates root if needed, removes leftovers of interrupted publishes (".tmp-*"),
  /// and reads `latest`.
  /// Errors: invalid_argument for keep_versions 0 or an empty root; data_loss for a
  /// malformed `latest`; unavailable on a filesystem error.
  static result<publisher> create(publisher_options opts);

  /// Publishes `checkpoint_bytes` as version max(latest, newest version directory) + 1.
  /// Returns the version. Errors: as the explicit overload.
  result<std::uint64_t> publish(std::span<const std::byte> checkpoint_bytes);
  /// Publishes as `version`, which must be greater than every version present.
  /// In order: encode and sign (nothing written when this fails); write
  /// .tmp-v<version>-<random>/ (chunks, manifest, each fsynced, then the directories);
  /// rename it to v<version>; replace `latest`; prune to keep_versions. A failure before
  /// the rename leaves the root as it was; after it, v<version> exists and `latest` may
  /// still name the previous version (publish the next version to move on).
  /// Errors: invalid_argument for version 0 or bad encoding options; failed_precondition
  /// when `version` is not above every version present; unavailable on a filesystem error.
  result<std::uint64_t> publish(std::span<const std::byte> checkpoint_bytes, std::uint64_t version);
  /// The same for contiguous named tensors (encode_tensors: chunk boundaries at big
  /// tensors, the manifest carries the tensor table).
  result<std::uint64_t> publish_tensors(std::span<const tensor_desc> tensors, std::span<const std::byte> bytes);
  result<std::uint64_t> publish_tensors(std::span<const tensor_desc> tensors, std::span<const std::byte> bytes,
                                        std::uint64_t version);

  /// Starts publishing the next version from a stream of `total_size` bytes (a file) or
  /// of the tensors' bytes in list order: write() them as the trainer serialises, then
  /// commit(). Same chunking, parity and manifest as publish() for the same bytes.
  /// Streamed versions go out in full (delta_from_previous needs the previous bytes in
  /// memory), and the next publish() after one goes out in full too. The publisher must
  /// outlive the publication and must not be moved or publish anything else meanwhile.
  /// Errors: invalid_argument for bad encoding options or tensors (as encode());
  /// unavailable on a filesystem error.
  result<publication> begin(std::uint64_t total_size);
  result<publication> begin_tensors(std::span<const tensor_desc> tensors);

  /// The version `latest` names (0 before the first publish).
  std::uint64_t latest() const noexcept { return latest_; }
  const std::filesystem::path& root() const noexcept { return opts_.root; }
  const crypto::peer_id& origin_id() const noexcept { return opts_.origin.id(); }

 private:
  explicit publisher(publisher_options opts) : opts_(std::move(opts)) {}
  result<std::uint64_t> next_version() const;
  result<std::uint64_t> write(const encoded_checkpoint& enc, std::uint64_t version);
  // Signs `man`, writes the manifest, commits `w`, moves `latest`, prunes.
  result<std::uint64_t> finish_version(version_writer& w, const manifest& man, std::uint64_t version);
  result<publication> begin_with(std::uint64_t version,
                                 const std::function<result<stream_encoder>(stream_encoder::chunk_sink)>& make);
  friend class publication;
  encode_options options_for(std::uint64_t version) const;
  void remember(std::span<const std::byte> bytes, std::uint64_t version);

  publisher_options opts_;
  std::uint64_t latest_ = 0;
  std::vector<std::byte> previous_;  // delta_from_previous: the last published bytes
  std::uint64_t previous_version_ = 0;  // 0: none (the next version goes out in full)
};

}  // namespace dtrain::shard
