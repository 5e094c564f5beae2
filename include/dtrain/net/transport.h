// dtrain/net/transport.h: the point-to-point transport every collective is written
// against: tagged sends and receives into caller buffers, a deadline per operation,
// abort, typed errors and byte counters. Implementations: transport_inproc.h (threads in
// one process); the TCP transport implements the same interface.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::net {

/// A peer's index in its group, 0 <= rank < size().
using rank_t = std::uint32_t;
/// Message tag. Collectives build tags with make_tag() so concurrent operations on one
/// transport never match each other's messages.
using tag_t = std::uint64_t;
using clock = std::chrono::steady_clock;
/// Absolute time after which an operation gives up.
using deadline = clock::time_point;

/// A deadline `timeout` from now (saturating; a huge timeout means no deadline).
inline deadline after(std::chrono::milliseconds timeout) noexcept {
  const auto now = clock::now();
  if (timeout >= std::chrono::duration_cast<std::chrono::milliseconds>(deadline::max() - now))
    return deadline::max();
  return now + timeout;
}
/// Waits that never time out (use only where another mechanism bounds the wait).
inline constexpr deadline no_deadline = deadline::max();

/// Tag layout: channel (bits 63..40) | sequence (bits 39..16) | step (bits 15..0).
/// `channel` names a collective instance, `sequence` counts its runs (wrapping mod 2^24)
/// and `step` is the message's place in one run. Two operations in flight on one
/// transport must differ in channel or sequence.
constexpr tag_t make_tag(std::uint32_t channel, std::uint32_t sequence, std::uint32_t step) noexcept {
  return (tag_t{channel & 0xFFFFFFu} << 40) | (tag_t{sequence & 0xFFFFFFu} << 16) | tag_t{step & 0xFFFFu};
}

/// Handle of a posted operation. wait() retires it exactly once.
struct op {
  std::uint64_t id = 0;
};

/// Bytes moved by one endpoint, per peer (index = peer rank), over completed operations.
struct transport_stats {
  std::vector<std::uint64_t> sent;      ///< payload bytes whose send completed, per destination
  std::vector<std::uint64_t> received;  ///< payload bytes received, per source
  std::uint64_t total_sent() const noexcept;
  std::uint64_t total_received() const noexcept;
};

/// One peer's endpoint. All methods are thread-safe; several operations may be in flight
/// at once, told apart by (peer, tag). Messages with the same (sender, receiver, tag)
/// match in posting order. Nothing here throws.
class transport {
 public:
  virtual ~transport() = default;

  virtual rank_t rank() const noexcept = 0;
  virtual std::size_t size() const noexcept = 0;

  /// Posts a send of `data` to `to` under `tag`. The bytes must stay valid and unchanged
  /// until wait() retires the op. Completes when the bytes are handed to the receiver
  /// (in-process) or to the network (TCP); it does not wait for a matching receive to
  /// finish elsewhere.
  /// Errors: invalid_argument for to == rank() or to >= size(); aborted when this
  /// endpoint was aborted or `to` is known to be gone (no op is created).
  virtual result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) = 0;

  /// Posts a receive of one message from `from` under `tag` into `buf`. The message may
  /// be shorter than `buf`; wait() returns its length.
  /// Errors: as post_send().
  virtual result<op> post_recv(rank_t from, tag_t tag, std::span<std::byte> buf) = 0;

  /// Waits until `o` completes or `d` passes, and retires it. Whatever it returns, the
  /// op's buffer is no longer referenced afterwards. Returns the bytes transferred.
  /// Errors:
  /// - deadline_exceeded: `d` passed first; the op was cancelled (a receive buffer's
  ///   contents are then unspecified; a cancelled send may or may not have been delivered);
  /// - aborted: abort() was called on this endpoint, or the peer is gone (crashed,
  ///   killed, disconnected): redo the round with the survivors;
  /// - resource_exhausted: the incoming message was longer than the receive buffer (the
  ///   message is dropped; `buf` unspecified);
  /// - invalid_argument: `o` is not a pending op of this endpoint.
  virtual result<std::size_t> wait(op o, deadline d) = 0;

  /// Fails every pending and future operation of this endpoint with `aborted`, until
  /// reset(). Safe to call from any thread, e.g. to interrupt a collective.
  virtual void abort() noexcept = 0;
  /// Makes an aborted endpoint usable again. Pending operations stay failed; messages
  /// that arrive later for tags nobody waits on are kept until matched, so a redone round
  /// must use a fresh sequence number (make_tag()).
  virtual void reset() noexcept = 0;

  /// Per-peer byte counters since construction.
  virtual transport_stats stats() const = 0;
};

/// post_send() then wait(). Errors: those of both.
status send(transport& t, rank_t to, tag_t tag, std::span<const std::byte> data, deadline d);
/// post_recv() then wait(); returns the message length. Errors: those of both.
result<std::size_t> recv(transport& t, rank_t from, tag_t tag, std::span<std::byte> buf, deadline d);

/// Waits for every op in `ops` (all are retired, even after an error) and returns the
/// first error by position, or ok. Use it to finish a batch of posted operations without
/// leaving any op referencing a buffer.
status wait_all(transport& t, std::span<const op> ops, deadline d);

}  // namespace dtrain::net
