// dtrain/topology/spectral.h: how fast gossip mixes. The contraction factor
// rho = ||W - 11^T/n||_2 and spectral gap 1 - rho of a mixing matrix, the contraction of
// a product of time-varying rounds, and a simulation of rounds to epsilon-consensus.
// Definitions: docs/topology.md ("Spectral gap").
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dtrain/core/status.h"
#include "dtrain/topology/mixing.h"
#include "dtrain/topology/schedule.h"

namespace dtrain::topology {

/// rho(W) = ||W - J/n||_2, the largest singular value of W minus the averaging matrix
/// J/n = 11^T/n. For doubly stochastic W, ||x_t - xbar|| <= rho^t ||x_0 - xbar|| for
/// x_{t+1} = W x_t; for normal W (symmetric, circulant) rho is the largest non-trivial
/// |eigenvalue|. Dense SVD in double (Eigen BDCSVD): O(n^3) time, O(n^2) memory.
/// Deterministic on one machine; not meant to feed consensus.
/// Errors: invalid_argument for n = 0 or when W.validate() fails.
result<double> contraction(const mixing& w);

/// Spectral gap 1 - rho(W) (see contraction()). Meaningful as a rate for doubly
/// stochastic W, where it lies in [0, 1]; a row-stochastic W that is not column
/// stochastic can have rho >= 1 (gap <= 0) although it still reaches a (weighted)
/// consensus. Errors: as contraction().
result<double> spectral_gap(const mixing& w);

/// ||W_{start+rounds-1} ... W_{start+1} W_start - J/n||_2 for the schedule's rounds
/// (x_{t+1} = W_t x_t, so later rounds multiply on the left). rounds = 0 gives
/// ||I - J/n|| (1, or 0 when n = 1). The one-peer exponential schedule over tau rounds
/// gives exactly 0 for n a power of 2.
/// Errors: invalid_argument for an empty schedule, n = 0, rounds whose n differ, or a
/// round that fails mixing::validate().
result<double> contraction_over(const schedule& s, std::size_t rounds, std::uint64_t start = 0);

/// Outcome of rounds_to_consensus().
struct consensus_run {
  std::uint64_t rounds = 0;   ///< rounds run (the first t meeting the target, or max_rounds)
  bool reached = false;       ///< whether ||x_t - xbar_0|| <= eps ||x_0 - xbar_0|| at `rounds`
  double ratio = 0.0;         ///< ||x_t - xbar_0|| / ||x_0 - xbar_0|| at `rounds` (0 if x_0 is constant)
};

/// Simulates x_{t+1} = W_t x_t from x_0 (rounds start at 0) through per-node views
/// (O(edges) per round) until ||x_t - xbar_0 1||_2 <= eps ||x_0 - xbar_0 1||_2, with
/// xbar_0 the mean of x_0, or max_rounds. Doubly stochastic rounds keep the mean, so this
/// is the disagreement; for other weights the distance to the initial mean may never
/// fall (reached = false). A constant x_0 is reached at round 0.
/// Errors: invalid_argument for an empty schedule, x0.size() != n, n = 0, eps not in
/// [0, 1], a non-finite x_0, rounds whose n differ, or a round failing mixing::validate().
result<consensus_run> rounds_to_consensus(const schedule& s, std::span<const double> x0, double eps,
                                          std::uint64_t max_rounds);

}  // namespace dtrain::topology
