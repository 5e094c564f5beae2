// dtrain/net/bandwidth_probe.h: measure the bandwidth of every directed link of a group
// (pairs in the rounds of a round-robin tournament), share the matrix so every peer holds
// the same bytes, and apply the bottleneck ring order as a group_transport view.
// Guide and message layout: docs/fault_tolerance.md ("Ring order: measured and applied").
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/net/group_transport.h"
#include "dtrain/net/transport.h"
#include "dtrain/topology/ring_order.h"

namespace dtrain::net {

struct probe_options {
  /// Payload of one timed transfer, >= 1. PCCL blasts 8 MB for 10 s over 16 streams per
  /// directed edge; one 4 MiB message per repeat is enough to rank links for a ring.
  std::size_t bytes = std::size_t{4} << 20;
  /// Timed transfers per direction, >= 1; the fastest one counts (noise only adds time).
  std::size_t repeats = 3;
  /// Tag channel, < 2^24. A probe that failed leaves late messages behind on a transport
  /// that buffers them (TCP): probe again on another channel.
  std::uint32_t channel = 0;
  /// Deadline of the whole probe, from its start, > 0.
  std::chrono::milliseconds timeout{120000};
};

/// Measured bandwidth of every directed link of a group of n peers.
struct bandwidth_matrix {
  std::size_t n = 0;
  /// Row-major n*n bytes/s: bytes_per_s[from * n + to], measured by `from` (the sender).
  /// The diagonal is 0; every other entry is finite and > 0.
  std::vector<double> bytes_per_s;

  /// Bandwidth from -> to. @pre from, to < n
  double at(rank_t from, rank_t to) const noexcept { return bytes_per_s[std::size_t{from} * n + to]; }
};

/// Rounds of the round-robin tournament over n peers: n - 1 for even n, n for odd n
/// (one peer sits out each round), 0 for n <= 1.
std::size_t probe_rounds(std::size_t n) noexcept;

/// The partner of `peer` in round `round` of the circle-method tournament over n peers,
/// or `peer` itself when it sits out that round. Every unordered pair meets in exactly one
/// round and every peer is in at most one pair per round. With m = n - 1 (n even) or
/// m = n (n odd; "peer" m is the bye): peer x < m meets y = (2 round - x) mod m, or m
/// when y = x, which happens for x = round only (m is odd); so peer m meets `round`.
/// Deterministic.
/// @pre peer < n, round < probe_rounds(n)
rank_t round_robin_partner(std::size_t n, std::size_t round, rank_t peer) noexcept;

/// Measures every directed link of `t`'s group; a collective that every peer calls with
/// the same options. In each tournament round the two peers of a pair time both
/// directions, lower rank sending first: after one untimed ping (which absorbs the wait
/// for a partner still busy in its previous round), per repeat, the sender times a small ping
/// (8 bytes, answered by a 1-byte ack) and a transfer of `bytes` (answered by a 1-byte
/// ack), from posting the send to receiving the ack. bandwidth = bytes /
/// max(fastest transfer - fastest ping, 1 us): the ping removes the latency, the 1 us floor
/// keeps the value positive and finite. Then the rows are all-gathered (binary64,
/// little-endian) and every peer builds the matrix from those bytes, so the matrices are
/// bit-identical on every peer and so is best_ring_order() of them.
/// Allocates the payload and the rows once per call.
/// Errors: invalid_argument for bad options (bytes 0, repeats 0, timeout <= 0, channel >=
/// 2^24); the transport's aborted / deadline_exceeded (a peer is gone or the probe ran
/// past its timeout: nothing is returned); data_loss for a row that is not n finite,
/// non-negative values with a zero diagonal.
/// Not deterministic (it measures time), but the shared result is identical everywhere.
result<bandwidth_matrix> bandwidth_probe(transport& t, const probe_options& o = {});

/// The best ring of a group and the view that makes a ring all-reduce send along it.
struct ring_plan {
  /// order[k] sends to order[k + 1 mod n]; ranks of the transport given to ring_view().
  /// Also the bottleneck, the total and whether they are proven optimal.
  topology::ring_order ring;
  /// View rank k = ring.order[k], so ring_allreduce over `view` sends from rank order[k]
  /// to order[k + 1]. Refers to the transport given to ring_view(), which must outlive it.
  std::unique_ptr<group_transport> view;
};

/// best_ring_order() of `m` and the group_transport that applies it over `t`. Every peer
/// that passes the same matrix (bandwidth_probe() gives every peer the same one) gets the
/// same order. Deterministic; allocates.
/// Errors: invalid_argument when m.n != t.size() or m.bytes_per_s.size() != n*n, or
/// best_ring_order() refuses the matrix or options (negative, NaN, infinite entries).
result<ring_plan> ring_view(transport& t, const bandwidth_matrix& m, const topology::ring_order_options& ro = {});

}  // namespace dtrain::net
