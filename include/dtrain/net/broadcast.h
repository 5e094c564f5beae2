// dtrain/net/broadcast.h: byte broadcast from one root to every peer of a transport: a
// binomial tree for data that fits one small message, a pipelined chain (root → root+1
// → ... in rank order, cut into segments) for everything else. Algorithm choice, cost and
// tags: docs/collectives.md ("All-gather and broadcast").
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "dtrain/core/status.h"
#include "dtrain/net/transport.h"

namespace dtrain::net {

/// Options of broadcast(). Every peer of one call must pass the same values.
struct broadcast_options {
  /// Deadline of the whole call, from its start. > 0.
  std::chrono::milliseconds timeout{30000};
  /// Tag channel (make_tag()), < 2^24. Operations in flight at once on one transport need
  /// distinct (channel, sequence) pairs.
  std::uint32_t channel = 0;
  /// Run counter (low 24 bits used). Bump it for every call on a channel, failed ones
  /// included (a failed call can leave messages behind).
  std::uint32_t sequence = 0;
  /// Largest chain message; at most 4 segments per direction are in flight on a peer.
  /// >= 1; default 4 MiB.
  std::size_t max_segment_bytes = std::size_t{4} << 20;
  /// Data of at most this many bytes (and at most max_segment_bytes) goes down a binomial
  /// tree as one message; larger data goes down the chain. 0 disables the tree except for
  /// empty data. Default 64 KiB.
  std::size_t tree_max_bytes = std::size_t{64} << 10;
};

/// The two broadcast algorithms.
enum class broadcast_algorithm : std::uint8_t {
  /// Binomial tree, one message per edge: ceil(log2 n) message times; the root sends
  /// ceil(log2 n) copies. Best when latency dominates.
  binomial_tree = 0,
  /// Pipelined chain of segments: about n − 2 + ceil(size / segment) segment times, and no
  /// peer sends more than one copy: bandwidth-optimal for large data.
  chain = 1,
};

/// The algorithm broadcast() uses for `bytes` bytes under `o` (deterministic, so equal on
/// every peer that passes the same size and options): binomial_tree when bytes == 0 or
/// bytes <= min(o.tree_max_bytes, o.max_segment_bytes), else chain.
broadcast_algorithm broadcast_choice(std::size_t bytes, const broadcast_options& o) noexcept;

/// "binomial_tree" or "chain".
std::string_view broadcast_algorithm_name(broadcast_algorithm a) noexcept;

/// Copies the root's `data` into every other peer's `data`. Every peer of the transport
/// takes part and passes the same root, the same data.size() and the same options.
/// Non-roots receive straight into `data` (no staging copy, no allocation); empty data
/// still sends one empty message per tree edge, so an empty non-root meets a non-empty
/// root as a size mismatch.
///
/// Contract on `data`: the root's is only read, on success and on every error. A
/// non-root's holds the root's bytes on success; on error its content is unspecified
/// (partly received).
/// Errors:
/// - invalid_argument: root >= n, bad options (timeout <= 0, channel >= 2^24,
///   max_segment_bytes == 0); or a message from the parent whose length differs from what
///   this peer expected: peers passed different sizes (or options). That peer fails with
///   invalid_argument; peers below it in the tree or chain then fail with
///   deadline_exceeded, and so may the peers above it (their sends are never received);
/// - aborted: this endpoint was aborted or a peer is gone (crashed);
/// - deadline_exceeded: the call ran past options.timeout (e.g. a peer below a crashed one).
/// No op is left posted on any error. Deterministic (pure byte movement).
status broadcast(transport& t, rank_t root, std::span<std::byte> data, const broadcast_options& o = {});

}  // namespace dtrain::net
