// Tests for codec/codec_randomk.h: the decoder regenerates the encoder's support, peers
// with the same seed and round agree, rounds differ, rescale=1 is unbiased, and bad
// bodies or parameters are rejected without touching the output.
#include "dtrain/codec/codec_randomk.h"

#include <cmath>
#include <cstring>
#include <set>

#include "codec/codec_test_util.h"
#include "dtrain/codec/payload.h"
#include "dtrain/core/dtype.h"

using namespace dtrain;
using namespace dtrain::test;

namespace {
bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}
codec::randomk_codec& as_randomk(codec::codec& c) { return dynamic_cast<codec::randomk_codec&>(c); }
}  // namespace

TEST_CASE("randomk: the support is a sorted uniform subset, fixed by (seed, round, chunk)", "[codec][randomk]") {
  for (std::size_t len : {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{64}, std::size_t{4096},
                          std::size_t{65536}}) {
    for (std::size_t k : {std::size_t{1}, std::size_t{3}, len / 2, len, len + 3}) {
      if (k == 0) continue;
      CAPTURE(len, k);
      std::vector<std::uint32_t> a(std::min(k, len)), b(a.size());
      REQUIRE(codec::randomk_codec::support(5, 9, 2, len, k, a) == a.size());
      REQUIRE(codec::randomk_codec::support(5, 9, 2, len, k, b) == b.size());
      REQUIRE(a == b);
      for (std::size_t j = 0; j < a.size(); ++j) {
        REQUIRE(a[j] < len);
        if (j) REQUIRE(a[j] > a[j - 1]);
      }
    }
  }
  // Uniformity: over many chunks every position is chosen about k/len of the time.
  const std::size_t len = 50, k = 5, trials = 20000;
  std::vector<int> hits(len, 0);
  std::vector<std::uint32_t> s(k);
  for (std::uint64_t t = 0; t < trials; ++t) {
    codec::randomk_codec::support(1, t / 100, t % 100, len, k, s);
    for (auto i : s) ++hits[i];
  }
  const double expect = static_cast<double>(trials) * k / len;  // 2000, sd ~42
  for (int h : hits) REQUIRE(std::fabs(h - expect) < 6 * std::sqrt(expect));
}

TEST_CASE("randomk: decode places exactly the encoder's values on the support", "[codec][randomk]") {
  const std::string values = GENERATE("f32", "fp16");
  const int rescale = GENERATE(0, 1);
  const std::size_t chunk = GENERATE(1u, 7u, 4096u);
  const std::size_t k = chunk == 1 ? 1 : chunk == 7 ? 3 : 64;
  const std::string spec = "randomk:chunk=" + std::to_string(chunk) + ",k=" + std::to_string(k) +
                           ",seed=77,rescale=" + std::to_string(rescale) + ",values=" + values;
  auto c = make(spec);
  REQUIRE(c->summable());
  REQUIRE(c->spec() == spec);
  as_randomk(*c).set_round(1000);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, chunk - 1, chunk, chunk + 1,
                        std::size_t{100003}}) {
    for (family f : all_families) {
      CAPTURE(spec, n, family_name(f));
      const std::uint64_t round = as_randomk(*c).round();
      const auto x = make_input(f, n, 13);
      const auto p = encode(*c, x);
      REQUIRE(as_randomk(*c).round() == round + 1);
      const std::size_t full = n / chunk, tail = n % chunk;
      const std::size_t vals = full * k + std::min(k, tail);
      REQUIRE(p.size() == codec::payload_header_bytes + 26 + vals * (values == "f32" ? 4 : 2));
      // The round is in the parameters (offset 16 of the block).
      REQUIRE(load_le<std::uint64_t>(p.data() + codec::payload_header_bytes + 16) == round);
      const auto y = decode(*c, p, n);
      std::vector<char> on(n, 0);
      for (std::size_t c0 = 0, ci = 0; c0 < n; c0 += chunk, ++ci) {
        const std::size_t len = std::min(chunk, n - c0);
        std::vector<std::uint32_t> s(std::min(k, len));
        codec::randomk_codec::support(77, round, ci, len, k, s);
        const float scale = rescale ? static_cast<float>(len) / static_cast<float>(s.size()) : 1.0f;
        for (auto i : s) {
          on[c0 + i] = 1;
          const float want = x[c0 + i] * scale;
          const float got = y[c0 + i];
          if (values == "f32") {
            REQUIRE(got == want);
          } else {
            REQUIRE(got == f16_bits_to_f32(f32_to_f16_bits(want)));
          }
        }
      }
      for (std::size_t i = 0; i < n; ++i)
        if (!on[i]) REQUIRE(y[i] == 0.0f);
    }
  }
}

TEST_CASE("randomk: peers with the same seed and round share a support; rounds differ", "[codec][randomk]") {
  auto a = make("randomk:chunk=4096,k=64,seed=3");
  auto b = make("randomk:chunk=4096,k=64,seed=3");
  auto other_seed = make("randomk:chunk=4096,k=64,seed=4");
  const std::size_t n = 3 * 4096 + 100;
  const auto xa = make_input(family::nonzero_mean, n, 1);  // never zero, so support = non-zeros
  const auto xb = make_input(family::all_negative, n, 2);
  auto support_of = [&](codec::codec& c, const std::vector<float>& x) {
    const auto y = decode(c, encode(c, x), n);
    std::vector<std::size_t> s;
    for (std::size_t i = 0; i < n; ++i)
      if (y[i] != 0.0f) s.push_back(i);
    return s;
  };
  as_randomk(*a).set_round(42);
  as_randomk(*b).set_round(42);
  as_randomk(*other_seed).set_round(42);
  const auto sa = support_of(*a, xa);
  REQUIRE(sa.size() == 3 * 64 + 64);
  REQUIRE(sa == support_of(*b, xb));
  REQUIRE(sa != support_of(*other_seed, xa));
  // Both advanced to round 43: still aligned, but not the round-42 support.
  const auto next = support_of(*a, xa);
  REQUIRE(next == support_of(*b, xb));
  REQUIRE(next != sa);
  // Summable: the sum of the two decodes equals the decode of both, on one support.
  as_randomk(*a).set_round(7);
  as_randomk(*b).set_round(7);
  const auto pa = encode(*a, xa), pb = encode(*b, xb);
  std::vector<float> acc(n, 0.0f);
  REQUIRE(codec::decode_accumulate_any(pa, acc).ok());
  REQUIRE(codec::decode_accumulate_any(pb, acc).ok());
  const auto ya = decode(*a, pa, n), yb = decode(*b, pb, n);
  for (std::size_t i = 0; i < n; ++i) REQUIRE(acc[i] == ya[i] + yb[i]);
}

TEST_CASE("randomk: rescale=1 is unbiased over rounds", "[codec][randomk]") {
  auto c = make("randomk:chunk=64,k=8,seed=11,rescale=1");
  const std::size_t n = 300;  // chunks of 64 and a last one of 44
  const auto x = make_input(family::nonzero_mean, n, 6);
  const int rounds = 4000;
  std::vector<double> sum(n, 0.0);
  std::vector<float> y(n);
  for (int r = 0; r < rounds; ++r) {
    const auto p = encode(*c, x);
    REQUIRE(c->decode(p, y).ok());
    for (std::size_t i = 0; i < n; ++i) sum[i] += y[i];
  }
  for (std::size_t i = 0; i < n; ++i) {
    CAPTURE(i);
    const double len = i < 256 ? 64.0 : 44.0;
    // Each round: x*len/8 with probability 8/len, else 0 -> sd of the mean below.
    const double sd = std::fabs(x[i]) * std::sqrt((len / 8 - 1) / rounds);
    REQUIRE(std::fabs(sum[i] / rounds - x[i]) < 6 * sd);
  }
}

TEST_CASE("randomk: bad bodies, parameters and specs", "[codec][randomk]") {
  auto c = make("randomk:chunk=16,k=4,seed=1,values=f32");
  const auto x = make_input(family::random, 40, 3);
  const auto p = encode(*c, x);
  std::vector<float> out(40, 7.0f);
  const std::vector<float> sentinel(40, 7.0f);
  for (float bad : {NAN, INFINITY}) {
    auto q = p;
    store_le<float>(q.data() + codec::payload_header_bytes + 26 + 4 * 5, bad);
    codec::seal_payload(q);
    REQUIRE(c->decode(q, out).code() == status_code::data_loss);
    REQUIRE(c->decode_accumulate(q, out).code() == status_code::data_loss);
    REQUIRE(same_bits(out, sentinel));
  }
  auto h = make("randomk:chunk=16,k=4,seed=1,values=fp16");
  auto ph = encode(*h, x);
  store_le<std::uint16_t>(ph.data() + codec::payload_header_bytes + 26 + 2, 0x7c00);
  codec::seal_payload(ph);
  REQUIRE(h->decode(ph, out).code() == status_code::data_loss);
  REQUIRE(same_bits(out, sentinel));

  // Different seed / k / chunk / values / rescale: failed_precondition. Another round: fine.
  for (const char* other : {"randomk:chunk=16,k=4,seed=2", "randomk:chunk=16,k=3,seed=1",
                            "randomk:chunk=8,k=4,seed=1", "randomk:chunk=16,k=4,seed=1,values=fp16",
                            "randomk:chunk=16,k=4,seed=1,rescale=1"}) {
    CAPTURE(other);
    REQUIRE(make(other)->decode(p, out).code() == status_code::failed_precondition);
    REQUIRE(same_bits(out, sentinel));
  }
  auto later = make("randomk:chunk=16,k=4,seed=1");
  as_randomk(*later).set_round(99);
  REQUIRE(later->decode(p, out).ok());
  REQUIRE(same_bits(out, decode(*c, p, 40)));

  auto q = p;
  q[codec::payload_header_bytes + 25] = std::byte{2};  // rescale must be 0 or 1
  codec::seal_payload(q);
  REQUIRE(codec::decode_any(q, out).code() == status_code::data_loss);
  for (const char* bad : {"randomk:k=0", "randomk:chunk=8,k=9", "randomk:rescale=2", "randomk:values=bf16",
                          "randomk:seed=-1", "randomk:round=3"}) {
    CAPTURE(bad);
    REQUIRE(codec::make_codec(bad).status().code() == status_code::invalid_argument);
  }
}

TEST_CASE("randomk: a failed encode does not advance the round", "[codec][randomk]") {
  auto c = make("randomk:chunk=16,k=4");
  std::vector<float> x(20, 1.0f);
  x[3] = NAN;
  std::vector<std::byte> buf(c->max_encoded_bytes(x.size()));
  REQUIRE_FALSE(c->encode(x, buf).ok());
  REQUIRE(as_randomk(*c).round() == 0);
  std::vector<std::byte> small(3);
  x[3] = 1.0f;
  REQUIRE_FALSE(c->encode(x, small).ok());
  REQUIRE(as_randomk(*c).round() == 0);
}
