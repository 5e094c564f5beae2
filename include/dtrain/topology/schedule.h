// dtrain/topology/schedule.h: per-round mixing schedules. A static topology is a
// schedule of period 1; time-varying ones (one-peer exponential) cycle through several
// matrices. Guide: docs/topology.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dtrain/core/assert.h"
#include "dtrain/topology/mixing.h"

namespace dtrain::topology {

/// Per-round schedule; static graphs have one round; round t uses rounds[t % rounds.size()].
/// All rounds have the same n.
struct schedule {
  std::vector<mixing> rounds;

  /// The matrix of round t. @pre !rounds.empty() (asserted).
  const mixing& at(std::uint64_t t) const {
    DTRAIN_ASSERT(!rounds.empty());
    return rounds[static_cast<std::size_t>(t % rounds.size())];
  }
  /// Number of distinct rounds before the schedule repeats.
  std::size_t period() const noexcept { return rounds.size(); }
  /// Node count (0 for an empty schedule).
  std::size_t n() const noexcept { return rounds.empty() ? 0 : rounds.front().n; }
};

/// The period-1 schedule that uses W every round.
schedule static_schedule(mixing w);

/// ceil(log2 n) for n >= 1 (0 for n = 1): the period of one_peer_exponential(n) and the
/// out-degree of exponential(n).
std::size_t ceil_log2(std::size_t n) noexcept;

/// One-peer exponential graph (Ying et al., NeurIPS 2021; BlueFog's dynamic one-peer
/// schedule): in round t node i sends to (i + 2^(t mod tau)) mod n, tau = ceil(log2 n),
/// and keeps half its value: W_t(i,i) = 1/2, W_t(i, (i - 2^(t mod tau)) mod n) = 1/2.
/// Doubly stochastic every round; one send and one receive per node per round. For
/// n = 2^tau the product of any tau consecutive rounds is exactly J/n (the rounds are
/// commuting circulants; every entry of the product is a power of two, so the product
/// is exact in double too): exact averaging in tau rounds, up to the rounding of the
/// additions when applied to values.
/// n = 1: the 1 x 1 identity, period 1. @pre n >= 1 (asserted).
schedule one_peer_exponential(std::size_t n);

}  // namespace dtrain::topology
