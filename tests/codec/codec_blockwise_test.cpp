// Tests for codec/codec_blockwise.h: the per-block bound |x^ - x| <= a/(2M) + a 2^-21 (+2^-140)
// for both widths, many block sizes and every family; hand-computed codes and bytes;
// rejection of bad scales, never-encoded codes and padding; parameter mismatches.
#include "dtrain/codec/codec_blockwise.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "codec/codec_test_util.h"
#include "dtrain/codec/payload.h"
#include "dtrain/core/bitpack.h"

using namespace dtrain;
using namespace dtrain::test;

namespace {

constexpr std::size_t body_off = codec::payload_header_bytes + 5;

std::string spec_of(unsigned bits, std::size_t block) {
  return "blockwise:bits=" + std::to_string(bits) + ",block=" + std::to_string(block);
}

void check_bound(std::span<const float> x, std::span<const float> y, unsigned bits, std::size_t block) {
  const double levels = bits == 8 ? 127.0 : 7.0;
  for (std::size_t s = 0; s < x.size(); s += block) {
    const std::size_t m = std::min(block, x.size() - s);
    const double a = max_abs(x.subspan(s, m));
    // 2^-140: a / M rounds to a subnormal float when a < M 2^-126.
    const double bound = a / (2.0 * levels) + a * 0x1p-21 + 0x1p-140;
    for (std::size_t i = s; i < s + m; ++i) {
      CAPTURE(i, x[i], y[i], a);
      REQUIRE(std::fabs(static_cast<double>(y[i]) - x[i]) <= bound);
      REQUIRE(!(y[i] > 0.0f && x[i] < 0.0f));  // never flips the sign
      REQUIRE(!(y[i] < 0.0f && x[i] > 0.0f));
    }
  }
}

}  // namespace

TEST_CASE("blockwise meets its bound for both widths, block sizes, families, sizes", "[codec][blockwise]") {
  const std::size_t block = GENERATE(1u, 7u, 64u, 256u, 65536u);
  const unsigned bits = GENERATE(8u, 4u);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, block - 1, block, block + 1,
                        3 * block + 5, std::size_t{100003}}) {
    for (family f : all_families) {
      CAPTURE(block, bits, n, family_name(f));
      auto c = make(spec_of(bits, block));
      const auto x = make_input(f, n, 40 + n);
      const std::size_t nblocks = (n + block - 1) / block;
      REQUIRE(c->max_encoded_bytes(n) ==
              body_off + 4 * nblocks + (bits == 8 ? n : packed_bytes(n, 4)));
      const auto y = decode(*c, encode(*c, x), n);
      check_bound(x, y, bits, block);
      if (f == family::all_zero)
        for (float v : y) REQUIRE(v == 0.0f);
    }
  }
}

TEST_CASE("blockwise handles tiny and huge blocks without overflow", "[codec][blockwise]") {
  const std::vector<std::vector<float>> cases = {
      {1e-45f, -3e-45f, 0.0f, 2e-45f},
      {1e-40f, -2e-41f},
      {3.4e38f, -3.4e38f, 1.0f, 0.0f},
      {0.0f, 0.0f, -0.0f},
  };
  for (unsigned bits : {8u, 4u}) {
    for (const auto& x : cases) {
      CAPTURE(bits, x);
      auto c = make(spec_of(bits, 4));
      const auto y = decode(*c, encode(*c, x), x.size());
      for (float v : y) REQUIRE(std::isfinite(v));
      check_bound(x, y, bits, 4);
    }
  }
}

TEST_CASE("blockwise hand-computed codes and bytes", "[codec][blockwise]") {
  {
    // 8-bit, one block {1, -0.5, 0.25, 0}: a = 1, x * 127 = {127, -63.5, 31.75, 0};
    // round half to even -> {127, -64, 32, 0} = bytes 7F C0 20 00.
    auto c = make(spec_of(8, 4));
    const std::vector<float> x = {1.0f, -0.5f, 0.25f, 0.0f};
    const auto p = encode(*c, x);
    REQUIRE(p.size() == body_off + 4 + 4);
    CHECK(p[codec::payload_header_bytes] == std::byte{8});
    CHECK(load_le<std::uint32_t>(p.data() + codec::payload_header_bytes + 1) == 4u);
    CHECK(load_le<float>(p.data() + body_off) == 1.0f);
    CHECK(p[body_off + 4] == std::byte{0x7F});
    CHECK(p[body_off + 5] == std::byte{0xC0});
    CHECK(p[body_off + 6] == std::byte{0x20});
    CHECK(p[body_off + 7] == std::byte{0x00});
    const float d = 1.0f / 127.0f;
    CHECK(decode(*c, p, 4) == std::vector<float>{127.0f * d, -64.0f * d, 32.0f * d, 0.0f});
  }
  {
    // 4-bit, blocks of 2: {2, -1 | 0.3, 0.1}. Block 0: a = 2, x * 7/2 = {7, -3.5} -> {7, -4};
    // block 1: a = 0.3, x * 7/0.3 = {7, 2.33} -> {7, 2}. Nibbles 7, C (-4), 7, 2 -> C7 27.
    auto c = make(spec_of(4, 2));
    const std::vector<float> x = {2.0f, -1.0f, 0.3f, 0.1f};
    const auto p = encode(*c, x);
    REQUIRE(p.size() == body_off + 8 + 2);
    CHECK(load_le<float>(p.data() + body_off) == 2.0f);
    CHECK(load_le<float>(p.data() + body_off + 4) == 0.3f);
    CHECK(p[body_off + 8] == std::byte{0xC7});
    CHECK(p[body_off + 9] == std::byte{0x27});
    const auto y = decode(*c, p, 4);
    CHECK(y[0] == 7.0f * (2.0f / 7.0f));
    CHECK(y[1] == -4.0f * (2.0f / 7.0f));
    CHECK(y[2] == 7.0f * (0.3f / 7.0f));
    CHECK(y[3] == 2.0f * (0.3f / 7.0f));
  }
  {
    // 4-bit, odd block 3 and n = 5: the second block starts mid-byte. Block 0 = {1, 0, -1}
    // -> {7, 0, -7 = 9}; block 1 = {0.5, -0.5} -> {7, -7 = 9}: nibbles 7 0 9 7 9 -> 07 79 09.
    auto c = make(spec_of(4, 3));
    const auto p = encode(*c, std::vector<float>{1.0f, 0.0f, -1.0f, 0.5f, -0.5f});
    REQUIRE(p.size() == body_off + 8 + 3);
    CHECK(p[body_off + 8] == std::byte{0x07});
    CHECK(p[body_off + 9] == std::byte{0x79});
    CHECK(p[body_off + 10] == std::byte{0x09});
  }
}

TEST_CASE("blockwise rejects tampered bodies with data_loss and leaves the output alone", "[codec][blockwise]") {
  for (unsigned bits : {8u, 4u}) {
    CAPTURE(bits);
    auto c = make(spec_of(bits, 4));
    const auto x = make_input(family::random, 9, 8);  // 3 blocks; 4-bit: 1 padding nibble
    const auto p = encode(*c, x);
    const std::size_t codes = body_off + 12;
    auto expect_rejected = [&](std::vector<std::byte> bad) {
      codec::seal_payload(bad);
      std::vector<float> out(9, 7.0f);
      CHECK(c->decode(bad, out).code() == status_code::data_loss);
      CHECK(c->decode_accumulate(bad, out, 2.0f).code() == status_code::data_loss);
      CHECK(out == std::vector<float>(9, 7.0f));
    };
    for (float v : {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY, -1.0f, -0.0f}) {
      CAPTURE(v);
      auto bad = p;
      store_le<float>(bad.data() + body_off + 8, v);  // last block's scale
      expect_rejected(bad);
    }
    if (bits == 8) {
      auto bad = p;
      bad[codes + 8] = std::byte{0x80};  // -128
      expect_rejected(bad);
    } else {
      auto lo = p;
      lo[codes + 1] = (lo[codes + 1] & std::byte{0xF0}) | std::byte{0x08};  // -8, low nibble
      expect_rejected(lo);
      auto hi = p;
      hi[codes + 2] = (hi[codes + 2] & std::byte{0x0F}) | std::byte{0x80};  // -8, high nibble
      expect_rejected(hi);
      auto pad = p;
      REQUIRE(pad.size() == codes + 5);
      pad[codes + 4] |= std::byte{0x10};
      expect_rejected(pad);
    }
  }
}

TEST_CASE("blockwise parameters: mismatch, invalid bytes, spec errors", "[codec][blockwise]") {
  const auto x = make_input(family::random, 100, 6);
  auto c8 = make(spec_of(8, 256));
  const auto p8 = encode(*c8, x);
  std::vector<float> out(100, 7.0f);
  CHECK(make(spec_of(4, 256))->decode(p8, out).code() == status_code::failed_precondition);
  CHECK(make(spec_of(8, 128))->decode(p8, out).code() == status_code::failed_precondition);
  CHECK(out == std::vector<float>(100, 7.0f));
  auto with_params = [&](std::uint8_t bits, std::uint32_t block) {
    auto bad = p8;
    bad[codec::payload_header_bytes] = std::byte{bits};
    store_le<std::uint32_t>(bad.data() + codec::payload_header_bytes + 1, block);
    codec::seal_payload(bad);
    return bad;
  };
  for (auto bad : {with_params(5, 256), with_params(0, 256), with_params(8, 0), with_params(8, 65537)}) {
    CHECK(codec::decode_any(bad, out).code() == status_code::data_loss);
    CHECK(c8->decode(bad, out).code() == status_code::data_loss);
  }
  for (const char* spec : {"blockwise:bits=6", "blockwise:block=0", "blockwise:block=65537", "blockwise:q=1"}) {
    CAPTURE(spec);
    auto r = codec::make_codec(spec);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == status_code::invalid_argument);
  }
  CHECK(make("blockwise:bits=4")->spec() == "blockwise:bits=4,block=256");
  CHECK_FALSE(c8->summable());
}
