// Tests for topology/mixing.h: the three weightings against their formulas, the
// stochasticity checks (true where theory says, false with the offending row/column
// named), node views and support graphs as transposes of the matrix.
#include "dtrain/topology/mixing.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <utility>

#include "dtrain/core/rng.h"
#include "dtrain/topology/generators.h"

using namespace dtrain;
using namespace dtrain::topology;

namespace {

using edge = std::pair<std::uint32_t, std::uint32_t>;

graph undirected(std::size_t n, std::vector<edge> e) {
  const std::size_t m = e.size();
  for (std::size_t k = 0; k < m; ++k) e.emplace_back(e[k].second, e[k].first);
  auto g = from_edges(n, e);
  REQUIRE(g.ok());
  return *g;
}

std::vector<graph> regular_graphs() {
  return {*bidirectional_ring(9), *torus(20, 4, 5), *exponential(16), *exponential(13), *hypercube(32),
          *random_regular(30, 5, 3), *complete(7), *ring(5)};
}

}  // namespace

TEST_CASE("uniform weights: 1/(indeg+1) on self and in-neighbours", "[topology][mixing]") {
  for (const graph& g : regular_graphs()) {
    CAPTURE(g.n, g.max_in_degree());
    auto w = uniform_weights(g);
    REQUIRE(w.ok());
    const auto in = g.in_neighbors();
    for (std::uint32_t i = 0; i < g.n; ++i) {
      const double expect = 1.0 / static_cast<double>(in[i].size() + 1);
      CHECK((*w)(i, i) == expect);
      for (std::uint32_t j = 0; j < g.n; ++j) {
        if (j != i) CHECK((*w)(i, j) == (g.has_edge(j, i) ? expect : 0.0));
      }
    }
    CHECK(is_row_stochastic(*w).ok());
    CHECK(is_doubly_stochastic(*w).ok());  // regular graphs
  }
}

TEST_CASE("uniform weights on a non-regular graph are row but not column stochastic", "[topology][mixing]") {
  // Path 0 - 1 - 2: rows (1/2 1/2 0), (1/3 1/3 1/3), (0 1/2 1/2); column 0 sums to 5/6.
  const graph path = undirected(3, {{0, 1}, {1, 2}});
  auto w = uniform_weights(path);
  REQUIRE(w.ok());
  CHECK((*w)(1, 0) == 1.0 / 3.0);
  CHECK(is_row_stochastic(*w).ok());
  const status col = is_column_stochastic(*w);
  CHECK(col.code() == status_code::invalid_argument);
  CHECK(col.message().find("column 0 sums to 0.8333") != std::string::npos);
  const status both = is_doubly_stochastic(*w);
  CHECK(both.message() == col.message());
}

TEST_CASE("Metropolis-Hastings weights", "[topology][mixing]") {
  // Star: centre 0 (degree 4), leaves degree 1: W(0,j) = W(j,0) = 1/5, W(0,0) = 1/5,
  // W(j,j) = 4/5.
  const graph star = undirected(5, {{0, 1}, {0, 2}, {0, 3}, {0, 4}});
  auto w = metropolis_hastings(star);
  REQUIRE(w.ok());
  CHECK((*w)(0, 0) == Approx(0.2).margin(1e-15));
  for (std::uint32_t j = 1; j < 5; ++j) {
    CHECK((*w)(0, j) == 0.2);
    CHECK((*w)(j, 0) == 0.2);
    CHECK((*w)(j, j) == Approx(0.8).margin(1e-15));
    for (std::uint32_t k = 1; k < 5; ++k)
      if (k != j) CHECK((*w)(j, k) == 0.0);
  }
  CHECK(is_doubly_stochastic(*w).ok());

  // Random non-regular symmetric graphs: formula, symmetry and double stochasticity.
  for (std::uint64_t seed = 0; seed < 5; ++seed) {
    auto sw = small_world(24, 4, 0.4, seed);
    REQUIRE(sw.ok());
    auto m = metropolis_hastings(*sw);
    REQUIRE(m.ok());
    for (std::uint32_t i = 0; i < 24; ++i)
      for (std::uint32_t j = 0; j < 24; ++j) {
        CHECK((*m)(i, j) == (*m)(j, i));
        if (i != j && sw->has_edge(i, j)) {
          const auto dmax = std::max(sw->out[i].size(), sw->out[j].size());
          CHECK((*m)(i, j) == 1.0 / static_cast<double>(dmax + 1));
        }
      }
    CHECK(is_doubly_stochastic(*m).ok());
  }
  CHECK(metropolis_hastings(*ring(4)).status().code() == status_code::invalid_argument);
  CHECK(metropolis_hastings(*exponential(8)).status().code() == status_code::invalid_argument);
}

TEST_CASE("push-sum weights are column stochastic on directed graphs", "[topology][mixing]") {
  // Out-degrees 2, 1, 1, 0... node 3 has none: it keeps all its mass.
  auto g = from_edges(4, std::vector<edge>{{0, 1}, {0, 2}, {1, 2}, {2, 3}, {2, 0}});
  REQUIRE(g.ok());
  auto w = push_sum_weights(*g);
  REQUIRE(w.ok());
  CHECK((*w)(0, 0) == 1.0 / 3.0);
  CHECK((*w)(1, 0) == 1.0 / 3.0);
  CHECK((*w)(2, 0) == 1.0 / 3.0);
  CHECK((*w)(3, 0) == 0.0);
  CHECK((*w)(1, 1) == 0.5);
  CHECK((*w)(2, 1) == 0.5);
  CHECK((*w)(3, 3) == 1.0);
  CHECK(is_column_stochastic(*w).ok());
  CHECK(is_row_stochastic(*w).code() == status_code::invalid_argument);
  for (const graph& r : regular_graphs()) CHECK(is_doubly_stochastic(*push_sum_weights(r)).ok());
}

TEST_CASE("stochastic checks reject bad matrices with a clear message", "[topology][mixing]") {
  mixing m = mixing::identity(3);
  CHECK(is_doubly_stochastic(m).ok());
  m(0, 0) = 1.5;
  m(0, 1) = -0.5;
  CHECK(is_row_stochastic(m).message().find("W(0,1) = -0.5 is negative") != std::string::npos);
  m(0, 1) = 0.0;
  CHECK(is_row_stochastic(m).message().find("row 0 sums to 1.5") != std::string::npos);
  CHECK(is_column_stochastic(m).message().find("column 0 sums to 1.5") != std::string::npos);
  // Within tolerance passes, beyond fails.
  mixing t = mixing::identity(2);
  t(1, 1) = 1.0 + 1e-13;
  CHECK(is_row_stochastic(t).ok());
  CHECK_FALSE(is_row_stochastic(t, 1e-14).ok());
  mixing bad = mixing::identity(2);
  bad.w[3] = std::nan("");
  CHECK(bad.validate().message().find("W(1,1)") != std::string::npos);
  CHECK(is_row_stochastic(bad).code() == status_code::invalid_argument);
  mixing short_w{3, std::vector<double>(8, 0.0)};
  CHECK(short_w.validate().code() == status_code::invalid_argument);
  CHECK(is_row_stochastic(mixing::identity(2), -1.0).code() == status_code::invalid_argument);
}

TEST_CASE("node views and support graphs transpose the matrix", "[topology][mixing]") {
  for (const graph& g : regular_graphs()) {
    CAPTURE(g.n);
    auto w = uniform_weights(g);
    REQUIRE(w.ok());
    auto s = support(*w);
    REQUIRE(s.ok());
    CHECK(s->out == g.out);  // node j sends to i exactly when i lists j as in-neighbour
    const auto in = g.in_neighbors();
    for (std::uint32_t i = 0; i < g.n; ++i) {
      const node_view v = view_of(*w, i);
      CHECK(v.self_weight == (*w)(i, i));
      CHECK(v.send == g.out[i]);
      REQUIRE(v.recv.size() == in[i].size());
      for (std::size_t k = 0; k < v.recv.size(); ++k) {
        CHECK(v.recv[k].first == in[i][k]);
        CHECK(v.recv[k].second == (*w)(i, in[i][k]));
      }
    }
  }
}

TEST_CASE("apply computes W x", "[topology][mixing]") {
  auto w = uniform_weights(*exponential(6));
  REQUIRE(w.ok());
  std::vector<double> x{1, 2, 4, 8, 16, 32}, y(6);
  apply(*w, x, y);
  // exponential(6): in-neighbours of i are i-1, i-2, i-4 (mod 6); weight 1/4.
  for (std::size_t i = 0; i < 6; ++i) {
    const double expect = (x[i] + x[(i + 5) % 6] + x[(i + 4) % 6] + x[(i + 2) % 6]) / 4.0;
    CHECK(y[i] == Approx(expect).epsilon(1e-15));
  }
}
