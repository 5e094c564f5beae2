// dtrain/net/shared_state.h: named, revisioned tensors that every peer of a group keeps
// identical (model weights, optimizer state), and sync_shared_state(), the collective
// that votes on them and moves only the tensors that differ, chunked, from several
// up-to-date peers at once. Design and rules: docs/shared_state.md; every byte on the
// wire: docs/formats/shared_state_messages.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dtrain/core/dtype.h"
#include "dtrain/core/hash.h"
#include "dtrain/core/status.h"
#include "dtrain/net/transport.h"

namespace dtrain::net {

/// Default chunk size of a transfer and of the per-chunk hashes: 4 MiB.
inline constexpr std::uint64_t default_chunk_bytes = 4u << 20;
/// Largest accepted chunk size (1 GiB): one chunk is one transport message.
inline constexpr std::uint64_t max_chunk_bytes = 1u << 30;
/// Longest tensor name, in bytes.
inline constexpr std::size_t max_tensor_name = 1024;

/// One registered tensor: the caller's memory, viewed as bytes.
struct shared_tensor {
  std::string name;             ///< unique, 1..max_tensor_name bytes (any bytes)
  std::span<std::byte> data;    ///< caller-owned; sync_shared_state() may overwrite it
  std::optional<dtype> type;    ///< element type (documentation; must agree across peers)
};

/// The state a group keeps identical: a revision (u64, the caller's step counter) and a
/// set of named tensors in caller-owned memory, kept sorted by name (byte-wise, unsigned).
/// Not thread-safe; the memory must outlive the object and must not change while a sync
/// runs.
class shared_state {
 public:
  shared_state() = default;
  explicit shared_state(std::uint64_t revision) noexcept : revision_(revision) {}

  /// Registers `data` under `name`. Zero-length tensors are allowed.
  /// Errors: invalid_argument when the name is empty, longer than max_tensor_name or
  /// already registered, or when `type` is given and data.size() is not a multiple of its
  /// element size. On error nothing is registered.
  status add(std::string name, std::span<std::byte> data, std::optional<dtype> type = std::nullopt);

  /// Number of tensors.
  std::size_t size() const noexcept { return tensors_.size(); }
  /// Tensor i in name order. @pre i < size()
  const shared_tensor& tensor(std::size_t i) const noexcept;
  /// The tensor called `name`, or nullptr.
  const shared_tensor* find(std::string_view name) const noexcept;
  /// Sum of the tensors' byte sizes.
  std::uint64_t total_bytes() const noexcept;

  std::uint64_t revision() const noexcept { return revision_; }
  void set_revision(std::uint64_t r) noexcept { revision_ = r; }

  /// XXH3-128 (seed 0) of the tensor's current bytes, computed now.
  /// Errors: invalid_argument when no tensor has that name.
  result<hash128> hash(std::string_view name) const;

 private:
  std::vector<shared_tensor> tensors_;
  std::uint64_t revision_ = 0;
};

/// How a peer takes part in the vote (after PCCL's shared-state strategies).
enum class sync_strategy : std::uint8_t {
  /// Votes with its hashes; pulls what lost, serves what won. The default.
  vote = 0,
  /// Abstains: its hashes and revision are not counted and it never serves; it pulls
  /// every tensor whose hash differs from the winner's. For joiners with blank state.
  receive_only = 1,
  /// Votes and serves, and must win: if any of its tensors loses the vote, the sync fails
  /// with failed_precondition on every peer. It never pulls.
  send_only = 2,
};

/// Options of one sync. chunk_bytes must be equal on every peer.
struct sync_options {
  /// Deadline of the whole call, from its start.
  std::chrono::milliseconds timeout{60000};
  /// Tag channel (make_tag()); operations in flight at once on one transport need
  /// distinct channels or sequences.
  std::uint32_t channel = 0;
  /// Transfer unit and per-chunk hash unit, 1..max_chunk_bytes.
  std::uint64_t chunk_bytes = default_chunk_bytes;
  sync_strategy strategy = sync_strategy::vote;
  /// Chunk sends a serving peer keeps posted at once (>= 1). Receives are all posted up
  /// front into the scratch buffer, so senders never wait on each other (no deadlock).
  std::size_t max_inflight_sends = 8;
};

/// What one sync did on this peer. Byte counts are chunk payload only (the manifests and
/// control messages are not counted; transport::stats() has everything).
struct sync_report {
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::size_t chunks_sent = 0;
  std::size_t chunks_received = 0;
  std::size_t tensors_pulled = 0;                 ///< tensors this peer replaced
  std::vector<std::uint64_t> received_from;       ///< chunk bytes received per source rank
  std::vector<std::uint64_t> sent_to;             ///< chunk bytes sent per destination rank
  std::uint64_t revision = 0;                     ///< the winning revision, now this peer's
  std::uint64_t previous_revision = 0;            ///< this peer's revision before the call
  bool outdated = false;                          ///< some tensor of this peer lost the vote
};

/// Synchronizes `state` with every other peer of `t`; all peers call it together with the
/// same `sequence` (tags: make_tag(o.channel, sequence, step)).
///
/// 1. Every peer hashes its tensors (whole and per chunk) and all-gathers the manifests.
/// 2. The tensor sets (names, byte sizes, element types) must agree, and so must
///    chunk_bytes. Per tensor, among the voting peers (not receive_only), the hash held by
///    the most peers wins; a tie goes to the hash whose holders include the higher
///    revision, then to the one held by the lowest rank. The winning revision is the
///    highest revision among voters holding every winning hash, or, if none does, among
///    voters holding at least one. Every peer computes the same from the same manifests.
/// 3. A peer whose hash differs pulls that tensor: chunk c of the tensor with sorted index
///    i comes from holder h[(c + i + rank) mod k] of its k voting holders (ascending rank),
///    all receives posted at once, all holders sending in parallel.
/// 4. Chunks land in a scratch buffer allocated by the call (the bytes of the tensors
///    pulled) and are verified against the winner's per-chunk and whole hashes.
/// 5. Every peer tells every other whether it succeeded; only when all did does each
///    copy its pulled tensors into the caller's memory and take the winning revision.
///
/// Afterwards every tensor's hash equals the winner's on every peer.
/// Errors (on every error this peer's tensors and revision are unchanged and no
/// operation is left posted):
/// - invalid_argument: bad options (timeout <= 0, channel >= 2^24, chunk_bytes out of
///   range, max_inflight_sends 0, unknown strategy); identical on every peer only if the
///   options are;
/// - failed_precondition: the tensor sets or chunk_bytes differ between peers (naming the
///   first differing tensor and the rank), every peer is receive_only, or a send_only
///   peer lost a vote; identical on every peer;
/// - data_loss: a corrupt or malformed manifest (naming its sender), or a chunk or a
///   whole tensor that does not match the winner's hash (naming the holder that sent it);
///   a peer that detects it reports it to every other, which fail with data_loss too;
/// - aborted / deadline_exceeded: from the transport (a peer died, or time ran out); a
///   peer that only hears another's failure gets that peer's code.
/// Deterministic. Allocates the manifests and the scratch buffer.
result<sync_report> sync_shared_state(transport& t, shared_state& state, const sync_options& o,
                                      std::uint32_t sequence);

// ---- wire format (docs/formats/shared_state_messages.md) ---------------------------------

/// Element type code of a manifest entry: 0 f32, 1 f16, 2 bf16, 0xFF untyped bytes.
inline constexpr std::uint8_t untyped_code = 0xFF;

/// One tensor of a manifest.
struct manifest_entry {
  std::string name;
  std::uint64_t bytes = 0;
  std::uint8_t type = untyped_code;
  hash128 hash;
  std::vector<hash128> chunks;  ///< ceil(bytes / chunk_bytes) per-chunk hashes
};

/// What a peer tells the others about its state.
struct manifest {
  std::uint64_t revision = 0;
  std::uint64_t chunk_bytes = default_chunk_bytes;
  sync_strategy strategy = sync_strategy::vote;
  std::vector<manifest_entry> tensors;  ///< strictly increasing names
};

/// Hashes every tensor of `s` (whole and per chunk of `chunk_bytes`).
/// @pre 1 <= chunk_bytes <= max_chunk_bytes
manifest make_manifest(const shared_state& s, std::uint64_t chunk_bytes, sync_strategy strategy);

/// Number of chunks of a tensor of `bytes` bytes: ceil(bytes / chunk_bytes).
constexpr std::uint64_t chunk_count(std::uint64_t bytes, std::uint64_t chunk_bytes) noexcept {
  return bytes / chunk_bytes + (bytes % chunk_bytes != 0 ? 1 : 0);
}

/// Encoded size of `m` in bytes.
std::size_t encoded_manifest_bytes(const manifest& m) noexcept;
/// Writes `m` into out[0, encoded_manifest_bytes(m)) and returns that size.
/// Errors: invalid_argument when `out` is too small, or `m` breaks a rule the decoder
/// checks (names not strictly increasing or of bad length, chunk list of the wrong
/// length, chunk_bytes out of range, unknown type code).
result<std::size_t> encode_manifest(const manifest& m, std::span<std::byte> out);
/// Parses and validates a manifest: every length against the message, the checksum,
/// version, strategy, reserved bytes, chunk_bytes, type codes, name order and chunk
/// counts. Never reads out of bounds; allocates at most what the message's size allows.
/// Errors: data_loss (any rule broken), unimplemented (a newer version). `out` is
/// unchanged on error.
status decode_manifest(std::span<const std::byte> msg, manifest& out);

/// Control messages (16 bytes each): the manifest size announced before the manifests,
/// and each peer's outcome after the transfer.
inline constexpr std::size_t control_bytes = 16;
/// Writes the hello message announcing a manifest of `manifest_size` bytes.
void encode_hello(std::span<std::byte, control_bytes> out, std::uint64_t manifest_size) noexcept;
/// Errors: data_loss (wrong length, magic, kind, reserved bytes, or a size above
/// `max_size`), unimplemented (newer version).
result<std::uint64_t> decode_hello(std::span<const std::byte> msg, std::uint64_t max_size);
/// A peer's outcome: `code` (ok or the failure), `culprit` the rank that sent bad bytes or
/// 0xFFFFFFFF.
struct sync_outcome {
  status_code code = status_code::ok;
  std::uint32_t culprit = 0xFFFFFFFFu;
};
void encode_outcome(std::span<std::byte, control_bytes> out, const sync_outcome& v) noexcept;
/// Errors: data_loss (wrong length, magic, kind, reserved bytes, unknown code),
/// unimplemented (newer version).
result<sync_outcome> decode_outcome(std::span<const std::byte> msg);

}  // namespace dtrain::net
