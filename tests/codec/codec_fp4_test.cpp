// Tests for codec/codec_fp4.h: decode equals a brute-force nearest-magnitude reference
// (ties to the larger) and meets the documented bounds, hand-computed nibbles, the
// -0 nibble and other tampering rejected, parameter mismatches.
#include "dtrain/codec/codec_fp4.h"

#include <cmath>
#include <limits>

#include "codec/codec_test_util.h"
#include "dtrain/codec/payload.h"
#include "dtrain/core/bitpack.h"

using namespace dtrain;
using namespace dtrain::test;

namespace {

constexpr std::size_t body_off = codec::payload_header_bytes + 4;

// Nearest of {0, a 2^-6, ..., a 2^-1, a} to |x| in exact (double) arithmetic, ties to
// the larger magnitude, with x's sign.
double reference(double x, double a) {
  const double ax = std::fabs(x);
  double best = 0.0;
  for (int e = 1; e <= 7; ++e) {
    const double m = a * std::ldexp(1.0, e - 7);
    if (std::fabs(m - ax) <= std::fabs(best - ax)) best = m;
  }
  return x < 0 ? -best : best;
}

void check(std::span<const float> x, std::span<const float> y, std::size_t block) {
  for (std::size_t s = 0; s < x.size(); s += block) {
    const std::size_t m = std::min(block, x.size() - s);
    const double a = max_abs(x.subspan(s, m));
    for (std::size_t i = s; i < s + m; ++i) {
      CAPTURE(i, x[i], y[i], a);
      const double ref = reference(x[i], a);
      REQUIRE(static_cast<double>(y[i]) == (ref == 0.0 ? 0.0 : ref));
      const double err = std::fabs(static_cast<double>(y[i]) - x[i]);
      if (std::fabs(x[i]) >= a * 0x1p-6)
        REQUIRE(err <= std::fabs(static_cast<double>(x[i])) / 3.0);
      else
        REQUIRE(err <= a * 0x1p-7);
    }
  }
}

}  // namespace

TEST_CASE("fp4 decodes to the nearest power-of-two level for every family and size", "[codec][fp4]") {
  const std::size_t block = GENERATE(1u, 7u, 128u, 4096u);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, block - 1, block, block + 1,
                        2 * block + 3, std::size_t{100003}}) {
    for (family f : all_families) {
      CAPTURE(block, n, family_name(f));
      auto c = make("fp4:block=" + std::to_string(block));
      const auto x = make_input(f, n, 70 + n);
      REQUIRE(c->max_encoded_bytes(n) == body_off + 4 * ((n + block - 1) / block) + packed_bytes(n, 4));
      check(x, decode(*c, encode(*c, x), n), block);
    }
  }
}

TEST_CASE("fp4 threshold ties and extreme scales", "[codec][fp4]") {
  // Every midpoint 0.75 a 2^k and the zero threshold a 2^-7, and the floats on either
  // side of each, for several scales a (down to where a 2^-7 is still a normal float, up to near FLT_MAX).
  for (float a : {1.0f, 3.0f, 0.1f, 1e-30f, 3.3e38f, 1e-35f}) {
    std::vector<float> x = {a};
    for (int k = -6; k <= 0; ++k) {
      const float t = static_cast<float>(0.75 * a * std::ldexp(1.0, k));
      x.insert(x.end(), {t, std::nextafter(t, 0.0f), std::nextafter(t, 2 * t + 1), -t});
    }
    const float z = static_cast<float>(a * 0x1p-7);
    x.insert(x.end(), {z, std::nextafter(z, 0.0f), std::nextafter(z, 1.0f), -z, 0.0f, -0.0f});
    CAPTURE(a);
    auto c = make("fp4:block=" + std::to_string(x.size()));
    check(x, decode(*c, encode(*c, x), x.size()), x.size());
  }
}

TEST_CASE("fp4 hand-computed nibbles", "[codec][fp4]") {
  // a = 1: 1 -> e=7 (nibble 7); -0.75 is the midpoint of 0.5 and 1, ties go to the larger,
  // -1 -> 8|7 = F; 2^-7 is the zero/2^-6 midpoint -> 2^-6, e=1 (1); 0.0039 < 2^-7 -> 0;
  // -1e-4 -> 0 with nibble 0 (never 8); 0.3 lies between 0.25 and 0.5, below 0.375 -> e=5.
  auto c = make("fp4:block=8");
  const std::vector<float> x = {1.0f, -0.75f, 0x1p-7f, 0.0039f, -1e-4f, 0.3f};
  const auto p = encode(*c, x);
  REQUIRE(p.size() == body_off + 4 + 3);
  CHECK(load_le<std::uint32_t>(p.data() + codec::payload_header_bytes) == 8u);
  CHECK(load_le<float>(p.data() + body_off) == 1.0f);
  CHECK(p[body_off + 4] == std::byte{0xF7});
  CHECK(p[body_off + 5] == std::byte{0x01});
  CHECK(p[body_off + 6] == std::byte{0x50});
  CHECK(decode(*c, p, x.size()) == std::vector<float>{1.0f, -1.0f, 0x1p-6f, 0.0f, 0.0f, 0.25f});
}

TEST_CASE("fp4 rejects tampered bodies with data_loss and leaves the output alone", "[codec][fp4]") {
  auto c = make("fp4:block=4");
  const auto x = make_input(family::random, 9, 12);
  const auto p = encode(*c, x);
  const std::size_t codes = body_off + 12;
  REQUIRE(p.size() == codes + 5);
  auto expect_rejected = [&](std::vector<std::byte> bad) {
    codec::seal_payload(bad);
    std::vector<float> out(9, 7.0f);
    CHECK(c->decode(bad, out).code() == status_code::data_loss);
    CHECK(c->decode_accumulate(bad, out, 2.0f).code() == status_code::data_loss);
    CHECK(out == std::vector<float>(9, 7.0f));
  };
  for (float v : {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY, -2.0f, -0.0f}) {
    CAPTURE(v);
    auto bad = p;
    store_le<float>(bad.data() + body_off + 4, v);
    expect_rejected(bad);
  }
  auto lo = p;
  lo[codes] = (lo[codes] & std::byte{0xF0}) | std::byte{0x08};
  expect_rejected(lo);
  auto hi = p;
  hi[codes + 3] = (hi[codes + 3] & std::byte{0x0F}) | std::byte{0x80};
  expect_rejected(hi);
  auto pad = p;
  pad[codes + 4] |= std::byte{0x20};
  expect_rejected(pad);
}

TEST_CASE("fp4 parameters: mismatch, invalid bytes, spec errors", "[codec][fp4]") {
  const auto x = make_input(family::heavy_tail, 300, 6);
  auto c = make("fp4");
  REQUIRE(c->spec() == "fp4:block=128");
  const auto p = encode(*c, x);
  std::vector<float> out(300, 7.0f);
  CHECK(make("fp4:block=64")->decode(p, out).code() == status_code::failed_precondition);
  CHECK(out == std::vector<float>(300, 7.0f));
  for (std::uint32_t block : {0u, 65537u}) {
    auto bad = p;
    store_le<std::uint32_t>(bad.data() + codec::payload_header_bytes, block);
    codec::seal_payload(bad);
    CHECK(codec::decode_any(bad, out).code() == status_code::data_loss);
    CHECK(c->decode(bad, out).code() == status_code::data_loss);
  }
  for (const char* spec : {"fp4:block=0", "fp4:block=65537", "fp4:bits=4"}) {
    CAPTURE(spec);
    auto r = codec::make_codec(spec);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == status_code::invalid_argument);
  }
  CHECK_FALSE(c->summable());
}
