// Tests for codec/codec_dct_topk.h against a naive double-precision DCT: the basis is
// orthonormal, k = C round-trips, k < C gives the best k-term approximation, the layout
// is as documented, and bad bodies or parameters are rejected untouched.
#include "dtrain/codec/codec_dct_topk.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "codec/codec_test_util.h"
#include "dtrain/codec/payload.h"
#include "dtrain/core/bitpack.h"

using namespace dtrain;
using namespace dtrain::test;

namespace {

constexpr double pi = 3.141592653589793238462643383279502884;

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

// Naive orthonormal DCT-II of a chunk zero-padded to c, in double with libm cos.
std::vector<double> naive_dct(std::span<const float> x, std::size_t c) {
  std::vector<double> out(c, 0.0);
  for (std::size_t u = 0; u < c; ++u) {
    const double a = u ? std::sqrt(2.0 / c) : std::sqrt(1.0 / c);
    for (std::size_t i = 0; i < x.size(); ++i) out[u] += a * std::cos(pi * (2.0 * i + 1) * u / (2.0 * c)) * x[i];
  }
  return out;
}

// Best k-term approximation of a (padded) chunk in the DCT basis, first len outputs.
struct best_k {
  std::vector<double> y;       // reconstruction
  std::vector<std::size_t> sel;  // kept coefficient indices, ascending
  std::vector<double> coef;
  double dropped_energy = 0;
};
best_k naive_best_k(std::span<const float> x, std::size_t c, std::size_t k) {
  best_k r;
  r.coef = naive_dct(x, c);
  std::vector<std::size_t> o(c);
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](std::size_t a, std::size_t b) { return std::fabs(r.coef[a]) > std::fabs(r.coef[b]); });
  r.sel.assign(o.begin(), o.begin() + static_cast<std::ptrdiff_t>(k));
  std::sort(r.sel.begin(), r.sel.end());
  for (std::size_t j = k; j < c; ++j) r.dropped_energy += r.coef[o[j]] * r.coef[o[j]];
  r.y.assign(x.size(), 0.0);
  for (std::size_t u : r.sel) {
    const double a = u ? std::sqrt(2.0 / c) : std::sqrt(1.0 / c);
    for (std::size_t i = 0; i < x.size(); ++i) r.y[i] += a * std::cos(pi * (2.0 * i + 1) * u / (2.0 * c)) * r.coef[u];
  }
  return r;
}

}  // namespace

TEST_CASE("dct_topk: the deterministic cosine agrees with libm", "[codec][dct_topk]") {
  for (std::uint64_t den : {1u, 2u, 3u, 7u, 64u, 128u, 1000u, 2048u}) {
    for (std::uint64_t num = 0; num <= 4 * den; ++num) {
      CAPTURE(num, den);
      REQUIRE(std::fabs(codec::detail::cos_pi_ratio(num, den) - std::cos(pi * num / den)) < 1e-14);
    }
  }
}

TEST_CASE("dct_topk: the basis is orthonormal (Parseval)", "[codec][dct_topk]") {
  for (std::uint32_t c : {2u, 3u, 64u, 100u, 1024u}) {
    codec::dct_topk_codec d(c, 1, codec::dct_values::f32);
    CAPTURE(c);
    const std::size_t step = c > 128 ? 37 : 1;  // sample rows of the big basis
    for (std::size_t u = 0; u < c; u += step) {
      for (std::size_t v = 0; v < c; v += step) {
        double dot = 0;
        for (std::size_t i = 0; i < c; ++i) dot += static_cast<double>(d.basis(u, i)) * d.basis(v, i);
        REQUIRE(std::fabs(dot - (u == v ? 1.0 : 0.0)) < 1e-6);
      }
    }
  }
}

TEST_CASE("dct_topk: k = C round-trips and keeps the energy", "[codec][dct_topk]") {
  const std::size_t c = GENERATE(2u, 7u, 64u, 256u);
  auto codec_ = make("dct_topk:chunk=" + std::to_string(c) + ",k=" + std::to_string(c) + ",values=f32");
  for (family f : all_families) {
    for (std::size_t n : {std::size_t{1}, c - 1, c, c + 1, 3 * c}) {
      if (n == 0) continue;
      CAPTURE(c, n, family_name(f));
      const auto x = make_input(f, n, 23);
      const auto p = encode(*codec_, x);
      const auto y = decode(*codec_, p, n);
      double ex = 0, ed = 0;
      for (std::size_t i = 0; i < n; ++i) {
        ex += static_cast<double>(x[i]) * x[i];
        ed += (static_cast<double>(y[i]) - x[i]) * (static_cast<double>(y[i]) - x[i]);
      }
      REQUIRE(std::sqrt(ed) <= 1e-5 * std::sqrt(ex) + 1e-30);
      // Parseval on the wire: the coefficients (f32, after c indices) hold the energy.
      const std::byte* body = p.data() + codec::payload_header_bytes + 9;
      const std::size_t ib = packed_bytes(c, bits_for(c));
      double ec = 0;
      for (std::size_t c0 = 0, rec = 0; c0 < n; c0 += c, ++rec)
        for (std::size_t j = 0; j < c; ++j) {
          const double v = load_le<float>(body + rec * (ib + 4 * c) + ib + 4 * j);
          ec += v * v;
        }
      REQUIRE(std::fabs(ec - ex) <= 1e-5 * ex + 1e-30);
    }
  }
}

TEST_CASE("dct_topk: k < C is the best k-term approximation", "[codec][dct_topk]") {
  const auto [c, k] = GENERATE(std::pair<std::size_t, std::size_t>{64, 8}, std::pair<std::size_t, std::size_t>{48, 5},
                               std::pair<std::size_t, std::size_t>{2, 1}, std::pair<std::size_t, std::size_t>{1024, 100});
  auto cd = make("dct_topk:chunk=" + std::to_string(c) + ",k=" + std::to_string(k) + ",values=f32");
  for (family f : all_families) {
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, c - 1, c, c + 1, 5 * c + 3,
                          std::size_t{100003}}) {
      if (n == 100003 && c != 64) continue;  // the naive reference is slow; one config suffices
      CAPTURE(c, k, n, family_name(f));
      const auto x = make_input(f, n, 29);
      REQUIRE(cd->max_encoded_bytes(n) ==
              codec::payload_header_bytes + 9 + (n + c - 1) / c * (packed_bytes(k, bits_for(c)) + 4 * k));
      const auto y = decode(*cd, encode(*cd, x), n);
      for (std::size_t c0 = 0; c0 < n; c0 += c) {
        const std::size_t len = std::min(c, n - c0);
        const auto ref = naive_best_k(std::span(x).subspan(c0, len), c, k);
        double ex = 0;
        for (std::size_t i = 0; i < len; ++i) ex += static_cast<double>(x[c0 + i]) * x[c0 + i];
        const double tol = 1e-5 * std::sqrt(ex) + 1e-30;
        for (std::size_t i = 0; i < len; ++i) REQUIRE(std::fabs(y[c0 + i] - ref.y[i]) <= tol);
        // Error bound: what is lost is at most the dropped coefficients' energy.
        double err = 0;
        for (std::size_t i = 0; i < len; ++i) err += (static_cast<double>(y[c0 + i]) - x[c0 + i]) * (y[c0 + i] - x[c0 + i]);
        REQUIRE(std::sqrt(err) <= std::sqrt(ref.dropped_energy) + tol);
      }
    }
  }
}

TEST_CASE("dct_topk: fp16 and sign values", "[codec][dct_topk]") {
  const std::size_t c = 64, k = 8, n = 64 * 20 + 9;
  const auto x = make_input(family::random, n, 31);
  auto h = make("dct_topk:chunk=64,k=8,values=fp16");
  auto s = make("dct_topk:chunk=64,k=8,values=sign");
  REQUIRE_FALSE(h->summable());
  const auto ph = encode(*h, x);
  const auto ps = encode(*s, x);
  const auto yh = decode(*h, ph, n);
  const auto ys = decode(*s, ps, n);
  const std::size_t ib = packed_bytes(k, bits_for(c));  // 6 bytes
  for (std::size_t c0 = 0, rec = 0; c0 < n; c0 += c, ++rec) {
    const std::size_t len = std::min(c, n - c0);
    const auto ref = naive_best_k(std::span(x).subspan(c0, len), c, k);
    // Sign record: indices, f32 scale = mean |selected coefficient|, 1 bit per value.
    const std::byte* r = ps.data() + codec::payload_header_bytes + 9 + rec * (ib + 4 + 1);
    double mean = 0;
    for (std::size_t u : ref.sel) mean += std::fabs(ref.coef[u]);
    mean /= k;
    const float scale = load_le<float>(r + ib);
    REQUIRE(std::fabs(scale - mean) <= 1e-5 * mean);
    std::vector<std::uint32_t> idx(k);
    unpack_bits<std::uint32_t>(std::span(r, ib), bits_for(c), idx);
    for (std::size_t j = 0; j < k; ++j) {
      REQUIRE(idx[j] == ref.sel[j]);
      const bool neg = (static_cast<unsigned>(r[ib + 4]) >> j) & 1u;
      REQUIRE(neg == (ref.coef[idx[j]] < 0));
    }
    // Decoded sign chunk = inverse DCT of +-scale on the support (naive double).
    for (std::size_t i = 0; i < len; ++i) {
      double v = 0;
      for (std::size_t j = 0; j < k; ++j) {
        const std::size_t u = idx[j];
        const double a = u ? std::sqrt(2.0 / c) : std::sqrt(1.0 / c);
        v += a * std::cos(pi * (2.0 * i + 1) * u / (2.0 * c)) * (ref.coef[u] < 0 ? -scale : scale);
      }
      REQUIRE(std::fabs(ys[c0 + i] - v) <= 1e-5 * scale * k);
      // fp16 values: within half an fp16 ulp per coefficient of the f32 result.
      REQUIRE(std::fabs(yh[c0 + i] - ref.y[i]) <= 2e-3 * std::sqrt(k) * std::fabs(ref.coef[ref.sel[0]]) + 1e-6);
    }
  }
}

TEST_CASE("dct_topk: tampered bodies, mismatched parameters, bad specs", "[codec][dct_topk]") {
  // chunk 48 -> 6-bit indices; k 5 -> 30 bits in 4 bytes (2 padding bits); n = 100 ->
  // 3 records (the last zero-padded).
  auto c = make("dct_topk:chunk=48,k=5,values=f32");
  const auto x = make_input(family::random, 100, 2);
  const auto p = encode(*c, x);
  const std::size_t body = codec::payload_header_bytes + 9, rec = 4 + 20;
  std::vector<float> out(100, 7.0f);
  const std::vector<float> sentinel(100, 7.0f);
  auto expect_bad = [&](const codec::codec& d, std::vector<std::byte> q) {
    codec::seal_payload(q);
    REQUIRE(d.decode(q, out).code() == status_code::data_loss);
    REQUIRE(d.decode_accumulate(q, out, 3.0f).code() == status_code::data_loss);
    REQUIRE(codec::decode_any(q, out).code() == status_code::data_loss);
    REQUIRE(same_bits(out, sentinel));
  };
  auto with_indices = [&](std::size_t r, std::vector<std::uint32_t> idx) {
    auto q = p;
    pack_bits<std::uint32_t>(idx, 6, std::span(q).subspan(body + r * rec, 4));
    return q;
  };
  expect_bad(*c, with_indices(0, {1, 1, 2, 3, 4}));   // duplicate
  expect_bad(*c, with_indices(1, {1, 3, 2, 4, 5}));   // unsorted
  expect_bad(*c, with_indices(2, {1, 2, 3, 4, 48}));  // >= C
  auto pad = p;
  pad[body + 3] |= std::byte{0x80};
  expect_bad(*c, pad);
  for (float bad : {NAN, INFINITY}) {
    auto q = p;
    store_le<float>(q.data() + body + rec + 4 + 8, bad);
    expect_bad(*c, q);
  }
  auto h = make("dct_topk:chunk=48,k=5,values=fp16");
  auto ph = encode(*h, x);
  store_le<std::uint16_t>(ph.data() + body + 4, 0xfc00);
  expect_bad(*h, ph);
  auto s = make("dct_topk:chunk=48,k=5,values=sign");
  const auto ps = encode(*s, x);
  for (float bad : {-1.0f, -0.0f, NAN, INFINITY}) {
    auto q = ps;
    store_le<float>(q.data() + body + 4, bad);
    expect_bad(*s, q);
  }
  auto spad = ps;
  spad[body + 8] |= std::byte{0x40};  // bit 6 of the 5 sign bits
  expect_bad(*s, spad);
  auto zero = encode(*s, std::vector<float>(100, 0.0f));
  zero[body + 8] |= std::byte{0x01};
  expect_bad(*s, zero);

  for (const char* other : {"dct_topk:chunk=48,k=4,values=f32", "dct_topk:chunk=64,k=5,values=f32",
                            "dct_topk:chunk=48,k=5,values=fp16"}) {
    CAPTURE(other);
    REQUIRE(make(other)->decode(p, out).code() == status_code::failed_precondition);
    REQUIRE(same_bits(out, sentinel));
  }
  for (const char* bad : {"dct_topk:chunk=1", "dct_topk:chunk=1025", "dct_topk:chunk=8,k=9", "dct_topk:k=0",
                          "dct_topk:values=bf16", "dct_topk:x=1"}) {
    CAPTURE(bad);
    REQUIRE(codec::make_codec(bad).status().code() == status_code::invalid_argument);
  }
}
