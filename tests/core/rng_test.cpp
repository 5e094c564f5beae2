// Tests for core/rng.h: Philox4x32-10 known-answer vectors (Random123) and stream
// properties.
#include "dtrain/core/rng.h"

#include <vector>

#include <catch2/catch.hpp>

using namespace dtrain;

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors", "[core][rng]") {
  using A4 = std::array<std::uint32_t, 4>;
  using A2 = std::array<std::uint32_t, 2>;
  CHECK(philox4x32_10(A4{0, 0, 0, 0}, A2{0, 0}) == A4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  CHECK(philox4x32_10(A4{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, A2{0xffffffffu, 0xffffffffu}) ==
        A4{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  CHECK(philox4x32_10(A4{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, A2{0xa4093822u, 0x299f31d0u}) ==
        A4{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("counter_rng: random access equals sequential use", "[core][rng]") {
  counter_rng a(123, 7);
  std::vector<std::uint32_t> seq(100);
  for (auto& v : seq) v = a.next_u32();
  const counter_rng b(123, 7);
  for (std::size_t i = 0; i < seq.size(); ++i) REQUIRE(b.at(i) == seq[i]);
  CHECK(counter_rng(123, 8).at(0) != seq[0]);  // streams differ
  CHECK(counter_rng(124, 7).at(0) != seq[0]);  // seeds differ
}

TEST_CASE("counter_rng: uniform and bounded draws stay in range", "[core][rng]") {
  counter_rng r(1);
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    const float u = r.next_uniform();
    REQUIRE(u >= 0.0f);
    REQUIRE(u < 1.0f);
    sum += u;
  }
  CHECK(sum / 100000 == Approx(0.5).margin(0.01));
  std::vector<int> hist(7, 0);
  for (int i = 0; i < 70000; ++i) {
    const auto v = r.next_below(7);
    REQUIRE(v < 7);
    ++hist[v];
  }
  for (int h : hist) CHECK(h == Approx(10000).margin(500));
}
