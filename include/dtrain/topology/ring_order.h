// dtrain/topology/ring_order.h: choose the order of a ring all-reduce from a measured
// bandwidth matrix so that its slowest link is as fast as possible (a bottleneck
// travelling-salesman problem on a directed, possibly asymmetric graph). Exact by
// dynamic programming up to a small n, heuristic beyond. Guide: docs/topology.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::topology {

/// What ring_order_search ranks equal-bottleneck rings by.
enum class ring_tiebreak : std::uint8_t {
  none,     ///< any ring with the best bottleneck
  max_sum,  ///< among rings with the best bottleneck, the largest sum of link bandwidths
};

struct ring_order_options {
  ring_tiebreak tiebreak = ring_tiebreak::max_sum;
  /// Largest n solved exactly (Held-Karp DP, O(2^n n^2) time, O(2^n n) memory); at most
  /// ring_order_exact_max. Larger n use the heuristic.
  std::size_t exact_up_to = 10;
  /// Node expansions the heuristic's Hamiltonian-cycle search may spend per threshold.
  std::uint64_t search_budget = 200000;
};

/// Upper limit for ring_order_options::exact_up_to (DP tables of 2^(n-1)*n entries).
inline constexpr std::size_t ring_order_exact_max = 16;

/// A cyclic order of the nodes and what it achieves.
struct ring_order {
  /// order[0] = 0; node order[k] sends to order[(k+1) % n].
  std::vector<std::uint32_t> order;
  /// min over k of B(order[k], order[k+1 mod n]); +infinity for n = 1 (no links);
  /// 0 when every ring found uses an unusable (0) link.
  double bottleneck = 0.0;
  /// Sum of B over the n links of the ring (0 for n = 1). For n = 2 both directions of
  /// the one pair count.
  double total = 0.0;
  /// True when bottleneck (and, with ring_tiebreak::max_sum, total) is proven optimal:
  /// always for n <= max(exact_up_to, 2), never beyond.
  bool exact = false;
};

/// The bottleneck and total of a given order. @pre order is a permutation of 0..n-1 and
/// bandwidth.size() == n*n (asserted).
ring_order evaluate_ring(std::span<const double> bandwidth, std::size_t n, std::span<const std::uint32_t> order);

/// Orders n nodes into a ring maximizing the bottleneck min_k B(p_k, p_{k+1}) (with the
/// wrap p_{n-1} -> p_0), B(i,j) = measured bytes/s from i to j in row-major `bandwidth`
/// (asymmetric allowed; the diagonal is ignored; 0 = unusable link).
/// n <= exact_up_to: exact. A Held-Karp DP over subsets finds the best bottleneck b*;
/// with max_sum a second DP maximizes the sum over rings that use only links >= b*.
/// Larger n, heuristic: start from the best of the identity ring and a greedy
/// widest-next-hop ring; binary-search the threshold t over the distinct link values up
/// to an upper bound (every node needs an outgoing and an incoming link >= t), each
/// step searching the graph of links >= t for a Hamiltonian cycle by depth-first search
/// with Warnsdorff ordering, dead-end pruning and `search_budget` expansions; then (with
/// max_sum) or-opt and 2-opt moves raise the sum without lowering the bottleneck. Never
/// worse than the identity ring. Deterministic.
/// Errors: invalid_argument for n = 0, bandwidth.size() != n*n, an entry that is
/// negative, NaN or infinite, exact_up_to > ring_order_exact_max, or n >= 2^32.
result<ring_order> best_ring_order(std::span<const double> bandwidth, std::size_t n,
                                   const ring_order_options& options = {});

}  // namespace dtrain::topology
