// Tests for topology/ring_order.h: the exact DP equals brute force over all rings for
// n = 2..8 (bottleneck, and the sum tie-break); the heuristic is never worse than the
// identity ring, is exact where its search is exhaustive, and recovers a planted
// high-bandwidth ring for n = 16..64; edge cases and invalid input.
#include "dtrain/topology/ring_order.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "dtrain/core/rng.h"

using namespace dtrain;
using namespace dtrain::topology;

namespace {

struct brute {
  double bottleneck = -1.0;
  double total = -1.0;  // largest sum among rings with the best bottleneck
};

brute brute_force(const std::vector<double>& b, std::size_t n) {
  std::vector<std::uint32_t> p(n);
  std::iota(p.begin(), p.end(), 0u);
  brute best;
  do {
    double bn = std::numeric_limits<double>::infinity(), sum = 0.0;
    for (std::size_t k = 0; k < n; ++k) {
      const double v = b[p[k] * n + p[(k + 1) % n]];
      bn = std::min(bn, v);
      sum += v;
    }
    if (bn > best.bottleneck || (bn == best.bottleneck && sum > best.total)) best = {bn, sum};
  } while (std::next_permutation(p.begin() + 1, p.end()));
  return best;
}

// Continuous (kind 0) or few-valued with zeros (kind 1, many ties).
std::vector<double> random_matrix(std::size_t n, std::uint64_t seed, int kind) {
  counter_rng rng(seed, 17);
  std::vector<double> b(n * n);
  for (std::size_t i = 0; i < n * n; ++i) {
    b[i] = kind == 0 ? static_cast<double>(rng.next_uniform()) * 1e9 : static_cast<double>(rng.next_below(4)) * 1e9;
  }
  for (std::size_t i = 0; i < n; ++i) b[i * n + i] = 0.0;
  return b;
}

void check_is_ring(const ring_order& r, const std::vector<double>& b, std::size_t n) {
  REQUIRE(r.order.size() == n);
  CHECK(r.order[0] == 0);
  std::vector<std::uint32_t> sorted = r.order;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < n; ++i) CHECK(sorted[i] == i);
  const ring_order again = evaluate_ring(b, n, r.order);
  CHECK(again.bottleneck == r.bottleneck);
  CHECK(again.total == r.total);
}

ring_order identity_ring(const std::vector<double>& b, std::size_t n) {
  std::vector<std::uint32_t> id(n);
  std::iota(id.begin(), id.end(), 0u);
  return evaluate_ring(b, n, id);
}

}  // namespace

TEST_CASE("evaluate_ring", "[topology][ring_order]") {
  // 0->1: 5, 1->2: 7, 2->0: 3; the other direction is 1, 2, 4.
  const std::vector<double> b{0, 5, 1, 2, 0, 7, 3, 4, 0};
  const std::vector<std::uint32_t> fwd{1, 2, 0}, rev{0, 2, 1};
  const ring_order f = evaluate_ring(b, 3, fwd);
  CHECK(f.order == std::vector<std::uint32_t>{0, 1, 2});  // rotated to start at 0
  CHECK(f.bottleneck == 3);
  CHECK(f.total == 15);
  const ring_order r = evaluate_ring(b, 3, rev);
  CHECK(r.bottleneck == 1);  // 0->2 is 1
  CHECK(r.total == 1 + 4 + 2);
}

TEST_CASE("exact ring order equals brute force for n = 2..8", "[topology][ring_order]") {
  const std::size_t n = GENERATE(range<std::size_t>(2, 9));
  const int kind = GENERATE(0, 1);
  for (std::uint64_t seed = 0; seed < 6; ++seed) {
    CAPTURE(n, kind, seed);
    const auto b = random_matrix(n, seed * 100 + n, kind);
    const brute want = brute_force(b, n);

    auto r = best_ring_order(b, n);  // tiebreak max_sum by default
    REQUIRE(r.ok());
    check_is_ring(*r, b, n);
    CHECK(r->exact);
    CHECK(r->bottleneck == want.bottleneck);
    CHECK(r->total == Approx(want.total).epsilon(1e-12));

    ring_order_options plain;
    plain.tiebreak = ring_tiebreak::none;
    auto q = best_ring_order(b, n, plain);
    REQUIRE(q.ok());
    check_is_ring(*q, b, n);
    CHECK(q->bottleneck == want.bottleneck);
    CHECK(q->total <= want.total * (1 + 1e-12));
  }
}

TEST_CASE("the heuristic is exact where its search is exhaustive", "[topology][ring_order]") {
  // For n <= 8 the DFS budget covers every path, so the threshold search finds the true
  // bottleneck; the sum is only heuristic.
  const std::size_t n = GENERATE(3, 5, 8);
  const int kind = GENERATE(0, 1);
  ring_order_options heur;
  heur.exact_up_to = 0;
  for (std::uint64_t seed = 0; seed < 6; ++seed) {
    CAPTURE(n, kind, seed);
    const auto b = random_matrix(n, seed * 7 + n, kind);
    const brute want = brute_force(b, n);
    auto r = best_ring_order(b, n, heur);
    REQUIRE(r.ok());
    check_is_ring(*r, b, n);
    CHECK_FALSE(r->exact);
    CHECK(r->bottleneck == want.bottleneck);
    CHECK(r->total <= want.total * (1 + 1e-12));
    const ring_order id = identity_ring(b, n);
    CHECK(r->bottleneck >= id.bottleneck);
    if (r->bottleneck == id.bottleneck) CHECK(r->total >= id.total);
  }
}

TEST_CASE("exact and heuristic agree on the bottleneck at n = 10", "[topology][ring_order]") {
  ring_order_options heur;
  heur.exact_up_to = 0;
  for (std::uint64_t seed = 0; seed < 3; ++seed) {
    CAPTURE(seed);
    const auto b = random_matrix(10, seed, 0);
    auto exact = best_ring_order(b, 10);
    auto h = best_ring_order(b, 10, heur);
    REQUIRE(exact.ok());
    REQUIRE(h.ok());
    CHECK(exact->exact);
    CHECK(h->bottleneck == exact->bottleneck);
    CHECK(h->total <= exact->total * (1 + 1e-12));
  }
}

TEST_CASE("the heuristic finds a planted high-bandwidth ring", "[topology][ring_order]") {
  const std::size_t n = GENERATE(16, 24, 32, 48, 64);
  for (std::uint64_t seed = 0; seed < 3; ++seed) {
    CAPTURE(n, seed);
    counter_rng rng(seed, n);
    // Background links in [0, 1) GB/s; a random ring of links in [2, 3) GB/s. Every ring
    // with bottleneck >= 2 must use only planted links, so the planted ring is the
    // unique optimum.
    std::vector<double> b(n * n);
    for (auto& v : b) v = static_cast<double>(rng.next_uniform()) * 1e9;
    std::vector<std::uint32_t> plant(n);
    std::iota(plant.begin(), plant.end(), 0u);
    for (std::size_t i = n - 1; i > 0; --i) std::swap(plant[i], plant[rng.next_below(static_cast<std::uint32_t>(i + 1))]);
    for (std::size_t k = 0; k < n; ++k) b[plant[k] * n + plant[(k + 1) % n]] = (2.0 + rng.next_uniform()) * 1e9;
    const ring_order want = evaluate_ring(b, n, plant);

    auto r = best_ring_order(b, n);
    REQUIRE(r.ok());
    check_is_ring(*r, b, n);
    CHECK_FALSE(r->exact);
    CHECK(r->bottleneck == want.bottleneck);
    CHECK(r->order == want.order);
    CHECK(r->bottleneck >= identity_ring(b, n).bottleneck);

    // Distractors: a fifth of the background also in [2, 3). The planted ring stays
    // feasible, so the optimum is at least its bottleneck.
    for (std::size_t i = 0; i < n * n; ++i) {
      if (b[i] < 1e9 && rng.next_below(5) == 0) b[i] = (2.0 + rng.next_uniform()) * 1e9;
    }
    for (std::size_t i = 0; i < n; ++i) b[i * n + i] = 0.0;
    auto d = best_ring_order(b, n);
    REQUIRE(d.ok());
    check_is_ring(*d, b, n);
    CHECK(d->bottleneck >= evaluate_ring(b, n, plant).bottleneck);
  }
}

TEST_CASE("the heuristic is never worse than the identity ring", "[topology][ring_order]") {
  const std::size_t n = GENERATE(12, 20, 40);
  const int kind = GENERATE(0, 1);
  for (std::uint64_t seed = 0; seed < 3; ++seed) {
    CAPTURE(n, kind, seed);
    const auto b = random_matrix(n, seed + 1000 * n, kind);
    auto r = best_ring_order(b, n);
    REQUIRE(r.ok());
    check_is_ring(*r, b, n);
    const ring_order id = identity_ring(b, n);
    CHECK(r->bottleneck >= id.bottleneck);
    if (r->bottleneck == id.bottleneck) CHECK(r->total >= id.total);
  }
}

TEST_CASE("sum tie-break among equal bottlenecks", "[topology][ring_order]") {
  // All links 1 except 0->1 = 5 and 2->3 = 9: every ring has bottleneck 1; the best sum
  // uses both wide links (ring 0 1 2 3 -> sum 5 + 1 + 9 + 1 = 16).
  const std::size_t n = 4;
  std::vector<double> b(n * n, 1.0);
  b[0 * n + 1] = 5;
  b[2 * n + 3] = 9;
  auto r = best_ring_order(b, n);
  REQUIRE(r.ok());
  CHECK(r->bottleneck == 1);
  CHECK(r->total == 16);
  CHECK(r->order == std::vector<std::uint32_t>{0, 1, 2, 3});
}

TEST_CASE("ring order edge cases and invalid input", "[topology][ring_order]") {
  auto one = best_ring_order(std::vector<double>{0.0}, 1);
  REQUIRE(one.ok());
  CHECK(one->order == std::vector<std::uint32_t>{0});
  CHECK(std::isinf(one->bottleneck));
  CHECK(one->total == 0);
  CHECK(one->exact);

  auto two = best_ring_order(std::vector<double>{0, 3, 5, 0}, 2);
  REQUIRE(two.ok());
  CHECK(two->order == std::vector<std::uint32_t>{0, 1});
  CHECK(two->bottleneck == 3);
  CHECK(two->total == 8);

  // No usable ring: node 2 has no outgoing link.
  auto dead = best_ring_order(std::vector<double>{0, 1, 1, 1, 0, 1, 0, 0, 0}, 3);
  REQUIRE(dead.ok());
  CHECK(dead->bottleneck == 0);

  const auto code = [](const std::vector<double>& b, std::size_t n) {
    return best_ring_order(b, n).status().code();
  };
  CHECK(code({}, 0) == status_code::invalid_argument);
  CHECK(code(std::vector<double>(8, 1.0), 3) == status_code::invalid_argument);  // not square
  CHECK(code({0, 1, -1, 0}, 2) == status_code::invalid_argument);
  CHECK(code({0, 1, std::nan(""), 0}, 2) == status_code::invalid_argument);
  CHECK(code({0, std::numeric_limits<double>::infinity(), 1, 0}, 2) == status_code::invalid_argument);
  CHECK(best_ring_order(std::vector<double>{0, 1, -1, 0}, 2).status().message().find("B(1,0)") != std::string::npos);
  ring_order_options big;
  big.exact_up_to = ring_order_exact_max + 1;
  CHECK(best_ring_order(std::vector<double>(4, 1.0), 2, big).status().code() == status_code::invalid_argument);
}
