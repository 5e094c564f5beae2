// lib/topology/generators.cpp: deterministic and seeded graph generators.
#include "dtrain/topology/generators.h"

#include <algorithm>
#include <numeric>
#include <string>
#include <utility>

#include "dtrain/core/rng.h"
#include "dtrain/topology/schedule.h"

namespace dtrain::topology {

namespace {

// Keeps the id arithmetic below in uint32 range; far beyond any gossip group.
constexpr std::size_t max_generated_nodes = std::size_t{1} << 31;

status check_n(const char* what, std::size_t n) {
  if (n == 0) return invalid_argument(std::string(what) + ": n must be >= 1");
  if (n > max_generated_nodes) {
    return invalid_argument(std::string(what) + ": n = " + std::to_string(n) + " exceeds 2^31 nodes");
  }
  return ok_status();
}

std::uint32_t u32(std::size_t v) { return static_cast<std::uint32_t>(v); }

// Sorts and de-duplicates every out list and drops self loops: the generators below may
// produce the same neighbour twice on small dimensions (n = 2 rings, 2-wide tori).
graph normalized(std::size_t n, std::vector<std::vector<std::uint32_t>> out) {
  for (std::size_t i = 0; i < n; ++i) {
    auto& o = out[i];
    std::sort(o.begin(), o.end());
    o.erase(std::unique(o.begin(), o.end()), o.end());
    o.erase(std::remove(o.begin(), o.end(), u32(i)), o.end());
  }
  return graph{n, std::move(out)};
}

// Undirected adjacency built edge by edge (random generators). Degrees are small, so
// membership is a linear scan.
struct adjacency {
  std::vector<std::vector<std::uint32_t>> nb;
  explicit adjacency(std::size_t n) : nb(n) {}
  bool has(std::uint32_t a, std::uint32_t b) const {
    return std::find(nb[a].begin(), nb[a].end(), b) != nb[a].end();
  }
  void add(std::uint32_t a, std::uint32_t b) {
    nb[a].push_back(b);
    nb[b].push_back(a);
  }
  void remove(std::uint32_t a, std::uint32_t b) {
    nb[a].erase(std::find(nb[a].begin(), nb[a].end(), b));
    nb[b].erase(std::find(nb[b].begin(), nb[b].end(), a));
  }
  graph to_graph() && {
    const std::size_t n = nb.size();
    return normalized(n, std::move(nb));
  }
};

// Uniform double in [0, 1) from 53 random bits (integer-only: identical everywhere).
double uniform53(counter_rng& rng) { return static_cast<double>(rng.next_u64() >> 11) * 0x1p-53; }

// A uniformly random Hamiltonian cycle (Fisher-Yates shuffle of 1..n-1 after node 0).
graph random_cycle(std::size_t n, counter_rng& rng) {
  std::vector<std::uint32_t> p(n);
  std::iota(p.begin(), p.end(), 0u);
  for (std::size_t i = n - 1; i >= 2; --i) std::swap(p[i], p[1 + rng.next_below(u32(i))]);
  adjacency adj(n);
  for (std::size_t i = 0; i < n; ++i) adj.add(p[i], p[(i + 1) % n]);
  return std::move(adj).to_graph();
}

// One Steger-Wormald attempt: joins random pairs of free half-edges ("points") whose
// vertices differ and are not adjacent. Returns false when it gets stuck (no suitable
// pair among the remaining points).
bool steger_wormald(std::size_t n, std::size_t d, counter_rng& rng, adjacency& adj) {
  std::vector<std::uint32_t> points(n * d);
  for (std::size_t i = 0; i < points.size(); ++i) points[i] = u32(i / d);
  std::size_t live = points.size();
  // Random picks find a suitable pair quickly until few points remain; after this many
  // misses in a row an exhaustive scan decides between "keep trying" and "stuck".
  constexpr int misses_before_scan = 64;
  int misses = 0;
  while (live > 0) {
    const std::uint32_t a = rng.next_below(u32(live));
    const std::uint32_t b = rng.next_below(u32(live));
    const std::uint32_t u = points[a], v = points[b];
    if (u != v && !adj.has(u, v)) {
      adj.add(u, v);
      // Remove both points: swap with the last live ones (higher index first).
      const std::uint32_t hi = std::max(a, b), lo = std::min(a, b);
      points[hi] = points[--live];
      points[lo] = points[--live];
      misses = 0;
      continue;
    }
    if (++misses < misses_before_scan) continue;
    misses = 0;
    bool any = false;
    for (std::size_t x = 0; x < live && !any; ++x) {
      for (std::size_t y = x + 1; y < live && !any; ++y) {
        any = points[x] != points[y] && !adj.has(points[x], points[y]);
      }
    }
    if (!any) return false;
  }
  return true;
}

}  // namespace

result<graph> ring(std::size_t n) {
  DTRAIN_RETURN_IF_ERROR(check_n("ring", n));
  std::vector<std::vector<std::uint32_t>> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i].push_back(u32((i + 1) % n));
  return normalized(n, std::move(out));
}

result<graph> bidirectional_ring(std::size_t n) {
  DTRAIN_RETURN_IF_ERROR(check_n("bidirectional_ring", n));
  std::vector<std::vector<std::uint32_t>> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = {u32((i + 1) % n), u32((i + n - 1) % n)};
  return normalized(n, std::move(out));
}

result<graph> torus(std::size_t n, std::size_t rows, std::size_t cols) {
  DTRAIN_RETURN_IF_ERROR(check_n("torus", n));
  if (rows == 0 || cols == 0 || rows * cols != n || n / rows != cols) {
    return invalid_argument("torus: rows x cols = " + std::to_string(rows) + " x " + std::to_string(cols) +
                            " does not multiply to n = " + std::to_string(n));
  }
  std::vector<std::vector<std::uint32_t>> out(n);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < cols; ++c) {
      const auto id = [cols](std::size_t rr, std::size_t cc) { return u32(rr * cols + cc); };
      out[r * cols + c] = {id((r + 1) % rows, c), id((r + rows - 1) % rows, c), id(r, (c + 1) % cols),
                           id(r, (c + cols - 1) % cols)};
    }
  }
  return normalized(n, std::move(out));
}

result<graph> torus(std::size_t n) {
  DTRAIN_RETURN_IF_ERROR(check_n("torus", n));
  std::size_t rows = 1;
  for (std::size_t r = 1; r * r <= n; ++r) {
    if (n % r == 0) rows = r;
  }
  return torus(n, rows, n / rows);
}

result<graph> complete(std::size_t n) {
  DTRAIN_RETURN_IF_ERROR(check_n("complete", n));
  std::vector<std::vector<std::uint32_t>> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      if (j != i) out[i].push_back(u32(j));
    }
  }
  return graph{n, std::move(out)};
}

result<graph> exponential(std::size_t n) {
  DTRAIN_RETURN_IF_ERROR(check_n("exponential", n));
  const std::size_t tau = ceil_log2(n);
  std::vector<std::vector<std::uint32_t>> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < tau; ++k) out[i].push_back(u32((i + (std::size_t{1} << k)) % n));
  }
  return normalized(n, std::move(out));
}

result<graph> hypercube(std::size_t n) {
  DTRAIN_RETURN_IF_ERROR(check_n("hypercube", n));
  if ((n & (n - 1)) != 0) return invalid_argument("hypercube: n = " + std::to_string(n) + " is not a power of 2");
  const std::size_t dim = ceil_log2(n);
  std::vector<std::vector<std::uint32_t>> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t b = 0; b < dim; ++b) out[i].push_back(u32(i ^ (std::size_t{1} << b)));
  }
  return normalized(n, std::move(out));
}

result<graph> random_regular(std::size_t n, std::size_t d, std::uint64_t seed, int attempts) {
  DTRAIN_RETURN_IF_ERROR(check_n("random_regular", n));
  const std::string args = "random_regular(n = " + std::to_string(n) + ", d = " + std::to_string(d) + ")";
  if (d >= n) return invalid_argument(args + ": needs d < n");
  if ((n * d) % 2 != 0) return invalid_argument(args + ": n * d must be even");
  if (attempts < 1) return invalid_argument(args + ": attempts must be >= 1");
  if (d == 0) {
    if (n != 1) return invalid_argument(args + ": a 0-regular graph on more than one node is disconnected");
    return graph{1, {{}}};
  }
  if (d == 1 && n != 2) return invalid_argument(args + ": a 1-regular graph on more than 2 nodes is disconnected");

  // Stream 0x7265677572 ("regur"): keeps this generator's words apart from other users
  // of the same seed.
  counter_rng rng(seed, 0x7265677572ull);
  if (d == 1) return graph{2, {{1}, {0}}};
  if (d == 2) return random_cycle(n, rng);
  for (int attempt = 0; attempt < attempts; ++attempt) {
    adjacency adj(n);
    if (!steger_wormald(n, d, rng, adj)) continue;
    graph g = std::move(adj).to_graph();
    if (g.strongly_connected()) return g;
  }
  return resource_exhausted(args + ": no simple connected graph in " + std::to_string(attempts) +
                            " attempts; try another seed");
}

result<graph> small_world(std::size_t n, std::size_t k, double beta, std::uint64_t seed, int attempts) {
  const std::string args = "small_world(n = " + std::to_string(n) + ", k = " + std::to_string(k) + ")";
  if (n < 3) return invalid_argument(args + ": needs n >= 3");
  DTRAIN_RETURN_IF_ERROR(check_n("small_world", n));
  if (k < 2 || k % 2 != 0 || k >= n) return invalid_argument(args + ": k must be even with 2 <= k < n");
  if (!(beta >= 0.0 && beta <= 1.0)) return invalid_argument(args + ": beta must lie in [0, 1]");
  if (attempts < 1) return invalid_argument(args + ": attempts must be >= 1");

  counter_rng rng(seed, 0x736d616c6cull);  // "small"
  for (int attempt = 0; attempt < attempts; ++attempt) {
    adjacency adj(n);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 1; j <= k / 2; ++j) adj.add(u32(i), u32((i + j) % n));
    }
    for (std::size_t j = 1; j <= k / 2; ++j) {
      for (std::size_t i = 0; i < n; ++i) {
        // Draw the coin even when beta is 0 or 1 so the stream position (and with it
        // every later decision) does not depend on beta's value.
        const bool rewire = uniform53(rng) < beta;
        const std::uint32_t a = u32(i), b = u32((i + j) % n);
        if (!rewire || adj.nb[a].size() >= n - 1) continue;
        std::uint32_t w = rng.next_below(u32(n));
        while (w == a || adj.has(a, w)) w = rng.next_below(u32(n));
        adj.remove(a, b);
        adj.add(a, w);
      }
    }
    graph g = std::move(adj).to_graph();
    if (g.strongly_connected()) return g;
  }
  return resource_exhausted(args + ": every one of " + std::to_string(attempts) +
                            " draws was disconnected; use a larger k or smaller beta");
}

}  // namespace dtrain::topology
