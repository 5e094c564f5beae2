// dtrain/topology/generators.h: the standard gossip graphs (ring, torus, complete,
// static exponential, hypercube) and the seeded random ones (d-regular expander,
// Watts-Strogatz small world). Every generator is deterministic: same arguments, same
// graph, on every machine. Guide and citations: docs/topology.md.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dtrain/core/status.h"
#include "dtrain/topology/graph.h"

namespace dtrain::topology {

/// Default number of attempts random_regular() and small_world() make before giving up.
inline constexpr int max_random_graph_attempts = 100;

/// Directed ring: i -> (i+1) mod n. n = 1: no edges. Errors: invalid_argument for n = 0.
result<graph> ring(std::size_t n);

/// Undirected ring: i -> i-1 and i+1 (mod n); degree 2, or 1 when n = 2, 0 when n = 1.
/// Errors: invalid_argument for n = 0.
result<graph> bidirectional_ring(std::size_t n);

/// Undirected 2-D torus, node r*cols + c, neighbours (r+-1, c) and (r, c+-1) wrapping
/// around. A dimension of 2 contributes one neighbour (the +1 and -1 sides coincide) and
/// a dimension of 1 none, so degrees are 4 only when rows, cols >= 3.
/// Errors: invalid_argument when rows * cols != n or n = 0.
result<graph> torus(std::size_t n, std::size_t rows, std::size_t cols);

/// torus(n, r, n / r) with r the largest divisor of n not above sqrt(n) (the squarest
/// grid; a prime n gives the bidirectional ring). Errors: invalid_argument for n = 0.
result<graph> torus(std::size_t n);

/// Complete graph: every node sends to every other. Errors: invalid_argument for n = 0.
result<graph> complete(std::size_t n);

/// Static exponential graph (Ying et al., NeurIPS 2021; SGP's directed exponential
/// graph): out-neighbours (i + 2^k) mod n for k < ceil(log2 n). Directed (symmetric only
/// for n <= 3); every node has in- and out-degree ceil(log2 n).
/// Errors: invalid_argument for n = 0.
result<graph> exponential(std::size_t n);

/// Hypercube: i -> i xor 2^b for b < log2 n; undirected, log2 n-regular.
/// Errors: invalid_argument unless n is a power of 2 (n = 1 gives one isolated node).
result<graph> hypercube(std::size_t n);

/// Random d-regular simple undirected graph, connected, deterministic for (n, d, seed).
/// Method: Steger & Wormald (1999) pairing — repeatedly join two random free half-edges
/// whose endpoints differ and are not yet adjacent; a pairing that gets stuck, or a
/// connected check that fails, starts a new attempt (the counter_rng stream continues,
/// so the result is still a function of the seed). The distribution is asymptotically
/// uniform for small d. d = 2 draws a uniform random Hamiltonian cycle (the connected
/// 2-regular graphs); d = 1 exists connected only for n = 2; d = 0 only for n = 1.
/// Errors: invalid_argument for n = 0, d >= n, n*d odd, d = 1 with n != 2, d = 0 with
/// n != 1, attempts < 1; resource_exhausted after `attempts` failed attempts (not seen
/// with the default for d >= 3; try another seed).
result<graph> random_regular(std::size_t n, std::size_t d, std::uint64_t seed,
                             int attempts = max_random_graph_attempts);

/// Watts-Strogatz small world (Nature 1998): a ring lattice joining each node to its k/2
/// nearest neighbours on each side, then each lattice edge (i, i+j), visited lap by lap
/// (j = 1..k/2, i = 0..n-1), is rewired with probability beta to (i, w), w uniform
/// among the nodes that are neither i nor already adjacent to i. Undirected, n*k/2
/// edges. The result must be connected: a disconnected draw is redrawn from the
/// continuing stream, deterministic for (n, k, beta, seed).
/// Errors: invalid_argument for n < 3, odd k, k < 2, k >= n, beta outside [0, 1] or NaN,
/// attempts < 1; resource_exhausted when `attempts` draws were all disconnected (likely
/// for k = 2 with beta near 1 on many nodes, where a draw is connected with probability
/// about sqrt(pi / 2n); use k >= 4).
result<graph> small_world(std::size_t n, std::size_t k, double beta, std::uint64_t seed,
                          int attempts = max_random_graph_attempts);

}  // namespace dtrain::topology
