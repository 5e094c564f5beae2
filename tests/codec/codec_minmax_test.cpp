// Tests for codec/codec_minmax.h: the documented error bounds for every bit width and
// input family, exact ends (decoded min/max), the PCCL footguns (all-negative,
// constant, zero, one element), stochastic rounding, wire bytes, tampering, params.
#include "dtrain/codec/codec_minmax.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "codec/codec_test_util.h"
#include "dtrain/codec/detail/quant_isa.h"
#include "dtrain/codec/payload.h"
#include "dtrain/core/bitpack.h"

using namespace dtrain;
using namespace dtrain::test;

namespace {

constexpr std::size_t body_off = codec::payload_header_bytes + 2;

struct range {
  float lo, hi;
};
range range_of(std::span<const float> x) {
  range r{x[0], x[0]};
  for (float v : x) {
    r.lo = std::min(r.lo, v);
    r.hi = std::max(r.hi, v);
  }
  return r;
}

// Documented bound: |x^ - x| <= step * (half + 2^-12) + 2^-23 max(|lo|, |hi|), with
// step = (hi - lo) / (2^q - 1), half = 1/2 (nearest) or 1 (stochastic).
void check_bound(std::span<const float> x, std::span<const float> y, unsigned bits, double half) {
  if (x.empty()) return;
  const range r = range_of(x);
  const double step = (static_cast<double>(r.hi) - static_cast<double>(r.lo)) / ((1u << bits) - 1);
  const double mag = std::max(std::fabs(static_cast<double>(r.lo)), std::fabs(static_cast<double>(r.hi)));
  const double bound = step * (half + 0x1p-12) + 0x1p-23 * mag;
  for (std::size_t i = 0; i < x.size(); ++i) {
    CAPTURE(i, x[i], y[i], bound);
    REQUIRE(std::fabs(static_cast<double>(y[i]) - static_cast<double>(x[i])) <= bound);
    REQUIRE(y[i] >= r.lo);
    REQUIRE(y[i] <= r.hi);
    // The extremes are reproduced exactly (code 0 -> lo, code L -> hi).
    if (x[i] == r.lo) REQUIRE(y[i] == r.lo);
    if (x[i] == r.hi) REQUIRE(y[i] == r.hi);
  }
}

std::vector<float> roundtrip(codec::codec& c, std::span<const float> x) { return decode(c, encode(c, x), x.size()); }

}  // namespace

TEST_CASE("minmax nearest meets its bound for every width, family and size", "[codec][minmax]") {
  const std::size_t n = GENERATE(0u, 1u, 2u, 7u, 1023u, 1024u, 1025u, 100003u);
  for (unsigned bits = 1; bits <= 8; ++bits) {
    for (family f : all_families) {
      CAPTURE(n, bits, family_name(f));
      auto c = make("minmax:bits=" + std::to_string(bits));
      const auto x = make_input(f, n, 31 + bits);
      REQUIRE(c->max_encoded_bytes(n) == codec::payload_header_bytes + 2 + 8 + packed_bytes(n, bits));
      check_bound(x, roundtrip(*c, x), bits, 0.5);
    }
  }
}

TEST_CASE("minmax stochastic meets its bound and is unbiased", "[codec][minmax]") {
  for (unsigned bits : {1u, 3u, 8u}) {
    for (family f : all_families) {
      CAPTURE(bits, family_name(f));
      auto c = make("minmax:bits=" + std::to_string(bits) + ",rounding=stochastic,seed=5");
      const auto x = make_input(f, 4099, 2);
      check_bound(x, roundtrip(*c, x), bits, 1.0);
    }
  }
  // Mean error over many encodes of the same tensor tends to 0 for every element.
  const unsigned bits = 2;
  auto c = make("minmax:bits=2,rounding=stochastic,seed=11");
  const auto x = make_input(family::random, 64, 3);
  const range r = range_of(x);
  const double step = (static_cast<double>(r.hi) - r.lo) / 3.0;
  const int rounds = 4000;
  std::vector<double> err(x.size(), 0.0);
  for (int k = 0; k < rounds; ++k) {
    const auto y = roundtrip(*c, x);
    for (std::size_t i = 0; i < x.size(); ++i) err[i] += static_cast<double>(y[i]) - x[i];
  }
  double total = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    // Each error has |e| < step, so its standard deviation is below step / 2.
    CAPTURE(i, err[i] / rounds);
    REQUIRE(std::fabs(err[i] / rounds) <= 5.0 * step / (2.0 * std::sqrt(double(rounds))));
    total += err[i];
  }
  CHECK(std::fabs(total / (rounds * 64.0)) <= 5.0 * step / (2.0 * std::sqrt(rounds * 64.0)));
  (void)bits;
}

TEST_CASE("minmax stochastic draws u_i from counter_rng(seed, encode index)", "[codec][minmax]") {
  // bits=2 over [0, 3]: step 1, so v = x exactly and code = floor(x + u).
  const std::vector<float> x = {0.0f, 0.25f, 1.5f, 3.0f};
  auto c = make("minmax:bits=2,rounding=stochastic,seed=77");
  std::vector<std::vector<float>> seen;
  for (std::uint64_t k = 0; k < 20; ++k) {
    CAPTURE(k);
    const counter_rng rng(77, k);
    const auto y = roundtrip(*c, x);
    CHECK(y[0] == 0.0f);
    CHECK(y[1] == (rng.uniform_at(1) >= 0.75f ? 1.0f : 0.0f));
    CHECK(y[2] == (rng.uniform_at(2) >= 0.5f ? 2.0f : 1.0f));
    CHECK(y[3] == 3.0f);
    seen.push_back(y);
  }
  CHECK(std::count(seen.begin(), seen.end(), seen[0]) < 20);  // successive encodes differ
  // A fresh instance with the same seed replays the same sequence.
  auto c2 = make("minmax:bits=2,rounding=stochastic,seed=77");
  CHECK(roundtrip(*c2, x) == seen[0]);
  CHECK(roundtrip(*c2, x) == seen[1]);
}

TEST_CASE("minmax PCCL footguns: negative, constant, zero, single element", "[codec][minmax]") {
  for (unsigned bits = 1; bits <= 8; ++bits) {
    CAPTURE(bits);
    auto c = make("minmax:bits=" + std::to_string(bits));
    // All negative: the decoded maximum is the true maximum (a max seeded with
    // numeric_limits<float>::min() would report +1.2e-38 instead).
    const std::vector<float> neg = {-5.0f, -3.0f, -1.0f, -2.5f};
    const auto yn = roundtrip(*c, neg);
    CHECK(*std::max_element(yn.begin(), yn.end()) == -1.0f);
    CHECK(*std::min_element(yn.begin(), yn.end()) == -5.0f);
    for (float v : yn) CHECK(v < 0.0f);
    for (float value : {-0.375f, 0.0f, 1e30f, -3e38f, 1e-45f}) {
      for (std::size_t n : {1u, 2u, 1000u}) {
        CAPTURE(value, n);
        const std::vector<float> x(n, value);
        CHECK(roundtrip(*c, x) == x);
      }
    }
  }
}

TEST_CASE("minmax handles extreme ranges without overflow", "[codec][minmax]") {
  const std::vector<std::vector<float>> cases = {
      {-3e38f, 3e38f, 0.0f, 1e38f, -1.5e38f},
      {-std::numeric_limits<float>::max(), std::numeric_limits<float>::max(), 1.0f},
      {1e-45f, 3e-45f, 7e-45f, 2e-45f},
      {1e-40f, -1e-40f, 5e-41f},
      {1.0f, std::nextafter(1.0f, 2.0f), 1.0f},
      {1e30f, std::nextafter(1e30f, 2e30f)},
  };
  for (unsigned bits : {1u, 4u, 8u}) {
    for (const auto& x : cases) {
      CAPTURE(bits, x);
      auto c = make("minmax:bits=" + std::to_string(bits));
      const auto y = roundtrip(*c, x);
      for (float v : y) REQUIRE(std::isfinite(v));
      check_bound(x, y, bits, 0.5);
    }
  }
}

TEST_CASE("minmax 2-bit hand-computed vector", "[codec][minmax]") {
  // x = {-1, 0, 0.5, 2}: lo = -1, hi = 2, L = 3, step = 1, v = x + 1 = {0, 1, 1.5, 3}.
  // Round half to even: codes {0, 1, 2, 3}; packed LSB first: 0 | 1<<2 | 2<<4 | 3<<6 = 0xE4.
  // Decode lo + code * step = {-1, 0, 1, 2}.
  auto c = make("minmax:bits=2");
  const std::vector<float> x = {-1.0f, 0.0f, 0.5f, 2.0f};
  const auto p = encode(*c, x);
  REQUIRE(p.size() == body_off + 8 + 1);
  CHECK(p[codec::payload_header_bytes] == std::byte{2});
  CHECK(p[codec::payload_header_bytes + 1] == std::byte{0});
  CHECK(load_le<float>(p.data() + body_off) == -1.0f);
  CHECK(load_le<float>(p.data() + body_off + 4) == 2.0f);
  CHECK(p[body_off + 8] == std::byte{0xE4});
  CHECK(decode(*c, p, 4) == std::vector<float>{-1.0f, 0.0f, 1.0f, 2.0f});
  // Ties go to the even code: x = {0, 0.5, 2.5, 3} has lo = 0, step = 1, v = x, and
  // v = 0.5 -> 0, v = 2.5 -> 2, so codes {0, 0, 2, 3}.
  const auto y = roundtrip(*c, std::vector<float>{0.0f, 0.5f, 2.5f, 3.0f});
  CHECK(y == std::vector<float>{0.0f, 0.0f, 2.0f, 3.0f});
}

TEST_CASE("minmax rejects tampered bodies with data_loss and leaves the output alone", "[codec][minmax]") {
  auto c = make("minmax:bits=3");
  const auto x = make_input(family::random, 5, 4);  // 15 code bits: 1 padding bit
  const auto p = encode(*c, x);
  auto expect_rejected = [&](std::vector<std::byte> bad) {
    codec::seal_payload(bad);
    std::vector<float> out(5, 7.0f);
    auto st = c->decode(bad, out);
    CHECK(st.code() == status_code::data_loss);
    CHECK(out == std::vector<float>(5, 7.0f));
    CHECK(c->decode_accumulate(bad, out, 1.0f).code() == status_code::data_loss);
    CHECK(out == std::vector<float>(5, 7.0f));
  };
  for (float v : {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY}) {
    for (std::size_t off : {body_off, body_off + 4}) {
      CAPTURE(v, off);
      auto bad = p;
      store_le<float>(bad.data() + off, v);
      expect_rejected(bad);
    }
  }
  auto swapped = p;  // lo > hi
  store_le<float>(swapped.data() + body_off, 2.0f);
  store_le<float>(swapped.data() + body_off + 4, 1.0f);
  expect_rejected(swapped);
  auto pad = p;
  REQUIRE(pad.size() == body_off + 8 + 2);
  pad[body_off + 9] |= std::byte{0x80};
  expect_rejected(pad);
}

TEST_CASE("minmax parameters: mismatch, invalid bytes, spec errors", "[codec][minmax]") {
  auto c8 = make("minmax:bits=8");
  auto c4 = make("minmax:bits=4");
  const auto x = make_input(family::random, 100, 6);
  const auto p8 = encode(*c8, x);
  std::vector<float> out(100, 7.0f);
  CHECK(c4->decode(p8, out).code() == status_code::failed_precondition);
  CHECK(out == std::vector<float>(100, 7.0f));
  // Rounding is encoder-only: a stochastic decoder reads a nearest payload.
  auto cs = make("minmax:bits=8,rounding=stochastic,seed=3");
  CHECK(cs->decode(p8, out).ok());
  CHECK(out == decode(*c8, p8, 100));
  for (std::uint8_t bits : {0, 9, 255}) {
    auto bad = p8;
    bad[codec::payload_header_bytes] = std::byte{bits};
    codec::seal_payload(bad);
    CHECK(codec::decode_any(bad, out).code() == status_code::data_loss);
    CHECK(c8->decode(bad, out).code() == status_code::data_loss);
  }
  auto badr = p8;
  badr[codec::payload_header_bytes + 1] = std::byte{2};
  codec::seal_payload(badr);
  CHECK(codec::decode_any(badr, out).code() == status_code::data_loss);
  for (const char* spec : {"minmax:bits=0", "minmax:bits=9", "minmax:rounding=up", "minmax:bitz=4", "minmax:seed=-1"}) {
    CAPTURE(spec);
    auto r = codec::make_codec(spec);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == status_code::invalid_argument);
  }
  CHECK(make("minmax:bits=3,rounding=stochastic,seed=9")->spec() == "minmax:bits=3,rounding=stochastic,seed=9");
  CHECK_FALSE(c8->summable());
}

TEST_CASE("minmax stochastic matches counter_rng across chunks and Philox groups", "[codec][minmax]") {
  // bits=8 over [0, 255]: step 1, so v = x + u exactly; x = k + 0.5 rounds up iff u >= 0.5.
  const std::size_t n = GENERATE(std::size_t{2}, std::size_t{129}, std::size_t{1025}, std::size_t{5003});
  CAPTURE(n);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(i % 255) + 0.5f;
  x[0] = 0.0f;
  x[1] = 255.0f;
  auto c = make("minmax:bits=8,rounding=stochastic,seed=12345678901234");
  for (std::uint64_t k = 0; k < 3; ++k) {
    CAPTURE(k);
    const counter_rng rng(12345678901234u, k);
    const auto y = roundtrip(*c, x);
    std::size_t bad = 0;
    for (std::size_t i = 2; i < n; ++i) {
      const float want = static_cast<float>(i % 255) + (rng.uniform_at(i) >= 0.5f ? 1.0f : 0.0f);
      bad += y[i] != want;
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("dense quantizer kernels: portable and AVX2 builds agree bit for bit", "[codec][minmax][blockwise][fp4][simd]") {
  using codec::detail::quant_isa;
  const bool avx2 = codec::detail::quant_isa_available(quant_isa::avx2);
  if (!avx2) WARN("this CPU has no AVX2: only the portable kernels are checked");
  const std::size_t n = GENERATE(std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{9},
                                 std::size_t{127}, std::size_t{1023}, std::size_t{1024}, std::size_t{1025},
                                 std::size_t{4097}, std::size_t{100003});
  const char* spec = GENERATE("minmax:bits=1", "minmax:bits=3", "minmax:bits=4", "minmax:bits=7", "minmax:bits=8",
                              "minmax:bits=8,rounding=stochastic,seed=5", "minmax:bits=2,rounding=stochastic,seed=9",
                              "blockwise:bits=8,block=256", "blockwise:bits=4,block=7", "blockwise:bits=4,block=256",
                              "fp4:block=128", "fp4:block=33");
  const family f = GENERATE(family::random, family::heavy_tail, family::all_negative, family::constant);
  CAPTURE(n, spec, family_name(f));
  auto x = make_input(f, n, 3);
  if (n > 5) x[5] = 1e-40f;  // a subnormal, to reach the non-geometric fp4 thresholds in its block
  std::vector<std::vector<std::byte>> payloads;
  std::vector<std::vector<float>> decoded, accumulated;
  for (quant_isa isa : {quant_isa::portable, quant_isa::avx2}) {
    if (isa == quant_isa::avx2 && !avx2) continue;
    codec::detail::set_quant_isa(isa);
    REQUIRE(codec::detail::active_quant_isa() == isa);
    auto c = make(spec);  // fresh instance: the same stochastic stream
    payloads.push_back(encode(*c, x));
    decoded.push_back(decode(*c, payloads.back(), n));
    std::vector<float> acc(n);
    for (std::size_t i = 0; i < n; ++i) acc[i] = static_cast<float>(i % 5) * 0.5f;
    REQUIRE(c->decode_accumulate(payloads.back(), acc, 0.75f).ok());
    accumulated.push_back(acc);
  }
  codec::detail::set_quant_isa(quant_isa::automatic);
  for (std::size_t k = 1; k < payloads.size(); ++k) {
    CHECK(payloads[k] == payloads[0]);
    if (n == 0) continue;  // memcmp must not see the null data() of empty vectors
    CHECK(std::memcmp(decoded[k].data(), decoded[0].data(), n * sizeof(float)) == 0);
    CHECK(std::memcmp(accumulated[k].data(), accumulated[0].data(), n * sizeof(float)) == 0);
  }
}
