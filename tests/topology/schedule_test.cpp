// Tests for topology/schedule.h: the one-peer exponential schedule's shape, and exact
// averaging after log2 n rounds for powers of two (Ying et al., NeurIPS 2021).
#include "dtrain/topology/schedule.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/topology/generators.h"

using namespace dtrain;
using namespace dtrain::topology;

namespace {

std::vector<double> random_vector(std::size_t n, std::uint64_t seed) {
  counter_rng rng(seed);
  std::vector<double> x(n);
  for (auto& v : x) v = static_cast<double>(rng.next_normal()) * 10.0 + 3.0;
  return x;
}

std::vector<double> run_rounds(const schedule& s, std::vector<double> x, std::uint64_t start, std::size_t rounds) {
  std::vector<double> y(x.size());
  for (std::size_t r = 0; r < rounds; ++r) {
    apply(s.at(start + r), x, y);
    x.swap(y);
  }
  return x;
}

}  // namespace

TEST_CASE("ceil_log2", "[topology][schedule]") {
  CHECK(ceil_log2(1) == 0);
  CHECK(ceil_log2(2) == 1);
  CHECK(ceil_log2(3) == 2);
  CHECK(ceil_log2(4) == 2);
  CHECK(ceil_log2(5) == 3);
  CHECK(ceil_log2(64) == 6);
  CHECK(ceil_log2(65) == 7);
}

TEST_CASE("static schedule repeats its matrix", "[topology][schedule]") {
  const schedule s = static_schedule(*uniform_weights(*bidirectional_ring(5)));
  CHECK(s.period() == 1);
  CHECK(s.n() == 5);
  CHECK(&s.at(0) == &s.at(12345));
}

TEST_CASE("one-peer exponential: one send, one receive, weight 1/2", "[topology][schedule]") {
  const std::size_t n = GENERATE(range<std::size_t>(1, 34));
  CAPTURE(n);
  const schedule s = one_peer_exponential(n);
  const std::size_t tau = ceil_log2(n);
  CHECK(s.period() == std::max<std::size_t>(tau, 1));
  CHECK(s.n() == n);
  if (n == 1) {
    CHECK(s.at(0).w == std::vector<double>{1.0});
    return;
  }
  for (std::uint64_t t = 0; t < 2 * tau; ++t) {
    const mixing& w = s.at(t);
    CHECK(is_doubly_stochastic(w).ok());
    const std::size_t hop = std::size_t{1} << (t % tau);
    for (std::uint32_t i = 0; i < n; ++i) {
      const node_view v = view_of(w, i);
      CHECK(v.self_weight == 0.5);
      REQUIRE(v.send.size() == 1);
      CHECK(v.send[0] == (i + hop) % n);
      REQUIRE(v.recv.size() == 1);
      CHECK(v.recv[0].first == (i + n - hop) % n);
      CHECK(v.recv[0].second == 0.5);
    }
  }
}

TEST_CASE("one-peer exponential averages exactly after log2 n rounds", "[topology][schedule]") {
  const std::size_t n = GENERATE(2, 4, 8, 16, 32);
  const std::uint64_t start = GENERATE(0, 3);  // any tau consecutive rounds
  CAPTURE(n, start);
  const schedule s = one_peer_exponential(n);
  const std::size_t tau = ceil_log2(n);
  for (std::uint64_t seed = 0; seed < 4; ++seed) {
    const auto x0 = random_vector(n, seed);
    double mean = 0.0, scale = 0.0;
    for (const double v : x0) {
      mean += v;
      scale = std::max(scale, std::fabs(v));
    }
    mean /= static_cast<double>(n);
    const auto x = run_rounds(s, x0, start, tau);
    for (const double v : x) CHECK(std::fabs(v - mean) <= 1e-12 * scale);
    // One round fewer is not enough.
    const auto early = run_rounds(s, x0, start, tau - 1);
    double worst = 0.0;
    for (const double v : early) worst = std::max(worst, std::fabs(v - mean));
    CHECK(worst > 1e-6 * scale);
  }
}

TEST_CASE("one-peer exponential keeps the mean but is not exact for other n", "[topology][schedule]") {
  const std::size_t n = GENERATE(3, 6, 12, 20);
  CAPTURE(n);
  const schedule s = one_peer_exponential(n);
  const auto x0 = random_vector(n, 11);
  double mean = 0.0;
  for (const double v : x0) mean += v;
  mean /= static_cast<double>(n);
  const auto x = run_rounds(s, x0, 0, ceil_log2(n));
  double after_mean = 0.0, worst = 0.0;
  for (const double v : x) {
    after_mean += v;
    worst = std::max(worst, std::fabs(v - mean));
  }
  CHECK(after_mean / static_cast<double>(n) == Approx(mean).epsilon(1e-13));
  CHECK(worst > 1e-6);
}
