// dtrain/net/allgather.h: byte all-gather over a transport: every peer contributes a
// block and every peer ends with all blocks in rank order, bit-identical. A
// bandwidth-optimal ring (n − 1 steps, each forwarding the block received in the step
// before), cut into segments so large blocks pipeline with bounded memory in flight.
// Algorithm, cost and tags: docs/collectives.md ("All-gather and broadcast").
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

#include "dtrain/core/status.h"
#include "dtrain/net/transport.h"

namespace dtrain::net {

/// Options of allgather(), allgatherv() and allgather_sizes(). Every peer of one call must
/// pass the same channel, sequence and max_segment_bytes.
struct allgather_options {
  /// Deadline of the whole call, from its start. > 0.
  std::chrono::milliseconds timeout{30000};
  /// Tag channel (make_tag()), < 2^24. Operations in flight at once on one transport need
  /// distinct (channel, sequence) pairs.
  std::uint32_t channel = 0;
  /// Run counter (make_tag() keeps its low 24 bits). Bump it for every call on a channel,
  /// failed calls included: an aborted call can leave messages behind that a later call
  /// with the same tags would otherwise receive.
  std::uint32_t sequence = 0;
  /// Largest message. Each block travels as ceil(size / max_segment_bytes) messages and at
  /// most 4 of them per direction are in flight (posted, not retired) on each peer.
  /// >= 1; default 4 MiB.
  std::size_t max_segment_bytes = std::size_t{4} << 20;
};

/// Ring all-gather of equal-size blocks. With b = mine.size() on every peer, `out` (n·b
/// bytes) receives peer j's block at offset j·b, on every peer, bit for bit. Every peer of
/// the transport takes part.
///
/// Cost: each peer sends and receives (n − 1)·b bytes in (n − 1)·ceil(b / segment)
/// messages, to its successor (rank + 1) and from its predecessor; a segment is forwarded
/// as soon as it arrives, so latency is about (n − 2 + ceil(b / segment)) segment times.
/// n = 1 copies `mine` into `out`; b = 0 sends nothing.
///
/// `mine` may be exactly out's own slot (out.subspan(rank·b, b), "in place"); otherwise it
/// must not overlap `out`.
/// Errors:
/// - invalid_argument: out.size() != n·mine.size(), `mine` overlapping `out` other than as
///   its own slot, bad options (timeout <= 0, channel >= 2^24, max_segment_bytes == 0);
///   or a message whose length differs from the segment expected (peers passed different
///   block sizes or max_segment_bytes; that peer fails, the others may fail with
///   deadline_exceeded);
/// - aborted: this endpoint was aborted or a peer is gone (crashed): redo with survivors;
/// - deadline_exceeded: the call ran past options.timeout (e.g. a peer downstream of a
///   crash waiting for blocks that will not come).
/// On success `out` holds every block. On error no op is left posted, `mine` is unchanged
/// and `out` is unspecified (blocks are received straight into it: no staging copy, no
/// allocation). Deterministic (pure byte movement).
status allgather(transport& t, std::span<const std::byte> mine, std::span<std::byte> out,
                 const allgather_options& o = {});

/// Ring all-gather of blocks of different sizes given by the caller: counts[j] is peer j's
/// block size (the same counts on every peer), `out` (sum of counts bytes) receives block j
/// at offset counts[0] + ... + counts[j − 1]. Same algorithm and segmenting as allgather();
/// empty blocks cost no message. Use allgather_sizes() first when the peers do not know
/// each other's sizes.
/// Errors: as allgather(), with invalid_argument also for counts.size() != n,
/// mine.size() != counts[rank], out.size() != the sum of counts (or the sum overflowing).
/// `mine` may be exactly out's own slot. On error `out` is unspecified, no op is left
/// posted. Deterministic.
status allgatherv(transport& t, std::span<const std::byte> mine, std::span<const std::size_t> counts,
                  std::span<std::byte> out, const allgather_options& o = {});

/// Exchanges one size per peer: sizes[j] receives peer j's `mine` (sizes[rank] = mine).
/// An allgather() of 8-byte little-endian values on its own tag steps, so it may share
/// channel and sequence with the allgatherv() that follows it. sizes must hold n entries.
/// Errors: as allgather() (invalid_argument for sizes.size() != n); on error `sizes` is
/// unspecified.
status allgather_sizes(transport& t, std::size_t mine, std::span<std::size_t> sizes, const allgather_options& o = {});

}  // namespace dtrain::net
