// Tests for topology/graph.h: validation catches each defect, from_edges normalizes,
// and the queries agree with brute force (transitive closure for strong connectivity).
#include "dtrain/topology/graph.h"

#include <catch2/catch.hpp>

#include <utility>
#include <vector>

#include "dtrain/core/rng.h"

using namespace dtrain;
using namespace dtrain::topology;

namespace {

using edge = std::pair<std::uint32_t, std::uint32_t>;

// Floyd-Warshall reachability on an adjacency matrix.
bool closure_strongly_connected(const graph& g) {
  std::vector<char> r(g.n * g.n, 0);
  for (std::size_t i = 0; i < g.n; ++i) {
    r[i * g.n + i] = 1;
    for (const auto j : g.out[i]) r[i * g.n + j] = 1;
  }
  for (std::size_t k = 0; k < g.n; ++k)
    for (std::size_t i = 0; i < g.n; ++i)
      for (std::size_t j = 0; j < g.n; ++j)
        if (r[i * g.n + k] && r[k * g.n + j]) r[i * g.n + j] = 1;
  for (const char c : r)
    if (!c) return false;
  return true;
}

graph random_digraph(std::size_t n, double p, std::uint64_t seed) {
  counter_rng rng(seed);
  std::vector<edge> e;
  for (std::uint32_t i = 0; i < n; ++i)
    for (std::uint32_t j = 0; j < n; ++j)
      if (i != j && rng.next_uniform() < static_cast<float>(p)) e.emplace_back(i, j);
  auto g = from_edges(n, e);
  REQUIRE(g.ok());
  return *g;
}

}  // namespace

TEST_CASE("graph::validate names each defect", "[topology][graph]") {
  graph ok{3, {{1, 2}, {0}, {}}};
  CHECK(ok.validate().ok());

  SECTION("list count") {
    graph g{3, {{1}, {0}}};
    CHECK(g.validate().code() == status_code::invalid_argument);
    CHECK(g.validate().message().find("2 lists") != std::string::npos);
  }
  SECTION("peer out of range") {
    graph g{3, {{1, 3}, {}, {}}};
    CHECK(g.validate().message().find("not a node") != std::string::npos);
  }
  SECTION("self loop") {
    graph g{3, {{}, {1}, {}}};
    CHECK(g.validate().message().find("self loop") != std::string::npos);
  }
  SECTION("unsorted and duplicate") {
    graph g{3, {{2, 1}, {}, {}}};
    CHECK(g.validate().message().find("increasing") != std::string::npos);
    graph h{3, {{1, 1}, {}, {}}};
    CHECK(h.validate().code() == status_code::invalid_argument);
  }
}

TEST_CASE("from_edges sorts, merges and rejects bad edges", "[topology][graph]") {
  const std::vector<edge> e{{2, 0}, {0, 2}, {0, 1}, {0, 2}, {1, 2}};
  auto g = from_edges(3, e);
  REQUIRE(g.ok());
  CHECK(g->out == std::vector<std::vector<std::uint32_t>>{{1, 2}, {2}, {0}});
  CHECK(g->validate().ok());
  CHECK(g->edge_count() == 4);
  CHECK(g->max_out_degree() == 2);
  CHECK(g->max_in_degree() == 2);  // node 2 from 0 and 1
  CHECK(g->in_neighbors() == std::vector<std::vector<std::uint32_t>>{{2}, {0}, {0, 1}});
  CHECK(g->has_edge(0, 2));
  CHECK_FALSE(g->has_edge(2, 1));
  CHECK_FALSE(g->symmetric());
  CHECK(g->strongly_connected());  // 0 -> 1 -> 2 -> 0

  const std::vector<edge> loop{{1, 1}}, far{{0, 3}};
  CHECK(from_edges(3, loop).status().code() == status_code::invalid_argument);
  CHECK(from_edges(3, far).status().code() == status_code::invalid_argument);
}

TEST_CASE("symmetry and strong connectivity match brute force", "[topology][graph]") {
  const std::size_t n = GENERATE(1, 2, 5, 9);
  const double p = GENERATE(0.1, 0.3, 0.6);
  for (std::uint64_t seed = 0; seed < 10; ++seed) {
    CAPTURE(n, p, seed);
    const graph g = random_digraph(n, p, seed * 31 + n);
    CHECK(g.strongly_connected() == closure_strongly_connected(g));
    bool sym = true;
    for (std::uint32_t i = 0; i < n; ++i)
      for (std::uint32_t j = 0; j < n; ++j)
        if (i != j && g.has_edge(i, j) != g.has_edge(j, i)) sym = false;
    CHECK(g.symmetric() == sym);
    // in_neighbors is the transpose.
    const auto in = g.in_neighbors();
    std::size_t total = 0;
    for (std::uint32_t j = 0; j < n; ++j) {
      total += in[j].size();
      for (const auto i : in[j]) CHECK(g.has_edge(i, j));
    }
    CHECK(total == g.edge_count());
  }
}

TEST_CASE("edge cases: empty and single-node graphs", "[topology][graph]") {
  graph empty;
  CHECK(empty.validate().ok());
  CHECK(empty.strongly_connected());
  CHECK(empty.max_out_degree() == 0);
  CHECK(empty.max_in_degree() == 0);
  graph one{1, {{}}};
  CHECK(one.validate().ok());
  CHECK(one.strongly_connected());
  CHECK(one.symmetric());
  graph split{2, {{}, {}}};
  CHECK_FALSE(split.strongly_connected());
  graph oneway{2, {{1}, {}}};
  CHECK_FALSE(oneway.strongly_connected());
}
