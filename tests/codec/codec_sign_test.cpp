// Tests for codec/codec_sign.h: decoded values are exactly +-scale with the input's
// signs, the scale keeps each block's L1 norm, the layout is as documented, and bad
// bodies or parameters are rejected without touching the output.
#include "dtrain/codec/codec_sign.h"

#include <cmath>
#include <cstring>

#include "codec/codec_test_util.h"
#include "dtrain/codec/payload.h"

using namespace dtrain;
using namespace dtrain::test;

namespace {
bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}
}  // namespace

TEST_CASE("sign: +-scale per block, signs kept, L1 norm kept", "[codec][sign]") {
  const std::size_t block = GENERATE(0u, 1u, 7u, 4096u);
  const std::string spec = "sign:block=" + std::to_string(block);
  auto c = make(spec);
  REQUIRE(c->spec() == spec);
  REQUIRE_FALSE(c->summable());
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{4095},
                        std::size_t{4096}, std::size_t{4097}, std::size_t{100003}}) {
    for (family f : all_families) {
      CAPTURE(spec, n, family_name(f));
      const auto x = make_input(f, n, 19);
      const std::size_t bl = block ? block : n;
      const std::size_t nb = n == 0 ? 0 : (n + bl - 1) / bl;
      REQUIRE(c->max_encoded_bytes(n) == codec::payload_header_bytes + 4 + 4 * nb + (n + 7) / 8);
      const auto y = decode(*c, encode(*c, x), n);
      for (std::size_t b = 0; b < nb; ++b) {
        const std::size_t start = b * bl, end = std::min(n, start + bl);
        double l1 = 0, l1_hat = 0;
        for (std::size_t i = start; i < end; ++i) {
          l1 += std::fabs(static_cast<double>(x[i]));
          l1_hat += std::fabs(static_cast<double>(y[i]));
        }
        const float s = std::fabs(y[start]);
        for (std::size_t i = start; i < end; ++i) {
          REQUIRE(std::fabs(y[i]) == s);                       // one magnitude per block
          REQUIRE(std::signbit(y[i]) == (x[i] < 0.0f));         // x < 0 -> -s, x >= 0 -> +s
        }
        const double len = static_cast<double>(end - start);
        REQUIRE(std::fabs(s - l1 / len) <= 1e-6 * (l1 / len) + 1e-30);
        REQUIRE(std::fabs(l1_hat - l1) <= 1e-6 * l1 + 1e-30);
      }
    }
  }
}

TEST_CASE("sign: body layout matches the documentation", "[codec][sign]") {
  const std::vector<float> x = {1.0f, -2.0f, 0.0f, -0.0f, 3.0f, -1.0f, 0.5f, 2.0f, -4.0f};
  // Whole tensor: scale 13.5 / 9 = 1.5; negatives at 1, 5, 8 (not -0 at 3).
  auto c = make("sign");
  const auto p = encode(*c, x);
  const std::byte* body = p.data() + codec::payload_header_bytes + 4;
  REQUIRE(p.size() == codec::payload_header_bytes + 4 + 4 + 2);
  CHECK(load_le<std::uint32_t>(p.data() + codec::payload_header_bytes) == 0);
  CHECK(load_le<float>(body) == 1.5f);
  CHECK(static_cast<unsigned>(body[4]) == 0x22);
  CHECK(static_cast<unsigned>(body[5]) == 0x01);
  CHECK(decode(*c, p, 9) == std::vector<float>{1.5f, -1.5f, 1.5f, 1.5f, 1.5f, -1.5f, 1.5f, 1.5f, -1.5f});
  // block=4: scales 3/4, 6.5/4, 4/1, then the same sign bytes.
  auto c4 = make("sign:block=4");
  const auto p4 = encode(*c4, x);
  const std::byte* b4 = p4.data() + codec::payload_header_bytes + 4;
  CHECK(load_le<float>(b4) == 0.75f);
  CHECK(load_le<float>(b4 + 4) == 1.625f);
  CHECK(load_le<float>(b4 + 8) == 4.0f);
  CHECK(static_cast<unsigned>(b4[12]) == 0x22);
  CHECK(static_cast<unsigned>(b4[13]) == 0x01);
}

TEST_CASE("sign: tampered bodies and mismatched parameters", "[codec][sign]") {
  auto c = make("sign:block=8");
  const auto x = make_input(family::random, 21, 4);  // 3 blocks, 3 sign bytes, 3 padding bits
  const auto p = encode(*c, x);
  const std::size_t body = codec::payload_header_bytes + 4;
  std::vector<float> out(21, 7.0f);
  const std::vector<float> sentinel(21, 7.0f);
  auto expect_bad = [&](std::vector<std::byte> q) {
    codec::seal_payload(q);
    REQUIRE(c->decode(q, out).code() == status_code::data_loss);
    REQUIRE(c->decode_accumulate(q, out, 0.5f).code() == status_code::data_loss);
    REQUIRE(same_bits(out, sentinel));
  };
  for (float bad : {-1.0f, -0.0f, NAN, INFINITY}) {
    auto q = p;
    store_le<float>(q.data() + body + 4, bad);
    expect_bad(q);
  }
  auto pad = p;
  pad[body + 12 + 2] |= std::byte{0x80};  // bit 23: padding after 21 signs
  expect_bad(pad);
  // A zero-scale block cannot carry a negative sign.
  auto z = encode(*c, std::vector<float>(21, 0.0f));
  z[body + 12] |= std::byte{0x04};
  expect_bad(z);
  // Other block size: failed_precondition; bad specs: invalid_argument.
  REQUIRE(make("sign:block=16")->decode(p, out).code() == status_code::failed_precondition);
  REQUIRE(same_bits(out, sentinel));
  REQUIRE(codec::make_codec("sign:block=4294967295").status().code() == status_code::invalid_argument);
  REQUIRE(codec::make_codec("sign:blk=3").status().code() == status_code::invalid_argument);
  auto q = p;
  store_le<std::uint32_t>(q.data() + codec::payload_header_bytes, 0xffffffffu);
  codec::seal_payload(q);
  REQUIRE(codec::decode_any(q, out).code() == status_code::data_loss);
}
