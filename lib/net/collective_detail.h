// lib/net/collective_detail.h: internals shared by the global averaging collectives
// (ring, butterfly, sparse all-gather): chunking, the 24-byte message header of
// docs/formats/collective_messages.md, option checks, and a batch of posted operations that is always
// retired, even on error. Not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dtrain/codec/codec.h"
#include "dtrain/core/status.h"
#include "dtrain/net/collective_options.h"
#include "dtrain/net/transport.h"

namespace dtrain::net::detail {

/// A contiguous piece [offset, offset + size) of a vector.
struct range {
  std::size_t offset = 0;
  std::size_t size = 0;
};

/// Piece j of `count` elements split into `parts` contiguous pieces whose sizes differ by
/// at most one: the first count % parts pieces hold one element more. @pre j < parts.
constexpr range split(std::size_t count, std::size_t parts, std::size_t j) noexcept {
  const std::size_t base = count / parts, extra = count % parts;
  return {j * base + (j < extra ? j : extra), base + (j < extra ? 1 : 0)};
}

/// Message kinds of the header (docs/formats/collective_messages.md).
enum class msg_kind : std::uint8_t {
  meta = 1,          ///< ring: weight, flags and norm of one peer, all-to-all before the ring
  contribution = 2,  ///< butterfly: a peer's encoded chunk for its owner
  result = 3,        ///< butterfly: an owner's encoded mean of its chunk
  gather = 4,        ///< sparse all-gather: a peer's encoded vector
};

inline constexpr std::uint16_t flag_nonfinite = 1;  ///< the sender's input holds NaN/Inf; no payload
inline constexpr std::uint16_t flag_failed = 2;     ///< result: the owner could not aggregate; no payload

struct msg_header {
  msg_kind kind = msg_kind::meta;
  std::uint16_t flags = 0;
  float weight = 0.0f;    ///< sender's weight; result: the weight sum W
  float norm = 0.0f;      ///< meta: the sender's L2 norm for median clipping, else 0
  std::uint32_t a = 0;    ///< result: contributors (ok) or the status_code of the failure (failed)
  std::uint32_t b = 0;    ///< result: dropped (ok) or the offending rank (failed)
};

inline constexpr std::size_t header_bytes = 24;
inline constexpr std::uint32_t header_magic = 0x48435444u;  // "DTCH" little-endian
inline constexpr std::uint8_t header_version = 1;

/// Writes `h` into out[0, 24). @pre out.size() >= header_bytes.
void write_header(std::span<std::byte> out, const msg_header& h) noexcept;

/// Parses and validates the header at the start of a message of `kind` from rank `from`.
/// Errors: data_loss (short, bad magic, wrong kind, unknown flags, weight or norm not
/// finite and >= 0), unimplemented (newer header version), each naming `who` and `from`.
status parse_header(std::span<const std::byte> msg, msg_kind kind, std::string_view who, rank_t from,
                    msg_header& out);

/// Checks the options every global collective shares: weight finite and >= 0, timeout >
/// 0, channel < 2^24, trim_fraction in [0, 0.5). Errors: invalid_argument naming the field.
status check_options(const collective_options& o, std::string_view who);

/// Builds the wire codec from o.codec, refusing the error-feedback decorator (the
/// collective returns the residual; error feedback is the caller's job).
/// Errors: invalid_argument (bad spec, or "ef:").
result<std::unique_ptr<codec::codec>> make_wire_codec(std::string_view spec, std::string_view who);

/// Turns a codec error on a peer's payload into data_loss naming the peer.
status corrupt_payload(std::string_view who, rank_t from, const status& why);

/// A batch of posted operations. wait() retires every op; on the first error it cancels
/// the rest (each is waited with an already-passed deadline, which retires it) so no op
/// references a buffer after the call. The destructor cancels whatever is still posted.
/// Never allocates after reserve().
class op_batch {
 public:
  op_batch(transport& t, std::string_view who) : t_(t), who_(who) {}
  ~op_batch() { cancel(); }
  op_batch(const op_batch&) = delete;
  op_batch& operator=(const op_batch&) = delete;

  void reserve(std::size_t n) { ops_.reserve(n); }

  /// Posts a send; on error (aborted, invalid_argument) the batch is cancelled.
  status send(rank_t to, tag_t tag, std::span<const std::byte> data);
  /// Posts a receive; wait() stores the message length in *len (if non-null).
  status recv(rank_t from, tag_t tag, std::span<std::byte> buf, std::size_t* len);
  /// Waits for every op in posting order until `d`. Errors: the transport's (aborted,
  /// deadline_exceeded), with resource_exhausted (a message longer than expected) turned
  /// into data_loss naming the peer. The batch is empty afterwards.
  status wait(deadline d);
  /// Retires every op at once (cancelling the ones not yet matched).
  void cancel() noexcept;
  /// Best-effort send (failure notices): a post error is ignored and cancels nothing.
  void try_send(rank_t to, tag_t tag, std::span<const std::byte> data) noexcept;
  /// Waits for every op until `d`, ignoring errors (after try_send()).
  void settle(deadline d) noexcept;
  bool empty() const noexcept { return ops_.empty(); }

 private:
  struct entry {
    op o;
    rank_t peer;
    bool is_recv;
    std::size_t* len;
  };
  transport& t_;
  std::string_view who_;
  std::vector<entry> ops_;
};

}  // namespace dtrain::net::detail
