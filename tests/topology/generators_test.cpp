// Tests for topology/generators.h: each generator's edge set against an independent
// membership rule, degrees and edge counts, symmetry, connectivity, determinism per seed
// and the documented invalid_argument cases.
#include "dtrain/topology/generators.h"

#include <catch2/catch.hpp>

#include <bit>
#include <set>

using namespace dtrain;
using namespace dtrain::topology;

namespace {

// Checks g against `rule(i, j)` (edge i -> j expected) over all ordered pairs.
template <class Rule>
void check_edges(const graph& g, Rule rule) {
  REQUIRE(g.validate().ok());
  for (std::uint32_t i = 0; i < g.n; ++i) {
    for (std::uint32_t j = 0; j < g.n; ++j) {
      if (i == j) continue;
      CAPTURE(i, j);
      CHECK(g.has_edge(i, j) == rule(i, j));
    }
  }
}

std::size_t ring_dist(std::size_t a, std::size_t b, std::size_t n) {
  const std::size_t d = a > b ? a - b : b - a;
  return std::min(d, n - d);
}

bool all_degrees(const graph& g, std::size_t d) {
  for (const auto& o : g.out)
    if (o.size() != d) return false;
  return true;
}

}  // namespace

TEST_CASE("rings", "[topology][generators]") {
  const std::size_t n = GENERATE(1, 2, 3, 4, 7, 16);
  CAPTURE(n);
  auto r = ring(n);
  REQUIRE(r.ok());
  check_edges(*r, [&](std::size_t i, std::size_t j) { return j == (i + 1) % n; });
  CHECK(r->edge_count() == (n == 1 ? 0 : n));
  CHECK(r->strongly_connected());
  CHECK(r->symmetric() == (n <= 2));

  auto b = bidirectional_ring(n);
  REQUIRE(b.ok());
  check_edges(*b, [&](std::size_t i, std::size_t j) { return ring_dist(i, j, n) == 1; });
  CHECK(all_degrees(*b, n == 1 ? 0 : n == 2 ? 1 : 2));
  CHECK(b->symmetric());
  CHECK(b->strongly_connected());

  CHECK(ring(0).status().code() == status_code::invalid_argument);
  CHECK(bidirectional_ring(0).status().code() == status_code::invalid_argument);
}

TEST_CASE("torus", "[topology][generators]") {
  const std::size_t rows = GENERATE(1, 2, 3, 4, 5);
  const std::size_t cols = GENERATE(1, 2, 3, 8);
  const std::size_t n = rows * cols;
  CAPTURE(rows, cols);
  auto t = torus(n, rows, cols);
  REQUIRE(t.ok());
  check_edges(*t, [&](std::size_t i, std::size_t j) {
    const std::size_t ri = i / cols, ci = i % cols, rj = j / cols, cj = j % cols;
    return (ri == rj && ring_dist(ci, cj, cols) == 1) || (ci == cj && ring_dist(ri, rj, rows) == 1);
  });
  const auto side = [](std::size_t len) -> std::size_t { return len >= 3 ? 2 : len == 2 ? 1 : 0; };
  CHECK(all_degrees(*t, side(rows) + side(cols)));
  CHECK(t->symmetric());
  CHECK(t->strongly_connected());
}

TEST_CASE("torus parameters", "[topology][generators]") {
  CHECK(torus(12, 3, 5).status().code() == status_code::invalid_argument);
  CHECK(torus(12, 0, 12).status().code() == status_code::invalid_argument);
  CHECK(torus(0, 0, 0).status().code() == status_code::invalid_argument);
  CHECK(torus(0).status().code() == status_code::invalid_argument);
  // Squarest grid: 16 -> 4x4 (degree 4), 12 -> 3x4 (degree 4), 7 -> 1x7 (the ring), 6 -> 2x3.
  CHECK(all_degrees(*torus(16), 4));
  CHECK(torus(12)->out == torus(12, 3, 4)->out);
  CHECK(torus(7)->out == bidirectional_ring(7)->out);
  CHECK(all_degrees(*torus(6), 3));
}

TEST_CASE("complete, exponential and hypercube", "[topology][generators]") {
  const std::size_t n = GENERATE(1, 2, 3, 4, 5, 8, 12, 16, 33);
  CAPTURE(n);
  auto c = complete(n);
  REQUIRE(c.ok());
  check_edges(*c, [](std::size_t, std::size_t) { return true; });
  CHECK(c->edge_count() == n * (n - 1));

  std::size_t tau = 0;
  while ((std::size_t{1} << tau) < n) ++tau;
  auto e = exponential(n);
  REQUIRE(e.ok());
  check_edges(*e, [&](std::size_t i, std::size_t j) {
    const std::size_t hop = (j + n - i) % n;  // j = i + hop
    return std::has_single_bit(hop) && hop < (std::size_t{1} << tau);
  });
  CHECK(all_degrees(*e, tau));
  CHECK(e->max_in_degree() == tau);
  CHECK(e->strongly_connected());
  CHECK(e->symmetric() == (n <= 3));

  auto h = hypercube(n);
  if (std::has_single_bit(n)) {
    REQUIRE(h.ok());
    check_edges(*h, [](std::size_t i, std::size_t j) { return std::popcount(i ^ j) == 1; });
    CHECK(all_degrees(*h, tau));
    CHECK(h->symmetric());
    CHECK(h->strongly_connected());
  } else {
    CHECK(h.status().code() == status_code::invalid_argument);
  }
  CHECK(complete(0).status().code() == status_code::invalid_argument);
  CHECK(exponential(0).status().code() == status_code::invalid_argument);
  CHECK(hypercube(0).status().code() == status_code::invalid_argument);
}

TEST_CASE("random regular graphs are simple, regular, connected and seeded", "[topology][generators]") {
  const auto [n, d] = GENERATE(table<std::size_t, std::size_t>(
      {{4, 3}, {6, 4}, {8, 3}, {10, 2}, {16, 15}, {20, 5}, {64, 4}, {64, 8}, {100, 3}, {256, 6}}));
  CAPTURE(n, d);
  std::set<std::vector<std::vector<std::uint32_t>>> distinct;
  for (std::uint64_t seed = 0; seed < 5; ++seed) {
    auto g = random_regular(n, d, seed);
    REQUIRE(g.ok());
    CHECK(g->validate().ok());  // sorted, no duplicates, no self loops: simple
    CHECK(all_degrees(*g, d));
    CHECK(g->symmetric());
    CHECK(g->strongly_connected());
    CHECK(random_regular(n, d, seed)->out == g->out);  // deterministic per seed
    distinct.insert(g->out);
  }
  // The complete graph (d = n-1) is unique; (6, 4) has 15 labelled versions; larger
  // cases have so many that five seeds should give five graphs.
  if (d + 1 < n) CHECK(distinct.size() >= (n >= 8 ? 5u : 2u));
}

TEST_CASE("random regular parameters", "[topology][generators]") {
  CHECK(random_regular(0, 0, 1).status().code() == status_code::invalid_argument);
  CHECK(random_regular(5, 5, 1).status().code() == status_code::invalid_argument);  // d >= n
  CHECK(random_regular(5, 3, 1).status().code() == status_code::invalid_argument);  // n*d odd
  CHECK(random_regular(4, 1, 1).status().code() == status_code::invalid_argument);  // matching: disconnected
  CHECK(random_regular(3, 0, 1).status().code() == status_code::invalid_argument);
  CHECK(random_regular(10, 3, 1, 0).status().code() == status_code::invalid_argument);
  auto one = random_regular(1, 0, 1);
  REQUIRE(one.ok());
  CHECK(one->n == 1);
  auto two = random_regular(2, 1, 1);
  REQUIRE(two.ok());
  CHECK(two->out == std::vector<std::vector<std::uint32_t>>{{1}, {0}});
}

TEST_CASE("Watts-Strogatz small world", "[topology][generators]") {
  const std::size_t n = GENERATE(8, 64);
  const std::size_t k = GENERATE(4, 6);
  const double beta = GENERATE(0.0, 0.1, 0.5, 1.0);
  CAPTURE(n, k, beta);
  auto g = small_world(n, k, beta, 7);
  REQUIRE(g.ok());
  CHECK(g->validate().ok());
  CHECK(g->symmetric());
  CHECK(g->strongly_connected());
  CHECK(g->edge_count() == n * k);  // n*k/2 undirected edges
  CHECK(small_world(n, k, beta, 7)->out == g->out);
  std::size_t lattice = 0;
  for (std::uint32_t i = 0; i < n; ++i)
    for (const auto j : g->out[i]) lattice += ring_dist(i, j, n) <= k / 2;
  if (beta == 0.0) {
    CHECK(lattice == n * k);  // the plain ring lattice
  } else if (n == 64) {
    CHECK(lattice < n * k);  // some edges were rewired
    CHECK(small_world(n, k, beta, 8)->out != g->out);
  }
}

TEST_CASE("small world parameters", "[topology][generators]") {
  CHECK(small_world(2, 2, 0.1, 0).status().code() == status_code::invalid_argument);
  CHECK(small_world(10, 3, 0.1, 0).status().code() == status_code::invalid_argument);   // odd k
  CHECK(small_world(10, 0, 0.1, 0).status().code() == status_code::invalid_argument);
  CHECK(small_world(10, 10, 0.1, 0).status().code() == status_code::invalid_argument);  // k >= n
  CHECK(small_world(10, 4, -0.1, 0).status().code() == status_code::invalid_argument);
  CHECK(small_world(10, 4, 1.5, 0).status().code() == status_code::invalid_argument);
  CHECK(small_world(10, 4, std::nan(""), 0).status().code() == status_code::invalid_argument);
  CHECK(small_world(10, 4, 0.1, 0, 0).status().code() == status_code::invalid_argument);
  // k = 2, beta = 1: every node rewires its one lattice edge to a random node, a random
  // mapping graph, connected with probability about sqrt(pi / 2n) (~1% here). With few
  // attempts: the documented resource_exhausted. With the default 100 attempts the
  // retry finds a connected draw.
  CHECK(small_world(8000, 2, 1.0, 0, 2).status().code() == status_code::resource_exhausted);
  auto retried = small_world(400, 2, 1.0, 0);
  REQUIRE(retried.ok());
  CHECK(retried->strongly_connected());
}
