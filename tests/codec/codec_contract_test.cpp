// The contract every registered codec must keep, checked over default_specs() and a few
// extra parameterisations: exact sizes, self-describing payloads, decode == decode_any,
// decode_accumulate == y + w*decode, NaN/Inf policy, and rejection of every malformed
// payload (truncation at each length, every single-byte corruption, wrong codec, wrong
// count, trailing bytes) without touching the output.
#include <cmath>
#include <cstring>
#include <limits>

#include "codec/codec_test_util.h"
#include "dtrain/codec/payload.h"

using namespace dtrain;
using namespace dtrain::test;

namespace {
std::vector<std::string> contract_specs() {
  std::vector<std::string> s;
  for (auto v : codec::default_specs()) s.emplace_back(v);
  return s;
}
bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}
}  // namespace

TEST_CASE("every codec: sizes, self-description, decode_any, accumulate", "[codec][contract]") {
  for (const std::string& spec : contract_specs()) {
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{4096}, std::size_t{10007}}) {
      auto c = make(spec);
      // PowerSGD needs a 2-D shape: its default spec is built for a fixed count.
      if (c->id() == codec::codec_id::powersgd) continue;
      CAPTURE(spec, n);
      const auto x = make_input(family::random, n, n + 3);
      const auto p = encode(*c, x);
      REQUIRE(*codec::payload_count(p) == n);
      const auto y = decode(*c, p, n);
      for (float v : y) REQUIRE(std::isfinite(v));
      // A fresh decoder built from the payload alone decodes identically.
      std::vector<float> z(n);
      REQUIRE(codec::decode_any(p, z).ok());
      REQUIRE(same_bits(y, z));
      // The spec round-trips.
      auto c2 = make(c->spec());
      REQUIRE(c2->spec() == c->spec());
      // decode_accumulate == acc + w * decode, bit for bit.
      std::vector<float> acc(n), ref(n);
      for (std::size_t i = 0; i < n; ++i) acc[i] = ref[i] = 0.25f * static_cast<float>(i % 5);
      REQUIRE(c->decode_accumulate(p, acc, 0.5f).ok());
      for (std::size_t i = 0; i < n; ++i) ref[i] += 0.5f * y[i];
      REQUIRE(same_bits(acc, ref));
    }
  }
}

TEST_CASE("every codec: NaN/Inf input is rejected by default, zeroed on request", "[codec][contract]") {
  for (const std::string& spec : contract_specs()) {
    auto c = make(spec);
    if (c->id() == codec::codec_id::powersgd) continue;
    CAPTURE(spec);
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY}) {
      auto x = make_input(family::random, 300, 9);
      x[123] = bad;
      std::vector<std::byte> buf(c->max_encoded_bytes(x.size()));
      auto r = c->encode(x, buf);
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().code() == status_code::invalid_argument);
      CHECK(r.status().message().find("123") != std::string::npos);
    }
    c->set_nonfinite(codec::nonfinite_policy::zero);
    auto x = make_input(family::random, 300, 9);
    x[5] = std::numeric_limits<float>::quiet_NaN();
    x[6] = INFINITY;
    const auto p = encode(*c, x);
    for (float v : decode(*c, p, x.size())) REQUIRE(std::isfinite(v));
  }
}

TEST_CASE("every codec: malformed payloads are rejected and the output is untouched", "[codec][contract]") {
  for (const std::string& spec : contract_specs()) {
    auto c = make(spec);
    if (c->id() == codec::codec_id::powersgd) continue;
    CAPTURE(spec);
    const std::size_t n = 100;
    const auto x = make_input(family::random, n, 5);
    const auto p = encode(*c, x);
    std::vector<float> out(n, 7.0f);
    const std::vector<float> sentinel(n, 7.0f);

    // Every truncation.
    for (std::size_t len = 0; len < p.size(); ++len) {
      auto st = c->decode(std::span(p).first(len), out);
      REQUIRE_FALSE(st.ok());
      REQUIRE(st.code() == status_code::data_loss);
      REQUIRE(same_bits(out, sentinel));
      REQUIRE_FALSE(codec::decode_any(std::span(p).first(len), out).ok());
    }
    // Trailing bytes.
    auto longer = p;
    longer.push_back(std::byte{0});
    REQUIRE(c->decode(longer, out).code() == status_code::data_loss);
    // Every single-byte corruption is caught (checksum or header checks).
    for (std::size_t i = 0; i < p.size(); ++i) {
      auto bad = p;
      bad[i] ^= std::byte{0x5a};
      auto st = c->decode(bad, out);
      CAPTURE(i);
      REQUIRE_FALSE(st.ok());
      REQUIRE(same_bits(out, sentinel));
      auto st2 = codec::decode_accumulate_any(bad, out, 1.0f);
      REQUIRE_FALSE(st2.ok());
      REQUIRE(same_bits(out, sentinel));
    }
    // Wrong output size.
    std::vector<float> small(n - 1);
    REQUIRE(c->decode(p, small).code() == status_code::invalid_argument);
    // A payload of another codec.
    auto other = make(c->id() == codec::codec_id::identity ? "fp16" : "identity");
    const auto q = encode(*other, x);
    REQUIRE(c->decode(q, out).code() == status_code::failed_precondition);
    REQUIRE(same_bits(out, sentinel));
    // Too small an output buffer for encode.
    std::vector<std::byte> tiny(c->max_encoded_bytes(n) - 1);
    REQUIRE(c->encode(x, tiny).status().code() == status_code::resource_exhausted);
  }
}
