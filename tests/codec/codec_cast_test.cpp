// Tests for codec/codec_cast.h: identity is exact, fp16/bf16 decode to the RNE cast,
// bytes are little-endian, and unaligned payloads decode the same.
#include "dtrain/codec/codec_cast.h"

#include <cstring>

#include "codec/codec_test_util.h"
#include "dtrain/codec/payload.h"
#include "dtrain/core/dtype.h"

using namespace dtrain;
using namespace dtrain::test;

TEST_CASE("cast codecs decode to the correctly rounded value", "[codec][cast]") {
  const std::size_t n = GENERATE(0u, 1u, 7u, 4096u, 4099u);
  for (family f : all_families) {
    CAPTURE(n, family_name(f));
    const auto x = make_input(f, n, 17);
    auto id = make("identity");
    auto h = make("fp16");
    auto b = make("bf16");
    REQUIRE(id->summable());
    REQUIRE(h->max_encoded_bytes(n) == codec::payload_header_bytes + 2 * n);
    const auto yi = decode(*id, encode(*id, x), n);
    const auto yh = decode(*h, encode(*h, x), n);
    const auto yb = decode(*b, encode(*b, x), n);
    for (std::size_t i = 0; i < n; ++i) {
      REQUIRE(yi[i] == x[i]);
      REQUIRE(yh[i] == f16_bits_to_f32(f32_to_f16_bits(x[i])));
      REQUIRE(yb[i] == bf16_bits_to_f32(f32_to_bf16_bits(x[i])));
      // Documented bounds: half an ulp relative (2^-11 fp16 normals, 2^-8 bf16).
      REQUIRE(std::fabs(yb[i] - x[i]) <= std::fabs(x[i]) * 0x1p-8f);
    }
  }
}

TEST_CASE("fp16 body is little-endian half bits, decodable from an unaligned buffer", "[codec][cast]") {
  auto h = make("fp16");
  const std::vector<float> x = {1.0f, -2.0f, 0.5f};
  const auto p = encode(*h, x);
  const std::byte* body = p.data() + codec::payload_header_bytes;
  CHECK(load_le<std::uint16_t>(body) == 0x3c00);
  CHECK(load_le<std::uint16_t>(body + 2) == 0xc000);
  CHECK(load_le<std::uint16_t>(body + 4) == 0x3800);
  std::vector<std::byte> shifted(p.size() + 1);
  std::memcpy(shifted.data() + 1, p.data(), p.size());
  CHECK(decode(*h, std::span(shifted).subspan(1), 3) == x);
  // Encoding into an odd address gives the same bytes.
  std::vector<std::byte> out(p.size() + 1);
  auto r = h->encode(x, std::span(out).subspan(1));
  REQUIRE(r.ok());
  CHECK(std::memcmp(out.data() + 1, p.data(), p.size()) == 0);
}
