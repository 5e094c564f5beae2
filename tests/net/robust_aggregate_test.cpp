// The shared aggregation arithmetic on its own: finiteness, norms, effective weights,
// median clipping, weighted / coincident / trimmed means against brute force.
#include "dtrain/net/robust_aggregate.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "dtrain/core/rng.h"

using namespace dtrain;
using namespace dtrain::net;

namespace {
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
}  // namespace

TEST_CASE("robust: all_finite") {
  std::vector<float> x(1025, 1.0f);
  CHECK(all_finite(x));
  CHECK(all_finite({}));
  x[1000] = std::numeric_limits<float>::denorm_min();
  x[3] = -std::numeric_limits<float>::max();
  CHECK(all_finite(x));
  const int which = GENERATE(0, 1, 2);
  const float bad = which == 0 ? kNaN : (which == 1 ? kInf : -kInf);
  const std::size_t at = GENERATE(values<std::size_t>({0, 511, 1024}));
  CAPTURE(which, at);
  x[at] = bad;
  CHECK_FALSE(all_finite(x));
}

TEST_CASE("robust: l2_norm") {
  CHECK(l2_norm({}) == 0.0f);
  const std::vector<float> a{3.0f, -4.0f};
  CHECK(l2_norm(a) == 5.0f);
  // Squares that overflow float do not overflow the double accumulator.
  const std::vector<float> big(4, 1e30f);
  CHECK(l2_norm(big) == 2.0f * 1e30f);
  std::vector<float> r(10007);
  counter_rng g(1);
  g.fill_uniform(r);
  double s = 0;
  for (float v : r) s += static_cast<double>(v) * v;
  CHECK(l2_norm(r) == static_cast<float>(std::sqrt(s)));
}

TEST_CASE("robust: plan_weights") {
  std::vector<float> eff(4);
  SECTION("hivemind weights; a zero weight is a listener") {
    const std::vector<float> w{0.15f, 0.0f, 0.35f, 0.45f};
    const std::vector<std::uint8_t> d{0, 0, 0, 0};
    const auto p = plan_weights(w, d, eff);
    CHECK(p.contributors == 3);
    CHECK(p.dropped == 0);
    CHECK(p.weight_sum == ((0.15f + 0.35f) + 0.45f));
    CHECK(eff == w);
  }
  SECTION("dropped peers leave the denominator") {
    const std::vector<float> w{1.0f, 2.0f, 3.0f, 4.0f};
    const std::vector<std::uint8_t> d{0, 1, 0, 1};
    const auto p = plan_weights(w, d, eff);
    CHECK(p.contributors == 2);
    CHECK(p.dropped == 2);
    CHECK(p.weight_sum == 4.0f);
    CHECK(eff == std::vector<float>{1.0f, 0.0f, 3.0f, 0.0f});
  }
  SECTION("every kept weight zero: the plain mean of the kept peers") {
    const std::vector<float> w{0.0f, 5.0f, 0.0f, 0.0f};
    const std::vector<std::uint8_t> d{0, 1, 0, 0};
    const auto p = plan_weights(w, d, eff);
    CHECK(p.contributors == 3);
    CHECK(p.weight_sum == 3.0f);
    CHECK(eff == std::vector<float>{1.0f, 0.0f, 1.0f, 1.0f});
  }
  SECTION("everyone dropped: nothing to average") {
    const std::vector<float> w{1.0f, 1.0f, 1.0f, 1.0f};
    const std::vector<std::uint8_t> d{1, 1, 1, 1};
    const auto p = plan_weights(w, d, eff);
    CHECK(p.contributors == 0);
    CHECK(p.dropped == 4);
  }
}

TEST_CASE("robust: median_clip_scales") {
  std::vector<float> scale(5), scratch(5);
  SECTION("lower median of an even count, one huge norm") {
    const std::vector<float> norms{3.0f, 1.0f, 100.0f, 2.0f, 7.0f};
    const std::vector<float> eff{1.0f, 1.0f, 1.0f, 1.0f, 0.0f};  // the 7 is a listener
    const float m = median_clip_scales(norms, eff, scale, scratch);
    CHECK(m == 2.0f);  // sorted 1, 2, 3, 100: element (4 - 1) / 2 = 1
    CHECK(scale == std::vector<float>{2.0f / 3.0f, 1.0f, 2.0f / 100.0f, 1.0f, 2.0f / 7.0f});
  }
  SECTION("odd count: the middle") {
    const std::vector<float> norms{5.0f, 4.0f, 3.0f, 2.0f, 1.0f};
    const std::vector<float> eff(5, 1.0f);
    CHECK(median_clip_scales(norms, eff, scale, scratch) == 3.0f);
    CHECK(scale == std::vector<float>{3.0f / 5.0f, 3.0f / 4.0f, 1.0f, 1.0f, 1.0f});
  }
  SECTION("nobody counts") {
    const std::vector<float> norms{5.0f, 4.0f, 3.0f, 2.0f, 1.0f};
    const std::vector<float> eff(5, 0.0f);
    CHECK(median_clip_scales(norms, eff, scale, scratch) == 0.0f);
    CHECK(scale == std::vector<float>(5, 1.0f));
  }
  SECTION("many peers use the same rule") {
    std::vector<float> norms(101), eff(101, 1.0f), sc(101), scr(101);
    for (std::size_t i = 0; i < norms.size(); ++i) norms[i] = static_cast<float>((i * 37) % 101);
    CHECK(median_clip_scales(norms, eff, sc, scr) == 50.0f);
  }
}

TEST_CASE("robust: weighted mean, accumulate and divide") {
  const std::size_t n = GENERATE(values<std::size_t>({1, 2, 5}));
  const std::size_t count = 333;
  CAPTURE(n);
  std::vector<std::vector<float>> rows(n, std::vector<float>(count));
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t k = 0; k < count; ++k) rows[i][k] = static_cast<float>(k * n + i);  // exact sums
  std::vector<std::span<const float>> spans(rows.begin(), rows.end());
  SECTION("unit weights: fl(exact sum / n)") {
    std::vector<float> out(count), coef(n, 1.0f);
    weighted_mean(spans, coef, static_cast<float>(n), out);
    for (std::size_t k = 0; k < count; ++k)
      REQUIRE(out[k] == static_cast<float>(k * n * n + n * (n - 1) / 2) / static_cast<float>(n));
  }
  SECTION("zero coefficients are skipped, even for NaN rows") {
    rows[0][0] = kNaN;
    std::vector<float> out(count), coef(n, 2.0f);
    coef[0] = 0.0f;
    if (n == 1) return;
    weighted_mean(spans, coef, 2.0f * static_cast<float>(n - 1), out);
    for (std::size_t k = 0; k < count; ++k) {
      double s = 0;
      for (std::size_t i = 1; i < n; ++i) s += 2.0 * (k * n + i);
      REQUIRE(out[k] == static_cast<float>(s) / (2.0f * static_cast<float>(n - 1)));
    }
  }
  SECTION("accumulate_scaled with c = 1 adds exactly, divide_by divides") {
    std::vector<float> acc{0.5f, -1.0f}, x{0.25f, 3.0f};
    accumulate_scaled(acc, x, 1.0f);
    CHECK(acc == std::vector<float>{0.75f, 2.0f});
    accumulate_scaled(acc, x, -2.0f);
    CHECK(acc == std::vector<float>{0.25f, -4.0f});
    divide_by(acc, 3.0f);
    CHECK(acc == std::vector<float>{0.25f / 3.0f, -4.0f / 3.0f});
  }
}

TEST_CASE("robust: coincident mean") {
  // DeMo: each index averaged over the peers that sent it (decoded value != 0).
  const std::vector<std::vector<float>> rows{{1, 0, 3, 0}, {3, 0, 0, -0.0f}, {0, 0, 6, 0}};
  const std::vector<float> w{1, 2, 1};
  std::vector<float> acc(4, 0.0f), ws(4, 0.0f);
  for (std::size_t i = 0; i < rows.size(); ++i) accumulate_coincident(acc, ws, rows[i], w[i], w[i]);
  CHECK(ws == std::vector<float>{3, 0, 2, 0});
  finish_coincident(acc, ws);
  CHECK(acc == std::vector<float>{7.0f / 3.0f, 0.0f, 4.5f, 0.0f});
}

TEST_CASE("robust: trimmed mean against brute force") {
  CHECK(trim_count(0.2, 5) == 1);
  CHECK(trim_count(0.25, 4) == 1);
  CHECK(trim_count(0.49, 2) == 0);
  CHECK(trim_count(0.0, 9) == 0);
  CHECK(trim_count(0.34, 3) == 1);

  const std::size_t n = GENERATE(values<std::size_t>({3, 6, 40}));
  const double frac = GENERATE(0.0, 0.2, 0.45);
  CAPTURE(n, frac);
  const std::size_t count = 64;
  std::vector<std::vector<float>> rows(n, std::vector<float>(count));
  counter_rng g(n);
  for (auto& r : rows)
    for (auto& v : r) v = static_cast<float>(g.next_below(9)) - 4.0f;  // many ties, signed zeros below
  rows[0][0] = -0.0f;
  std::vector<std::span<const float>> spans(rows.begin(), rows.end());
  std::vector<float> scale(n, 1.0f);
  std::vector<std::uint8_t> include(n, 1);
  scale[1] = 0.5f;
  include[n - 1] = 0;  // a dropped peer, its row ignored
  rows[n - 1][5] = kNaN;
  const std::size_t m = n - 1;
  const std::size_t t = trim_count(frac, m);
  std::vector<float> out(count), scratch(n);
  trimmed_mean(spans, scale, include, t, out, scratch);
  for (std::size_t k = 0; k < count; ++k) {
    std::vector<float> v;
    for (std::size_t i = 0; i < m; ++i) v.push_back(scale[i] * rows[i][k]);
    std::sort(v.begin(), v.end());
    float s = 0.0f;
    for (std::size_t j = t; j < m - t; ++j) s += v[j];
    REQUIRE(out[k] == s / static_cast<float>(m - 2 * t));
  }
}
