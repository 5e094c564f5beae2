// Tests for topology/spectral.h: rho and gaps against circulant/torus/hypercube closed
// forms and the peers.md table (to its printed precision), the Ramanujan estimate for
// random expanders, products of time-varying rounds, and the consensus simulation
// against eigenvector inputs whose decay is known exactly.
#include "dtrain/topology/spectral.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/topology/generators.h"

using namespace dtrain;
using namespace dtrain::topology;

namespace {

constexpr double pi = std::numbers::pi;

double gap_of(const result<graph>& g) {
  REQUIRE(g.ok());
  auto w = uniform_weights(*g);
  REQUIRE(w.ok());
  auto gap = spectral_gap(*w);
  REQUIRE(gap.ok());
  return *gap;
}

// Rounds x to `digits` decimals, the precision a table prints.
double rounded(double x, int digits) {
  const double s = std::pow(10.0, digits);
  return std::round(x * s) / s;
}

}  // namespace

TEST_CASE("gaps reproduce the peers.md table (uniform weights)", "[topology][spectral]") {
  // Ring with weights 1/3 (bidirectional ring, uniform).
  CHECK(rounded(gap_of(bidirectional_ring(16)), 3) == 0.051);
  CHECK(rounded(gap_of(bidirectional_ring(64)), 4) == 0.0032);
  CHECK(rounded(gap_of(bidirectional_ring(256)), 4) == 0.0002);
  // 2-D torus with weights 1/5.
  CHECK(rounded(gap_of(torus(16, 4, 4)), 3) == 0.400);
  CHECK(rounded(gap_of(torus(64, 8, 8)), 3) == 0.117);
  CHECK(rounded(gap_of(torus(256, 16, 16)), 3) == 0.030);
  // Static exponential graph, uniform 1/(log2 n + 1) over the directed graph.
  CHECK(rounded(gap_of(exponential(16)), 3) == 0.400);
  CHECK(rounded(gap_of(exponential(64)), 3) == 0.286);
  CHECK(rounded(gap_of(exponential(256)), 3) == 0.222);
}

TEST_CASE("ring rho equals the circulant closed form", "[topology][spectral]") {
  const std::size_t n = GENERATE(range<std::size_t>(3, 41));
  CAPTURE(n);
  double rho = 0.0;  // max over k != 0 of |(1 + 2 cos(2 pi k / n)) / 3|
  for (std::size_t k = 1; k < n; ++k) {
    rho = std::max(rho, std::fabs((1.0 + 2.0 * std::cos(2.0 * pi * static_cast<double>(k) / static_cast<double>(n))) / 3.0));
  }
  auto w = uniform_weights(*bidirectional_ring(n));
  REQUIRE(w.ok());
  auto c = contraction(*w);
  REQUIRE(c.ok());
  CHECK(*c == Approx(rho).margin(1e-12));
  CHECK(*spectral_gap(*w) == Approx(1.0 - rho).margin(1e-12));
}

TEST_CASE("torus and hypercube rho equal their closed forms", "[topology][spectral]") {
  const std::size_t rows = GENERATE(3, 4, 5);
  const std::size_t cols = GENERATE(3, 6);
  CAPTURE(rows, cols);
  double rho = 0.0;
  for (std::size_t a = 0; a < rows; ++a)
    for (std::size_t b = 0; b < cols; ++b) {
      if (a == 0 && b == 0) continue;
      const double l = (1.0 + 2.0 * std::cos(2.0 * pi * static_cast<double>(a) / static_cast<double>(rows)) +
                        2.0 * std::cos(2.0 * pi * static_cast<double>(b) / static_cast<double>(cols))) /
                       5.0;
      rho = std::max(rho, std::fabs(l));
    }
  CHECK(*contraction(*uniform_weights(*torus(rows * cols, rows, cols))) == Approx(rho).margin(1e-12));

  // Hypercube of dimension m, W = (I + A)/(m + 1): eigenvalues (1 + m - 2k)/(m + 1), so
  // rho = (m - 1)/(m + 1).
  for (std::size_t m = 1; m <= 6; ++m) {
    CAPTURE(m);
    CHECK(*contraction(*uniform_weights(*hypercube(std::size_t{1} << m))) ==
          Approx(static_cast<double>(m - 1) / static_cast<double>(m + 1)).margin(1e-12));
  }
}

TEST_CASE("complete graph averages in one round", "[topology][spectral]") {
  CHECK(*spectral_gap(*uniform_weights(*complete(9))) == Approx(1.0).margin(1e-14));
  CHECK(*contraction(mixing::identity(1)) == 0.0);
  CHECK(*contraction(mixing::identity(4)) == Approx(1.0).margin(1e-14));
}

TEST_CASE("random regular expanders approach the Ramanujan gap", "[topology][spectral]") {
  const std::size_t d = GENERATE(4, 5, 6, 7, 8);
  CAPTURE(d);
  const double ramanujan = 1.0 - 2.0 * std::sqrt(static_cast<double>(d - 1)) / static_cast<double>(d);
  for (std::uint64_t seed = 0; seed < 3; ++seed) {
    const double gap = gap_of(random_regular(64, d, seed));
    CAPTURE(seed, gap, ramanujan);
    CHECK(std::fabs(gap - ramanujan) < 0.15);
    CHECK(gap > 10.0 * gap_of(bidirectional_ring(64)));  // constant gap vs the ring's O(1/n^2)
  }
}

TEST_CASE("contraction over time-varying rounds", "[topology][spectral]") {
  SECTION("one-peer exponential is exact for powers of two") {
    for (std::size_t n : {2, 4, 8, 16, 32, 64}) {
      CAPTURE(n);
      const schedule s = one_peer_exponential(n);
      const std::size_t tau = ceil_log2(n);
      CHECK(*contraction_over(s, tau) == 0.0);
      CHECK(*contraction_over(s, tau, 5) == 0.0);
      CHECK(*contraction_over(s, tau - 1) > 0.1);
      CHECK(*contraction_over(s, 0) == Approx(1.0).margin(1e-14));
    }
    const schedule s6 = one_peer_exponential(6);
    CHECK(*contraction_over(s6, 3) > 1e-3);  // not exact for n = 6
    CHECK(*contraction_over(s6, 3) < 1.0);
  }
  SECTION("a static symmetric schedule contracts by rho^t") {
    auto w = uniform_weights(*bidirectional_ring(10));
    REQUIRE(w.ok());
    const double rho = *contraction(*w);
    const schedule s = static_schedule(*w);
    CHECK(*contraction_over(s, 1) == Approx(rho).epsilon(1e-12));
    CHECK(*contraction_over(s, 3) == Approx(rho * rho * rho).epsilon(1e-12));
  }
  SECTION("errors") {
    CHECK(contraction_over(schedule{}, 1).status().code() == status_code::invalid_argument);
    schedule mixed{{mixing::identity(2), mixing::identity(3)}};
    CHECK(contraction_over(mixed, 2).status().code() == status_code::invalid_argument);
    CHECK(contraction(mixing{}).status().code() == status_code::invalid_argument);
    mixing bad = mixing::identity(2);
    bad.w[1] = std::numeric_limits<double>::infinity();
    CHECK(spectral_gap(bad).status().code() == status_code::invalid_argument);
  }
}

TEST_CASE("rounds to consensus", "[topology][spectral]") {
  SECTION("an eigenvector decays exactly by its eigenvalue") {
    // Bidirectional ring, W = (I + S + S^-1)/3: x_i = cos(2 pi i / n) has eigenvalue
    // l = (1 + 2 cos(2 pi / n))/3, so ||x_t|| = l^t ||x_0|| and the first t with
    // l^t <= eps is ceil(ln eps / ln l).
    const std::size_t n = GENERATE(8, 16, 33);
    const double eps = GENERATE(1e-1, 1e-3);
    CAPTURE(n, eps);
    std::vector<double> x(n);
    for (std::size_t i = 0; i < n; ++i) x[i] = std::cos(2.0 * pi * static_cast<double>(i) / static_cast<double>(n));
    const double l = (1.0 + 2.0 * std::cos(2.0 * pi / static_cast<double>(n))) / 3.0;
    const auto expect = static_cast<std::uint64_t>(std::ceil(std::log(eps) / std::log(l)));
    auto run = rounds_to_consensus(static_schedule(*uniform_weights(*bidirectional_ring(n))), x, eps, 100000);
    REQUIRE(run.ok());
    CHECK(run->reached);
    CHECK(run->rounds == expect);
    CHECK(run->ratio <= eps);
    CHECK(run->ratio == Approx(std::pow(l, static_cast<double>(expect))).epsilon(1e-9));
  }
  SECTION("random inputs never take longer than the rho bound") {
    counter_rng rng(5);
    std::vector<double> x(64);
    for (auto& v : x) v = static_cast<double>(rng.next_normal());
    for (const auto& g : {torus(64, 8, 8), exponential(64), random_regular(64, 4, 1)}) {
      auto w = uniform_weights(*g);
      const double rho = *contraction(*w);
      auto run = rounds_to_consensus(static_schedule(*w), x, 1e-3, 100000);
      REQUIRE(run.ok());
      CHECK(run->reached);
      CHECK(static_cast<double>(run->rounds) <= std::ceil(std::log(1e-3) / std::log(rho)));
    }
    auto one_peer = rounds_to_consensus(one_peer_exponential(64), x, 1e-9, 100);
    REQUIRE(one_peer.ok());
    CHECK(one_peer->reached);
    CHECK(one_peer->rounds == 6);
  }
  SECTION("limits and errors") {
    const schedule s = static_schedule(*uniform_weights(*bidirectional_ring(16)));
    std::vector<double> x(16, 0.0);
    x[0] = 1.0;
    auto capped = rounds_to_consensus(s, x, 1e-6, 5);
    REQUIRE(capped.ok());
    CHECK_FALSE(capped->reached);
    CHECK(capped->rounds == 5);
    CHECK(capped->ratio > 1e-6);
    const std::vector<double> flat(16, 2.5);
    CHECK(rounds_to_consensus(s, flat, 1e-3, 10)->rounds == 0);
    CHECK(rounds_to_consensus(s, flat, 1e-3, 10)->reached);
    CHECK(rounds_to_consensus(s, std::vector<double>(15), 1e-3, 10).status().code() ==
          status_code::invalid_argument);
    CHECK(rounds_to_consensus(s, x, 1.5, 10).status().code() == status_code::invalid_argument);
    x[3] = std::nan("");
    CHECK(rounds_to_consensus(s, x, 1e-3, 10).status().code() == status_code::invalid_argument);
  }
}
