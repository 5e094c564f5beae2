// Tests for codec/detail/topk_select.h against a naive reference (full sort with the
// tie rule |x| descending, then index ascending), on data built to stress every path.
#include "dtrain/codec/detail/topk_select.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <vector>

#include <catch2/catch.hpp>

#include "dtrain/core/rng.h"

using dtrain::codec::detail::topk_selector;

namespace {

std::vector<std::uint32_t> reference(const std::vector<float>& x, std::size_t k) {
  std::vector<std::uint32_t> order(x.size());
  std::iota(order.begin(), order.end(), 0u);
  // |x| compared as a real number; +0 and -0 are equal.
  std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    const float fa = std::fabs(x[a]), fb = std::fabs(x[b]);
    if (fa != fb) return fa > fb;
    return a < b;
  });
  order.resize(std::min(k, x.size()));
  std::sort(order.begin(), order.end());
  return order;
}

enum class data { normal, all_equal, few_values, zeros, sparse, heavy_tail, ramp, alternating_sign };

std::vector<float> make_data(data d, std::size_t n, std::uint64_t seed) {
  dtrain::counter_rng rng(seed, static_cast<std::uint64_t>(d));
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    switch (d) {
      case data::normal: x[i] = rng.next_normal(); break;
      case data::all_equal: x[i] = (i % 2) ? 1.5f : -1.5f; break;
      case data::few_values: x[i] = static_cast<float>(static_cast<int>(rng.next_below(5)) - 2); break;
      case data::zeros: x[i] = (i % 3) ? 0.0f : -0.0f; break;
      case data::sparse: x[i] = rng.next_below(100) == 0 ? rng.next_normal() : 0.0f; break;
      case data::heavy_tail: {
        const float g = rng.next_normal();
        x[i] = g * g * g * g * g * 1e-3f;
        break;
      }
      case data::ramp: x[i] = static_cast<float>(i % 97) * 1e-7f; break;
      case data::alternating_sign: x[i] = (i % 2 ? -1.0f : 1.0f) * (1.0f + static_cast<float>(i % 7)); break;
    }
  }
  return x;
}

}  // namespace

TEST_CASE("topk_selector matches the naive reference", "[codec][topk_select]") {
  const std::size_t n = GENERATE(1u, 2u, 7u, 63u, 64u, 511u, 512u, 1000u, 4095u, 4096u, 4097u, 65536u);
  const auto d = GENERATE(data::normal, data::all_equal, data::few_values, data::zeros, data::sparse,
                          data::heavy_tail, data::ramp, data::alternating_sign);
  topk_selector sel;
  for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{64}, n / 64, n / 8, n / 2,
                        n - 1, n, n + 5}) {
    if (n > 4097 && n % 4 != 0) continue;
    for (std::uint64_t seed : {1u, 2u}) {
      const auto x = make_data(d, n, seed);
      CAPTURE(n, k, static_cast<int>(d), seed);
      std::vector<std::uint32_t> idx(std::min(k, n) + 1, 0xdeadbeefu);
      const std::size_t m = sel.select_abs(x, k, idx);
      REQUIRE(m == std::min(k, n));
      REQUIRE(idx[m] == 0xdeadbeefu);  // nothing written past the result
      idx.resize(m);
      REQUIRE(idx == reference(x, k));
    }
  }
}

TEST_CASE("topk_selector: one workspace serves chunks of varying size", "[codec][topk_select]") {
  topk_selector sel;
  const std::size_t sizes[] = {4096, 10, 65536, 1, 4096, 777};
  std::uint64_t seed = 5;
  for (std::size_t n : sizes) {
    const auto x = make_data(data::normal, n, ++seed);
    for (std::size_t k : {std::size_t{1}, std::size_t{64}}) {
      CAPTURE(n, k);
      std::vector<std::uint32_t> idx(k);
      idx.resize(sel.select_abs(x, k, idx));
      REQUIRE(idx == reference(x, k));
    }
  }
}

TEST_CASE("topk_selector: the prefetch hint never changes the result", "[codec][topk_select]") {
  topk_selector sel;
  const auto x = make_data(data::normal, 3 * 4096, 9);
  for (std::size_t c = 0; c < 3; ++c) {
    const std::span<const float> chunk(x.data() + c * 4096, 4096);
    std::vector<std::uint32_t> a(64), b(64);
    REQUIRE(sel.select_abs(chunk, 64, a) == 64);
    REQUIRE(sel.select_abs(chunk, 64, b, std::span<const float>(x).subspan((c + 1) * 4096 % x.size(), 4096)) == 64);
    REQUIRE(a == b);
    std::vector<float> copy(chunk.begin(), chunk.end());
    REQUIRE(a == reference(copy, 64));
  }
}

TEST_CASE("topk_selector: extreme magnitudes and subnormals", "[codec][topk_select]") {
  topk_selector sel;
  std::vector<float> x(4096);
  dtrain::counter_rng rng(3);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::uint32_t bits = rng.next_u32() & 0xff7fffffu;  // random finite floats of any exponent
    x[i] = std::bit_cast<float>(bits % 0x7f800000u | (bits & 0x80000000u));
  }
  x[17] = 3.4e38f;
  x[18] = -3.4e38f;
  x[19] = 1e-45f;
  for (std::size_t k : {std::size_t{1}, std::size_t{2}, std::size_t{64}, std::size_t{2048}}) {
    CAPTURE(k);
    std::vector<std::uint32_t> idx(k);
    idx.resize(sel.select_abs(x, k, idx));
    REQUIRE(idx == reference(x, k));
  }
}
