// Tests for core/bitpack.h and core/bytes.h: round trips at every width, the exact bit
// layout, zero padding, and bounds-checked cursors.
#include "dtrain/core/bitpack.h"

#include <vector>

#include <catch2/catch.hpp>

#include "dtrain/core/bytes.h"
#include "dtrain/core/rng.h"

using namespace dtrain;

TEST_CASE("pack_bits/unpack_bits round-trip for every width and length", "[core][bitpack]") {
  const unsigned bits = GENERATE(range(1u, 33u));
  const std::size_t n = GENERATE(0u, 1u, 2u, 3u, 7u, 8u, 9u, 31u, 64u, 1001u);
  CAPTURE(bits, n);
  counter_rng rng(bits * 1000 + n);
  const std::uint64_t mask = (std::uint64_t{1} << bits) - 1;
  std::vector<std::uint32_t> v(n);
  for (auto& x : v) x = static_cast<std::uint32_t>(rng.next_u32() & mask);
  std::vector<std::byte> buf(packed_bytes(n, bits) + 1, std::byte{0xAB});
  pack_bits<std::uint32_t>(v, bits, buf);
  REQUIRE(buf.back() == std::byte{0xAB});  // wrote exactly packed_bytes
  REQUIRE(padding_is_zero(buf, n, bits));
  std::vector<std::uint32_t> back(n);
  unpack_bits<std::uint32_t>(buf, bits, back);
  REQUIRE(back == v);
  if (bits <= 8) {
    std::vector<std::uint8_t> v8(v.begin(), v.end()), b8(n);
    std::vector<std::byte> buf8(packed_bytes(n, bits));
    pack_bits<std::uint8_t>(v8, bits, buf8);
    REQUIRE(std::equal(buf8.begin(), buf8.end(), buf.begin()));  // same layout for u8 and u32
    unpack_bits<std::uint8_t>(buf8, bits, b8);
    REQUIRE(b8 == v8);
  }
}

TEST_CASE("bit layout is little-endian, LSB first", "[core][bitpack]") {
  // 12-bit values 0xABC, 0x123 -> bytes BC 3A 12.
  std::vector<std::uint16_t> v = {0xABC, 0x123};
  std::vector<std::byte> out(3);
  pack_bits<std::uint16_t>(v, 12, out);
  CHECK(out[0] == std::byte{0xBC});
  CHECK(out[1] == std::byte{0x3A});
  CHECK(out[2] == std::byte{0x12});
  // 3-bit values 1..5 -> 001 010 011 100 101 -> bits 0..14.
  std::vector<std::uint8_t> t = {1, 2, 3, 4, 5};
  std::vector<std::byte> o2(2);
  pack_bits<std::uint8_t>(t, 3, o2);
  CHECK(static_cast<unsigned>(o2[0]) == (1u | 2u << 3 | (3u & 3u) << 6));
  CHECK(static_cast<unsigned>(o2[1]) == ((3u >> 2) | 4u << 1 | 5u << 4));
  CHECK(bits_for(4096) == 12);
  CHECK(bits_for(4097) == 13);
  CHECK(bits_for(1) == 0);
  CHECK(bits_for(2) == 1);
  CHECK(bits_for(64) == 6);
}

TEST_CASE("byte_reader and byte_writer never overrun", "[core][bytes]") {
  std::vector<std::byte> buf(10);
  byte_writer w(buf);
  w.put<std::uint32_t>(0x11223344u);
  w.put<float>(1.5f);
  CHECK(w.ok());
  w.put<std::uint32_t>(7);  // needs 4, has 2
  CHECK_FALSE(w.ok());
  CHECK(w.size() == 8);
  CHECK(buf[0] == std::byte{0x44});
  byte_reader r(std::span<const std::byte>(buf).first(9));
  CHECK(r.get<std::uint32_t>() == 0x11223344u);
  CHECK(r.get<float>() == 1.5f);
  CHECK(r.ok());
  CHECK(r.get<std::uint16_t>() == 0);  // only one byte left
  CHECK_FALSE(r.ok());
  CHECK(r.take(1).empty());
}
