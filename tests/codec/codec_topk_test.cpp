// Tests for codec/codec_topk.h: the selection equals a naive top-k per chunk, values
// keep their documented bounds, the body layout is as documented, and every tampered
// body or mismatched parameter is rejected without touching the output.
#include "dtrain/codec/codec_topk.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "codec/codec_test_util.h"
#include "dtrain/codec/payload.h"
#include "dtrain/core/bitpack.h"
#include "dtrain/core/dtype.h"

using namespace dtrain;
using namespace dtrain::test;

namespace {

// Naive reference: sort a chunk by (|x| desc, index asc), keep k, sort by index.
std::vector<std::uint32_t> naive_topk(std::span<const float> x, std::size_t k) {
  std::vector<std::uint32_t> o(x.size());
  std::iota(o.begin(), o.end(), 0u);
  std::sort(o.begin(), o.end(), [&](std::uint32_t a, std::uint32_t b) {
    const float fa = std::fabs(x[a]), fb = std::fabs(x[b]);
    return fa != fb ? fa > fb : a < b;
  });
  o.resize(std::min(k, x.size()));
  std::sort(o.begin(), o.end());
  return o;
}

unsigned q_of(const std::string& v) { return v == "q2" ? 2 : v == "q4" ? 4 : v == "q8" ? 8 : 0; }

// Independent size formula from the documented layout.
std::size_t expected_body(std::size_t n, std::size_t chunk, std::size_t k, const std::string& v) {
  std::size_t total = 0;
  const unsigned b = bits_for(chunk);
  for (std::size_t c0 = 0; c0 < n; c0 += chunk) {
    const std::size_t m = std::min(k, std::min(chunk, n - c0));
    total += (m * b + 7) / 8;
    if (const unsigned q = q_of(v)) total += 8 + (m * q + 7) / 8;
    else total += m * (v == "f32" ? 4 : 2);
  }
  return total;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

}  // namespace

TEST_CASE("topk: selection, density and value bounds on every input family", "[codec][topk]") {
  const std::string values = GENERATE("fp16", "bf16", "f32", "q2", "q4", "q8");
  const auto [chunk, k] = GENERATE(std::pair<std::size_t, std::size_t>{4096, 64}, std::pair<std::size_t, std::size_t>{1, 1},
                                   std::pair<std::size_t, std::size_t>{7, 3}, std::pair<std::size_t, std::size_t>{256, 256},
                                   std::pair<std::size_t, std::size_t>{1000, 1});
  const std::string spec = "topk:chunk=" + std::to_string(chunk) + ",k=" + std::to_string(k) + ",values=" + values;
  auto c = make(spec);
  REQUIRE_FALSE(c->summable());
  REQUIRE(c->spec() == spec);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, chunk - 1, chunk, chunk + 1, 2 * chunk + 1,
                        std::size_t{100003}}) {
    if (n > 0 && n == chunk - 1 && chunk == 1) continue;
    for (family f : all_families) {
      CAPTURE(spec, n, family_name(f));
      const auto x = make_input(f, n, 11);
      REQUIRE(c->max_encoded_bytes(n) == codec::payload_header_bytes + 9 + expected_body(n, chunk, k, values));
      const auto p = encode(*c, x);
      const auto y = decode(*c, p, n);
      for (std::size_t c0 = 0; c0 < n; c0 += chunk) {
        const std::size_t len = std::min(chunk, n - c0);
        const std::span<const float> xc(x.data() + c0, len);
        const auto sel = naive_topk(xc, k);
        REQUIRE(sel.size() == std::min(k, len));  // density exactly k / C
        std::vector<char> chosen(len, 0);
        float lo = INFINITY, hi = -INFINITY;
        for (auto i : sel) {
          chosen[i] = 1;
          lo = std::min(lo, xc[i]);
          hi = std::max(hi, xc[i]);
        }
        for (std::size_t i = 0; i < len; ++i) {
          const float xi = xc[i], yi = y[c0 + i];
          if (!chosen[i]) {
            REQUIRE(yi == 0.0f);
            continue;
          }
          const float ax = std::fabs(xi);
          if (values == "f32") {
            REQUIRE(yi == xi);
          } else if (values == "fp16") {
            // Half an ulp: 2^-11 relative for normals, 2^-25 absolute below 2^-14.
            REQUIRE(std::fabs(yi - xi) <= std::max(ax * 0x1p-11f, 0x1p-25f));
          } else if (values == "bf16") {
            REQUIRE(std::fabs(yi - xi) <= ax * 0x1p-8f);
          } else {
            const double step = (static_cast<double>(hi) - lo) / ((1u << q_of(values)) - 1);
            REQUIRE(std::fabs(static_cast<double>(yi) - xi) <= step / 2 * (1 + 1e-6) + 1e-7 * std::fabs(xi));
            if (lo == hi) REQUIRE(yi == xi);  // exact for a constant chunk
          }
        }
      }
    }
  }
}

TEST_CASE("topk: body layout matches the documentation", "[codec][topk]") {
  // chunk 8 -> 3-bit indices. Selected |x|: 7 at 3 and 5 at 1 -> indices 1, 3 packed
  // LSB-first: 1 | 3 << 3 = 0x19 in one byte (2 zero padding bits), then f32 values.
  auto c = make("topk:chunk=8,k=2,values=f32");
  const std::vector<float> x = {0.0f, 5.0f, 0.0f, -7.0f, 0.0f, 0.0f, 1.0f, 0.0f};
  const auto p = encode(*c, x);
  const std::byte* params = p.data() + codec::payload_header_bytes;
  CHECK(load_le<std::uint32_t>(params) == 8);
  CHECK(load_le<std::uint32_t>(params + 4) == 2);
  CHECK(static_cast<unsigned>(params[8]) == 2);  // values = f32
  const std::byte* body = params + 9;
  REQUIRE(p.size() == codec::payload_header_bytes + 9 + 1 + 8);
  CHECK(static_cast<unsigned>(body[0]) == 0x19);
  CHECK(load_le<float>(body + 1) == 5.0f);
  CHECK(load_le<float>(body + 5) == -7.0f);

  // q2 record: indices, then f32 lo, hi, then 2-bit codes.
  auto q = make("topk:chunk=4,k=4,values=q2");
  const std::vector<float> z = {-1.0f, 0.0f, 1.0f, 2.0f};
  const auto pq = encode(*q, z);
  const std::byte* bq = pq.data() + codec::payload_header_bytes + 9;
  // indices 0..3 in 2 bits: 0 | 1<<2 | 2<<4 | 3<<6 = 0xe4; lo = -1, hi = 2, step 1 -> codes 0,1,2,3.
  CHECK(static_cast<unsigned>(bq[0]) == 0xe4);
  CHECK(load_le<float>(bq + 1) == -1.0f);
  CHECK(load_le<float>(bq + 5) == 2.0f);
  CHECK(static_cast<unsigned>(bq[9]) == 0xe4);
  CHECK(decode(*q, pq, 4) == z);
}

TEST_CASE("topk: ties go to the smaller index; fp16 saturates instead of overflowing", "[codec][topk]") {
  auto c = make("topk:chunk=10,k=3,values=fp16");
  std::vector<float> x(25, -0.5f);
  const auto y = decode(*c, encode(*c, x), x.size());
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(y[i] == ((i % 10) < 3 ? -0.5f : 0.0f));
  const std::vector<float> big = {1e6f, -1e9f, 3.0f};
  auto h = make("topk:chunk=3,k=3,values=fp16");
  const auto yb = decode(*h, encode(*h, big), 3);
  CHECK(yb[0] == 65504.0f);
  CHECK(yb[1] == -65504.0f);
  CHECK(yb[2] == 3.0f);
  auto b = make("topk:chunk=3,k=3,values=bf16");
  const std::vector<float> huge = {3.4e38f, -3.4e38f, 1.0f};
  for (float v : decode(*b, encode(*b, huge), 3)) CHECK(std::isfinite(v));
}

TEST_CASE("topk: decode_accumulate only adds at the selected indices", "[codec][topk]") {
  auto c = make("topk:chunk=64,k=5,values=bf16");
  const auto x = make_input(family::random, 300, 3);
  const auto p = encode(*c, x);
  const auto y = decode(*c, p, x.size());
  std::vector<float> acc(x.size()), ref(x.size());
  for (std::size_t i = 0; i < acc.size(); ++i) acc[i] = ref[i] = static_cast<float>(i) * 0.125f - 3.0f;
  REQUIRE(c->decode_accumulate(p, acc, -0.75f).ok());
  for (std::size_t i = 0; i < acc.size(); ++i) {
    if (y[i] != 0.0f) ref[i] += -0.75f * y[i];
  }
  REQUIRE(same_bits(acc, ref));
}

namespace {

// Rewrites body bytes of an encoded payload, reseals it, and expects data_loss with the
// output (decode and accumulate) untouched.
void expect_rejected(const codec::codec& c, std::vector<std::byte> p, std::size_t n) {
  codec::seal_payload(p);
  std::vector<float> out(n, 7.0f);
  const std::vector<float> sentinel(n, 7.0f);
  auto st = c.decode(p, out);
  INFO(st.to_string());
  REQUIRE(st.code() == status_code::data_loss);
  REQUIRE(same_bits(out, sentinel));
  REQUIRE(c.decode_accumulate(p, out, 2.0f).code() == status_code::data_loss);
  REQUIRE(same_bits(out, sentinel));
  REQUIRE(codec::decode_any(p, out).code() == status_code::data_loss);
  REQUIRE(same_bits(out, sentinel));
}

void write_indices(std::vector<std::byte>& p, std::size_t offset, std::vector<std::uint32_t> idx, unsigned bits) {
  pack_bits<std::uint32_t>(idx, bits, std::span(p).subspan(codec::payload_header_bytes + 9 + offset));
}

}  // namespace

TEST_CASE("topk: tampered bodies are data_loss and leave the output untouched", "[codec][topk]") {
  // chunk 16 (4-bit indices), k 4: records of 2 index bytes + 16 value bytes; n = 40
  // gives chunks of 16, 16 and 8.
  auto c = make("topk:chunk=16,k=4,values=f32");
  const auto x = make_input(family::random, 40, 21);
  const auto good = encode(*c, x);
  std::vector<float> tmp(40);
  REQUIRE(c->decode(good, tmp).ok());
  const std::size_t rec = 2 + 16;
  SECTION("duplicate index") {
    auto p = good;
    write_indices(p, 0, {2, 2, 5, 9}, 4);
    expect_rejected(*c, p, 40);
  }
  SECTION("unsorted indices") {
    auto p = good;
    write_indices(p, rec, {5, 2, 7, 9}, 4);
    expect_rejected(*c, p, 40);
  }
  SECTION("index beyond the short last chunk") {
    auto p = good;
    write_indices(p, 2 * rec, {1, 2, 3, 9}, 4);  // last chunk has 8 elements
    expect_rejected(*c, p, 40);
  }
  SECTION("non-finite value") {
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      auto p = good;
      store_le<float>(p.data() + codec::payload_header_bytes + 9 + rec + 2 + 4, bad);
      expect_rejected(*c, p, 40);
    }
  }
  SECTION("non-zero padding bits") {
    // chunk 8 -> 3-bit indices, k 3 -> 9 bits in 2 bytes, 7 padding bits.
    auto c3 = make("topk:chunk=8,k=3,values=fp16");
    const auto x3 = make_input(family::random, 8, 4);
    auto p = encode(*c3, x3);
    p[codec::payload_header_bytes + 9 + 1] |= std::byte{0x80};
    expect_rejected(*c3, p, 8);
  }
  SECTION("fp16 / bf16 Inf or NaN") {
    for (const char* v : {"fp16", "bf16"}) {
      auto ch = make(std::string("topk:chunk=16,k=4,values=") + v);
      auto p = encode(*ch, x);
      const std::uint16_t inf = std::string(v) == "fp16" ? 0x7c00 : 0x7f80;
      store_le<std::uint16_t>(p.data() + codec::payload_header_bytes + 9 + 2, inf);
      expect_rejected(*ch, p, 40);
      store_le<std::uint16_t>(p.data() + codec::payload_header_bytes + 9 + 2, static_cast<std::uint16_t>(inf | 1));
      expect_rejected(*ch, p, 40);
    }
  }
  SECTION("q-bit scales: non-finite, inverted, or constant with non-zero codes") {
    auto cq = make("topk:chunk=16,k=4,values=q4");
    auto p = encode(*cq, x);
    const std::size_t v0 = codec::payload_header_bytes + 9 + 2;
    auto p1 = p;
    store_le<float>(p1.data() + v0, NAN);
    expect_rejected(*cq, p1, 40);
    auto p2 = p;
    store_le<float>(p2.data() + v0 + 4, INFINITY);
    expect_rejected(*cq, p2, 40);
    auto p3 = p;
    store_le<float>(p3.data() + v0, 5.0f);
    store_le<float>(p3.data() + v0 + 4, 1.0f);
    expect_rejected(*cq, p3, 40);
    auto p4 = p;
    store_le<float>(p4.data() + v0, 1.0f);
    store_le<float>(p4.data() + v0 + 4, 1.0f);
    p4[v0 + 8] = std::byte{0x01};
    expect_rejected(*cq, p4, 40);
  }
}

TEST_CASE("topk: mismatched parameters are failed_precondition; bad specs invalid_argument", "[codec][topk]") {
  const auto x = make_input(family::random, 5000, 2);
  auto enc = make("topk:chunk=4096,k=64,values=fp16");
  const auto p = encode(*enc, x);
  for (const char* other : {"topk:chunk=4096,k=32,values=fp16", "topk:chunk=2048,k=64,values=fp16",
                            "topk:chunk=4096,k=64,values=bf16"}) {
    CAPTURE(other);
    auto dec = make(other);
    std::vector<float> out(x.size(), 7.0f);
    REQUIRE(dec->decode(p, out).code() == status_code::failed_precondition);
    REQUIRE(out[0] == 7.0f);
  }
  for (const char* bad : {"topk:chunk=0", "topk:chunk=65537", "topk:chunk=16,k=17", "topk:k=0", "topk:values=q3",
                          "topk:kk=3"}) {
    CAPTURE(bad);
    auto r = codec::make_codec(bad);
    REQUIRE_FALSE(r.ok());
    REQUIRE(r.status().code() == status_code::invalid_argument);
  }
  // Parameters no encoder writes (k > chunk) are data_loss for decode_any.
  auto q = p;
  store_le<std::uint32_t>(q.data() + codec::payload_header_bytes + 4, 5000);
  codec::seal_payload(q);
  std::vector<float> out(x.size());
  REQUIRE(codec::decode_any(q, out).code() == status_code::data_loss);
  REQUIRE(enc->decode(q, out).code() == status_code::data_loss);
}

TEST_CASE("topk: encoding is deterministic and independent of buffer alignment", "[codec][topk]") {
  auto c = make("topk:chunk=4096,k=64,values=q4");
  const auto x = make_input(family::heavy_tail, 3 * 4096 + 5, 8);
  const auto a = encode(*c, x);
  std::vector<std::byte> b(a.size() + 1);
  REQUIRE(c->encode(x, std::span(b).subspan(1)).ok());
  REQUIRE(std::memcmp(a.data(), b.data() + 1, a.size()) == 0);
  REQUIRE(decode(*c, std::span(b).subspan(1, a.size()), x.size()) == decode(*c, a, x.size()));
}
