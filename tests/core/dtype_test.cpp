// Tests for core/dtype.h and core/convert.h: RNE f16/bf16 conversions, specials,
// subnormals, and bulk paths bit-identical to the scalar reference.
#include "dtrain/core/dtype.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "dtrain/core/convert.h"
#include "dtrain/core/rng.h"

using namespace dtrain;

namespace {
std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }
float from_bits(std::uint32_t u) { return std::bit_cast<float>(u); }
bool f16_is_nan(std::uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }
}  // namespace

TEST_CASE("f16: every half round-trips exactly through f32", "[core][dtype]") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const auto hh = static_cast<std::uint16_t>(h);
    const float f = f16_bits_to_f32(hh);
    if (f16_is_nan(hh)) {
      REQUIRE(std::isnan(f));
      REQUIRE(f16_is_nan(f32_to_f16_bits(f)));
      continue;
    }
    CAPTURE(h);
    REQUIRE(f32_to_f16_bits(f) == hh);
  }
}

TEST_CASE("f16: known values, specials and subnormals", "[core][dtype]") {
  CHECK(f32_to_f16_bits(0.0f) == 0x0000);
  CHECK(f32_to_f16_bits(-0.0f) == 0x8000);
  CHECK(f32_to_f16_bits(1.0f) == 0x3c00);
  CHECK(f32_to_f16_bits(-2.0f) == 0xc000);
  CHECK(f32_to_f16_bits(65504.0f) == 0x7bff);
  CHECK(f32_to_f16_bits(65519.0f) == 0x7bff);   // below the rounding midpoint
  CHECK(f32_to_f16_bits(65520.0f) == 0x7c00);   // midpoint rounds to even: Inf
  CHECK(f32_to_f16_bits(1e10f) == 0x7c00);
  CHECK(f32_to_f16_bits(-INFINITY) == 0xfc00);
  CHECK(f16_is_nan(f32_to_f16_bits(std::numeric_limits<float>::quiet_NaN())));
  CHECK(f16_is_nan(f32_to_f16_bits(from_bits(0x7f800001u))));  // signalling NaN with low payload
  CHECK(f32_to_f16_bits(0x1p-24f) == 0x0001);    // smallest subnormal
  CHECK(f32_to_f16_bits(0x1p-25f) == 0x0000);    // half of it: tie to even (0)
  CHECK(f32_to_f16_bits(0x1.8p-24f) == 0x0002);  // 1.5 ulp: tie to even (2)
  CHECK(f32_to_f16_bits(0x1.000002p-25f) == 0x0001);  // just above the tie
  CHECK(f32_to_f16_bits(0x1p-14f) == 0x0400);    // smallest normal
  CHECK(f32_to_f16_bits(0x1.ff8p-15f) == 0x03ff);  // largest subnormal
  CHECK(f32_to_f16_bits(0x1.ffcp-15f) == 0x0400);  // tie above it rounds to even: smallest normal
  CHECK(f16_bits_to_f32(0x0001) == 0x1p-24f);
  CHECK(f16_bits_to_f32(0x83ff) == -0x3ffp-24f);
  CHECK(std::isinf(f16_bits_to_f32(0x7c00)));
}

TEST_CASE("f16: midpoints between neighbours round to the even one", "[core][dtype]") {
  // For every pair of adjacent finite halves, the f32 midpoint must round to the one
  // with an even mantissa, and one ulp(f32) either side must round to the nearer.
  for (std::uint32_t h = 0; h < 0x7bff; ++h) {
    const float a = f16_bits_to_f32(static_cast<std::uint16_t>(h));
    const float b = f16_bits_to_f32(static_cast<std::uint16_t>(h + 1));
    const float mid = a + (b - a) * 0.5f;  // exact: representable in f32
    CAPTURE(h);
    REQUIRE(f32_to_f16_bits(mid) == ((h & 1) ? h + 1 : h));
    REQUIRE(f32_to_f16_bits(std::nextafter(mid, 0.0f)) == h);
    REQUIRE(f32_to_f16_bits(std::nextafter(mid, 1e9f)) == h + 1);
    REQUIRE(f32_to_f16_bits(-mid) == (((h & 1) ? h + 1 : h) | 0x8000u));
  }
}

TEST_CASE("bf16: round to nearest even, specials", "[core][dtype]") {
  CHECK(f32_to_bf16_bits(1.0f) == 0x3f80);
  CHECK(f32_to_bf16_bits(from_bits(0x3f808000u)) == 0x3f80);  // tie, even stays
  CHECK(f32_to_bf16_bits(from_bits(0x3f818000u)) == 0x3f82);  // tie, odd rounds up
  CHECK(f32_to_bf16_bits(from_bits(0x3f808001u)) == 0x3f81);  // above the tie
  CHECK(f32_to_bf16_bits(from_bits(0x7f7fffffu)) == 0x7f80);  // FLT_MAX rounds to Inf
  CHECK(f32_to_bf16_bits(INFINITY) == 0x7f80);
  CHECK(f32_to_bf16_bits(-INFINITY) == 0xff80);
  CHECK(f32_to_bf16_bits(from_bits(0x00018000u)) == 0x0002);  // subnormal tie -> even
  const std::uint16_t n = f32_to_bf16_bits(from_bits(0x7f800001u));  // sNaN with payload only in low bits
  CHECK(((n & 0x7f80) == 0x7f80 && (n & 0x7f)));
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_bits_to_f32(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) continue;
    REQUIRE(f32_to_bf16_bits(f) == h);
  }
}

TEST_CASE("bulk conversion equals the scalar reference bit for bit", "[core][convert]") {
  const std::size_t n = GENERATE(0u, 1u, 7u, 8u, 15u, 16u, 33u, 4099u);
  CAPTURE(n, convert_isa());
  counter_rng rng(42, n);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    // Random bit patterns cover NaN, Inf, subnormals and every exponent.
    x[i] = from_bits(rng.next_u32());
    if (i % 3 == 0) x[i] = rng.next_normal() * 1e3f;
  }
  std::vector<std::uint16_t> h(n), b(n);
  f32_to_f16(x, h);
  f32_to_bf16(x, b);
  std::vector<float> back(n), acc(n, 1.0f), acc_ref(n, 1.0f);
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE(h[i] == f32_to_f16_bits(x[i]));
    REQUIRE(b[i] == f32_to_bf16_bits(x[i]));
  }
  f16_to_f32(h, back);
  for (std::size_t i = 0; i < n; ++i) REQUIRE(bits(back[i]) == bits(f16_bits_to_f32(h[i])));
  bf16_to_f32(b, back);
  for (std::size_t i = 0; i < n; ++i) REQUIRE(bits(back[i]) == bits(bf16_bits_to_f32(b[i])));
  std::vector<std::uint16_t> hs(n);
  for (std::size_t i = 0; i < n; ++i) hs[i] = f32_to_f16_bits(rng.next_normal());
  f16_accumulate(hs, acc, 0.5f);
  for (std::size_t i = 0; i < n; ++i) acc_ref[i] += 0.5f * f16_bits_to_f32(hs[i]);
  if (n) REQUIRE(std::memcmp(acc.data(), acc_ref.data(), n * 4) == 0);  // null data() when n == 0
}

TEST_CASE("find_nonfinite finds the first NaN or Inf", "[core][convert]") {
  std::vector<float> x(1000, 1.0f);
  CHECK(find_nonfinite(x) == 1000);
  CHECK(find_nonfinite(std::span<const float>{}) == 0);
  x[777] = INFINITY;
  CHECK(find_nonfinite(x) == 777);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  CHECK(find_nonfinite(x) == 5);
  x[5] = 1.0f;
  x[777] = -INFINITY;
  CHECK(find_nonfinite(x) == 777);
  x[777] = std::numeric_limits<float>::max();
  CHECK(find_nonfinite(x) == 1000);
}
