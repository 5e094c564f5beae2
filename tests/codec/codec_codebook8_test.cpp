// Tests for codec/codec_codebook8.h (uniform8, quantile8): every decoded value lies
// within its bin's member range, uniform8's in-window bound |x^ - x| <= s, quantile
// codes are monotone and buckets balanced, hand-computed codebooks, exact constants,
// and rejection of non-finite / decreasing codebooks and stray parameters.
#include "dtrain/codec/codec_codebook8.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "codec/codec_test_util.h"
#include "dtrain/codec/payload.h"

using namespace dtrain;
using namespace dtrain::test;

namespace {

constexpr std::size_t book_off = codec::payload_header_bytes;
constexpr std::size_t codes_off = book_off + 1024;

std::uint8_t code_at(std::span<const std::byte> p, std::size_t i) {
  return static_cast<std::uint8_t>(p[codes_off + i]);
}
float book_at(std::span<const std::byte> p, std::size_t j) { return load_le<float>(p.data() + book_off + 4 * j); }

// Each decoded value is the mean of the inputs sharing its code, so it lies in
// [min, max] of those inputs (up to one float ulp for the double-rounded mean).
void check_within_bins(std::span<const float> x, std::span<const std::byte> p, std::span<const float> y) {
  float lo[256], hi[256];
  std::fill(lo, lo + 256, INFINITY);
  std::fill(hi, hi + 256, -INFINITY);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto c = code_at(p, i);
    lo[c] = std::min(lo[c], x[i]);
    hi[c] = std::max(hi[c], x[i]);
  }
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto c = code_at(p, i);
    CAPTURE(i, x[i], y[i], int(c), lo[c], hi[c]);
    REQUIRE(y[i] == book_at(p, c));
    REQUIRE(y[i] >= std::nextafter(lo[c], -INFINITY));
    REQUIRE(y[i] <= std::nextafter(hi[c], INFINITY));
  }
}

}  // namespace

TEST_CASE("uniform8: bin means, the in-window bound, exact constants", "[codec][uniform8]") {
  const std::size_t n = GENERATE(0u, 1u, 2u, 7u, 255u, 256u, 257u, 100003u);
  for (family f : all_families) {
    CAPTURE(n, family_name(f));
    auto c = make("uniform8");
    const auto x = make_input(f, n, 90 + n);
    REQUIRE(c->max_encoded_bytes(n) == codes_off + n);
    const auto p = encode(*c, x);
    const auto y = decode(*c, p, n);
    check_within_bins(x, p, y);
    if (n == 0) continue;
    double mu = 0, ss = 0;
    for (float v : x) mu += v;
    mu /= static_cast<double>(n);
    for (float v : x) ss += (v - mu) * (v - mu);
    const double sigma = n > 1 ? std::sqrt(ss / static_cast<double>(n - 1)) : 0.0;
    const double s = 6.0 * sigma / 256.0;
    if (sigma == 0.0 || f == family::constant || f == family::all_zero || n == 1) {
      REQUIRE(y == x);
      continue;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const double t = (x[i] - mu) / s;
      if (t < -127.0 || t > 126.0) continue;  // clipped tails (and a bin of slack)
      CAPTURE(i, x[i], y[i], s);
      REQUIRE(std::fabs(static_cast<double>(y[i]) - x[i]) <= s * (1.0 + 0x1p-10));
      REQUIRE(std::abs(int(code_at(p, i)) - 128 - int(std::lround(t))) <= 1);
    }
  }
}

TEST_CASE("uniform8 hand-computed codebook", "[codec][uniform8]") {
  // x = {-1, 1}: mu = 0, sigma = sqrt(2), s = 6 sqrt(2)/256 = 0.03315, (x - mu)/s = -+30.17
  // -> codes 98 and 158, whose bins decode to -1 and 1. Empty bins hold mu + (j - 128)s
  // clamped to [-1, 1]: c_128 = 0, c_129 = s, c_0 = -4.24 -> -1, c_255 = 4.21 -> 1.
  auto c = make("uniform8");
  const std::vector<float> x = {-1.0f, 1.0f};
  const auto p = encode(*c, x);
  REQUIRE(p.size() == codes_off + 2);
  CHECK(code_at(p, 0) == 98);
  CHECK(code_at(p, 1) == 158);
  const double s = 6.0 * std::sqrt(2.0) / 256.0;
  CHECK(book_at(p, 98) == -1.0f);
  CHECK(book_at(p, 158) == 1.0f);
  CHECK(book_at(p, 128) == 0.0f);
  CHECK(book_at(p, 129) == static_cast<float>(s));
  CHECK(book_at(p, 127) == static_cast<float>(-s));
  CHECK(book_at(p, 0) == -1.0f);
  CHECK(book_at(p, 255) == 1.0f);
  CHECK(decode(*c, p, 2) == x);
}

TEST_CASE("quantile8: bucket means, monotone codes, balanced buckets", "[codec][quantile8]") {
  const std::size_t n = GENERATE(0u, 1u, 2u, 7u, 255u, 256u, 257u, 65536u, 65537u, 100003u);
  for (family f : all_families) {
    CAPTURE(n, family_name(f));
    auto c = make("quantile8");
    const auto x = make_input(f, n, 120 + n);
    const auto p = encode(*c, x);
    const auto y = decode(*c, p, n);
    check_within_bins(x, p, y);
    for (std::size_t j = 1; j < 256; ++j) REQUIRE(book_at(p, j - 1) <= book_at(p, j));
    // Buckets are intervals: a larger input never gets a smaller code.
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
    for (std::size_t k = 1; k < n; ++k)
      if (x[order[k - 1]] < x[order[k]]) REQUIRE(code_at(p, order[k - 1]) <= code_at(p, order[k]));
    if (f == family::constant || f == family::all_zero || n == 1) REQUIRE(y == x);
    if (f == family::random && n >= 65536) {
      // Sampled quantiles of distinct values: no bucket holds more than twice its share.
      std::vector<std::size_t> count(256, 0);
      for (std::size_t i = 0; i < n; ++i) ++count[code_at(p, i)];
      for (std::size_t j = 0; j < 256; ++j) REQUIRE(count[j] <= 2 * n / 256);
    }
  }
}

TEST_CASE("quantile8 hand-computed codebook", "[codec][quantile8]") {
  // x = {3, 1, 2}: sample = sorted x = {1, 2, 3}, m = 3, b_k = sample[k*3/256]: b_1..b_85 = 1,
  // b_86..b_170 = 2, b_171..b_255 = 3. Codes count b <= x: 1 -> 85, 2 -> 170, 3 -> 255.
  // Empty buckets: 0 -> b_1 = 1; 84 (between 1 and 1) -> 1; 86 (between 2 and 2) -> 2.
  auto c = make("quantile8");
  const std::vector<float> x = {3.0f, 1.0f, 2.0f};
  const auto p = encode(*c, x);
  CHECK(code_at(p, 0) == 255);
  CHECK(code_at(p, 1) == 85);
  CHECK(code_at(p, 2) == 170);
  CHECK(book_at(p, 85) == 1.0f);
  CHECK(book_at(p, 170) == 2.0f);
  CHECK(book_at(p, 255) == 3.0f);
  CHECK(book_at(p, 0) == 1.0f);
  CHECK(book_at(p, 84) == 1.0f);
  CHECK(book_at(p, 86) == 2.0f);
  CHECK(book_at(p, 200) == 3.0f);
  CHECK(decode(*c, p, 3) == x);
}

TEST_CASE("codebook8 rejects bad codebooks with data_loss and leaves the output alone", "[codec][uniform8][quantile8]") {
  for (const char* spec : {"uniform8", "quantile8"}) {
    CAPTURE(spec);
    auto c = make(spec);
    const auto x = make_input(family::random, 50, 13);
    const auto p = encode(*c, x);
    auto expect_rejected = [&](std::vector<std::byte> bad) {
      codec::seal_payload(bad);
      std::vector<float> out(50, 7.0f);
      CHECK(c->decode(bad, out).code() == status_code::data_loss);
      CHECK(c->decode_accumulate(bad, out, 1.0f).code() == status_code::data_loss);
      CHECK(codec::decode_any(bad, out).code() == status_code::data_loss);
      CHECK(out == std::vector<float>(50, 7.0f));
    };
    for (float v : {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY}) {
      for (std::size_t j : {0u, 77u, 255u}) {
        auto bad = p;
        store_le<float>(bad.data() + book_off + 4 * j, v);
        expect_rejected(bad);
      }
    }
    // A decreasing codebook: no quantile8 encoder writes one; uniform8 does not check order.
    auto dec = p;
    store_le<float>(dec.data() + book_off + 4 * 200, -1e30f);
    codec::seal_payload(dec);
    std::vector<float> out(50, 7.0f);
    if (c->id() == codec::codec_id::quantile8) {
      expect_rejected(dec);
    } else {
      CHECK(c->decode(dec, out).ok());
    }
    // Parameters where there should be none: the header says P = 1.
    std::vector<std::byte> withp(p.begin(), p.begin() + codec::payload_header_bytes);
    withp.push_back(std::byte{0});
    withp.insert(withp.end(), p.begin() + codec::payload_header_bytes, p.end());
    store_le<std::uint16_t>(withp.data() + 16, 1);
    codec::seal_payload(withp);
    out.assign(50, 7.0f);
    CHECK(codec::decode_any(withp, out).code() == status_code::data_loss);
    CHECK(c->decode(withp, out).code() == status_code::failed_precondition);
    CHECK(out == std::vector<float>(50, 7.0f));
  }
  // uniform8 and quantile8 payloads are not interchangeable.
  auto u = make("uniform8");
  auto q = make("quantile8");
  const auto x = make_input(family::random, 10, 1);
  std::vector<float> out(10);
  CHECK(q->decode(encode(*u, x), out).code() == status_code::failed_precondition);
  CHECK(u->decode(encode(*q, x), out).code() == status_code::failed_precondition);
  CHECK(codec::make_codec("uniform8:bits=8").status().code() == status_code::invalid_argument);
  CHECK_FALSE(u->summable());
  CHECK_FALSE(q->summable());
}

TEST_CASE("quantile8 codes count the documented sampled boundaries, large n", "[codec][quantile8]") {
  // Large inputs take the bucket-table search; check it against the documented rule:
  // code = #{k in 1..255 : b_k <= x}, b_k = sorted(x[j*stride] + 0)[floor(k m / 256)].
  const std::size_t n = GENERATE(std::size_t{262144}, std::size_t{300007});
  const int kind = GENERATE(0, 1, 2, 3);
  CAPTURE(n, kind);
  auto x = make_input(kind == 1 ? family::heavy_tail : family::random, n, 7 + n);
  if (kind == 2)
    for (auto& v : x) v = std::round(v * 4.0f) * 0.25f;  // many ties and -0
  if (kind == 3)
    for (std::size_t i = 0; i < n; ++i) x[i] = (i % 3 == 0) ? -0.0f : x[i] * 1e-39f;  // subnormals and -0
  const std::size_t stride = (n + 65535) / 65536, m = (n + stride - 1) / stride;
  std::vector<float> sample(m);
  for (std::size_t j = 0; j < m; ++j) sample[j] = x[j * stride] + 0.0f;
  std::sort(sample.begin(), sample.end());
  std::vector<float> b(255);
  for (std::size_t k = 1; k < 256; ++k) b[k - 1] = sample[k * m / 256];
  auto c = make("quantile8");
  const auto p = encode(*c, x);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto want = static_cast<std::size_t>(std::upper_bound(b.begin(), b.end(), x[i]) - b.begin());
    bad += code_at(p, i) != want;
  }
  CHECK(bad == 0);
}
