// Tests for core/hash.h: known XXH3 values, and one-shot == streaming (whole, chunked,
// byte by byte), as xxHash's own sanity test does.
#include "dtrain/core/hash.h"

#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

using namespace dtrain;

namespace {
std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }
}  // namespace

TEST_CASE("xxh3 known answers", "[core][hash]") {
  // XXH3-64 of the empty input with seed 0 is 0x2D06800538D394C2 (xxHash spec).
  CHECK(xxh3_64({}) == 0x2D06800538D394C2ull);
  // XXH3-128 of the empty input: high 0x99AA06D3014798D8, low 0x6001C324468D497F.
  const hash128 e = xxh3_128({});
  CHECK(e.high == 0x99AA06D3014798D8ull);
  CHECK(e.low == 0x6001C324468D497Full);
  CHECK(e.hex() == "99aa06d3014798d86001c324468d497f");
  CHECK(xxh3_64(bytes_of("a")) != xxh3_64(bytes_of("b")));
  CHECK(xxh3_64(bytes_of("a"), 1) != xxh3_64(bytes_of("a"), 2));
}

TEST_CASE("xxh3 streaming equals one-shot", "[core][hash]") {
  const std::size_t n = GENERATE(0u, 1u, 3u, 240u, 241u, 1000u, 70000u);
  CAPTURE(n);
  std::vector<std::byte> data(n);
  for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<std::byte>((i * 131 + 7) & 0xff);
  const std::uint64_t seed = 99;
  const std::uint64_t h64 = xxh3_64(data, seed);
  const hash128 h128 = xxh3_128(data, seed);

  xxh3_64_stream s64(seed);
  xxh3_128_stream s128(seed);
  s64.update(data);
  s128.update(data);
  CHECK(s64.digest() == h64);
  CHECK(s128.digest() == h128);

  s64.reset(seed);
  s128.reset(seed);
  for (std::size_t i = 0; i < n; i += 97) {
    auto part = std::span<const std::byte>(data).subspan(i, std::min<std::size_t>(97, n - i));
    s64.update(part);
    s128.update(part);
  }
  CHECK(s64.digest() == h64);
  CHECK(s128.digest() == h128);

  s64.reset(seed);
  for (std::size_t i = 0; i < n; ++i) s64.update(std::span<const std::byte>(data).subspan(i, 1));
  CHECK(s64.digest() == h64);
}
