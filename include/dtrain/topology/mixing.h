// dtrain/topology/mixing.h: mixing matrices (who averages what with which weight), the
// standard weightings of a graph (uniform, Metropolis-Hastings, push-sum), stochasticity
// checks, and the per-node view a collective needs. Guide: docs/topology.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "dtrain/core/assert.h"
#include "dtrain/core/status.h"
#include "dtrain/topology/graph.h"

namespace dtrain::topology {

/// Dense n x n mixing matrix in double, row-major: x_i' = sum_j W(i,j) x_j.
/// W(i,j) != 0 for j != i means node i receives from node j in that round.
struct mixing {
  std::size_t n = 0;
  std::vector<double> w;  ///< n*n entries, w[i*n + j] = W(i,j)

  /// The n x n zero matrix.
  static mixing zeros(std::size_t n) { return {n, std::vector<double>(n * n, 0.0)}; }
  /// The n x n identity (every node keeps its own value).
  static mixing identity(std::size_t n) {
    mixing m = zeros(n);
    for (std::size_t i = 0; i < n; ++i) m.w[i * n + i] = 1.0;
    return m;
  }

  /// W(i,j). @pre i, j < n and w.size() == n*n (asserted).
  double operator()(std::size_t i, std::size_t j) const {
    DTRAIN_ASSERT(i < n && j < n && w.size() == n * n);
    return w[i * n + j];
  }
  double& operator()(std::size_t i, std::size_t j) {
    DTRAIN_ASSERT(i < n && j < n && w.size() == n * n);
    return w[i * n + j];
  }

  /// ok, or invalid_argument when w.size() != n*n or an entry is NaN/Inf (named).
  status validate() const;
};

/// What one node does in one round of W: keep self_weight of its own value, add the
/// values received from recv (in-neighbour j with weight W(i,j), sorted by j), and send
/// its own value to every k in send (the nodes with W(k,i) != 0, k != i, sorted).
struct node_view {
  double self_weight = 0.0;
  std::vector<std::pair<std::uint32_t, double>> recv;
  std::vector<std::uint32_t> send;
};

/// Node i's view of W (see node_view). Exact: the weights are copied, not recomputed.
/// @pre W.validate() is ok and i < W.n (asserted).
node_view view_of(const mixing& w, std::uint32_t i);

/// The communication graph of W: edge j -> i for every W(i,j) != 0 with i != j (j sends
/// to i). Errors: invalid_argument as mixing::validate(), or n >= 2^32.
result<graph> support(const mixing& w);

/// y = W x (one synchronous gossip round on scalar values), summed in j order.
/// @pre x.size() == y.size() == W.n, x and y do not overlap (asserted).
void apply(const mixing& w, std::span<const double> x, std::span<double> y);

/// Uniform weights: node i averages itself and its in-neighbours equally,
/// W(i,i) = W(i,j) = 1/(indeg_i + 1). Row stochastic; doubly stochastic when every node's
/// in-neighbours have the same in-degree as it has (e.g. every regular graph); otherwise
/// repeated mixing converges to a weighted, not the plain, mean.
/// Errors: invalid_argument when g.validate() fails.
result<mixing> uniform_weights(const graph& g);

/// Metropolis-Hastings weights (Xiao & Boyd 2004) for an undirected graph:
/// W(i,j) = 1/(1 + max(d_i, d_j)) on edges, W(i,i) = 1 - sum_{j != i} W(i,j). Symmetric and
/// doubly stochastic on any graph, regular or not.
/// Errors: invalid_argument when g.validate() fails or g is not symmetric.
result<mixing> metropolis_hastings(const graph& g);

/// Push-sum weights (Kempe et al. 2003; SGP, Assran et al. 2019) for a directed graph:
/// node j splits its mass equally among itself and its out-neighbours,
/// W(k,j) = 1/(outdeg_j + 1) for k in out[j] or k = j. Column stochastic, so sum_i x_i is
/// preserved; run it on (x, w) pairs and de-bias with x/w.
/// Errors: invalid_argument when g.validate() fails.
result<mixing> push_sum_weights(const graph& g);

/// Default tolerance of the stochasticity checks: |1 - sum| <= tol, entries >= -tol.
inline constexpr double stochastic_tolerance = 1e-12;

/// ok when every entry of W is >= -tol and every row sums to 1 within tol (rows summed
/// in column order); otherwise invalid_argument naming the first offending entry or row
/// and its sum. Also invalid_argument when W fails validate() or tol is negative/NaN.
status is_row_stochastic(const mixing& w, double tol = stochastic_tolerance);
/// Same for columns: ok, or invalid_argument naming the first offending entry or column.
status is_column_stochastic(const mixing& w, double tol = stochastic_tolerance);
/// Both: ok, or the first error of is_row_stochastic, then of is_column_stochastic.
status is_doubly_stochastic(const mixing& w, double tol = stochastic_tolerance);

}  // namespace dtrain::topology
