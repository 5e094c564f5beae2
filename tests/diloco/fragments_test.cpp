// Streaming DiLoCo fragment assignment and sync offsets, against brute-force definitions.
#include "dtrain/diloco/fragments.h"

#include <catch2/catch.hpp>

#include <vector>

using namespace dtrain;
using namespace dtrain::diloco;

TEST_CASE("fragments: strided and contiguous assignment") {
  SECTION("known small cases") {
    auto s = assign_fragments(5, 2, fragment_layout::strided);
    REQUIRE(s.ok());
    CHECK(*s == std::vector<std::uint32_t>{0, 1, 0, 1, 0});
    auto c = assign_fragments(5, 2, fragment_layout::contiguous);
    REQUIRE(c.ok());
    CHECK(*c == std::vector<std::uint32_t>{0, 0, 0, 1, 1});
    auto one = assign_fragments(3, 1, fragment_layout::contiguous);
    REQUIRE(one.ok());
    CHECK(*one == std::vector<std::uint32_t>{0, 0, 0});
  }
  SECTION("every fragment non-empty, contiguous blocks differ by at most one tensor") {
    const std::size_t T = GENERATE(1u, 2u, 7u, 16u, 101u);
    const std::uint32_t P = GENERATE(1u, 2u, 3u, 7u);
    CAPTURE(T, P);
    if (P > T) {
      CHECK(assign_fragments(T, P, fragment_layout::strided).status().code() == status_code::invalid_argument);
      return;
    }
    for (auto layout : {fragment_layout::strided, fragment_layout::contiguous}) {
      auto a = assign_fragments(T, P, layout);
      REQUIRE(a.ok());
      std::vector<std::size_t> cnt(P, 0);
      for (std::size_t i = 0; i < T; ++i) {
        REQUIRE((*a)[i] < P);
        ++cnt[(*a)[i]];
        if (layout == fragment_layout::strided) CHECK((*a)[i] == i % P);
        if (layout == fragment_layout::contiguous && i > 0) CHECK((*a)[i] >= (*a)[i - 1]);  // blocks in order
      }
      std::size_t lo = T, hi = 0;
      for (auto c : cnt) {
        lo = std::min(lo, c);
        hi = std::max(hi, c);
      }
      CHECK(lo >= 1);
      CHECK(hi - lo <= 1);
    }
  }
  SECTION("zero fragments") {
    CHECK(assign_fragments(4, 0, fragment_layout::strided).status().code() == status_code::invalid_argument);
  }
}

TEST_CASE("fragments: staggered offsets spread the syncs over each window") {
  const std::uint32_t H = GENERATE(1u, 4u, 10u, 500u);
  const std::uint32_t P = GENERATE(1u, 2u, 4u, 5u);
  CAPTURE(H, P);
  for (std::uint32_t p = 0; p < P; ++p) {
    CHECK(sync_offset(p, P, H, false) == 0);
    CHECK(sync_offset(p, P, H, true) == (std::uint64_t{p} * H) / P);
    CHECK(sync_offset(p, P, H, true) < H);
  }
  // Each fragment syncs exactly once per window of H consecutive steps.
  for (std::uint32_t p = 0; p < P; ++p) {
    const std::uint32_t t = sync_offset(p, P, H, true);
    int n = 0;
    for (std::uint64_t s = 3 * H + 1; s <= 4 * H; ++s) n += syncs_at(s, t, H) ? 1 : 0;
    CHECK(n == 1);
  }
  // P = 1 syncs at H, 2H, ... like plain DiLoCo.
  CHECK(syncs_at(H, sync_offset(0, 1, H, true), H));
  CHECK(!syncs_at(0, 0, H));
  if (H > 1) CHECK(!syncs_at(H + 1, 0, H));
}
