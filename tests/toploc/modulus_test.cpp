// Tests for toploc/modulus.h: the largest injective modulus, checked against brute force.
#include "dtrain/toploc/modulus.h"

#include <catch2/catch.hpp>

#include <set>
#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/toploc/field.h"

using namespace dtrain::toploc;

namespace {
bool injective(const std::vector<std::uint32_t>& idx, std::uint32_t m) {
  std::set<std::uint32_t> seen;
  for (auto v : idx)
    if (!seen.insert(v % m).second) return false;
  return true;
}
}  // namespace

TEST_CASE("indices below p keep the modulus p", "[toploc][modulus]") {
  auto m = injective_modulus(std::vector<std::uint32_t>{0, 5, 65496, 100});
  REQUIRE(m.ok());
  CHECK(*m == prime);
}

TEST_CASE("a collision under p lowers the modulus to the largest injective one", "[toploc][modulus]") {
  // The first interpolation vector: 65502 = 5 (mod 65497), so m = 65496.
  auto m = injective_modulus(std::vector<std::uint32_t>{5, 65502, 100});
  REQUIRE(m.ok());
  CHECK(*m == 65496);

  dtrain::counter_rng rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    std::set<std::uint32_t> s;
    const std::uint32_t span = trial < 25 ? 163840 : 4000000;
    while (s.size() < 128) s.insert(rng.next_below(span));
    std::vector<std::uint32_t> idx(s.begin(), s.end());
    auto got = injective_modulus(idx);
    REQUIRE(got.ok());
    CAPTURE(trial, *got);
    CHECK(injective(idx, *got));
    for (std::uint32_t bigger = *got + 1; bigger <= prime; ++bigger) REQUIRE_FALSE(injective(idx, bigger));
  }
}

TEST_CASE("injective_modulus rejects duplicates and empty input", "[toploc][modulus]") {
  CHECK(injective_modulus(std::vector<std::uint32_t>{3, 3}).status().code() == dtrain::status_code::invalid_argument);
  CHECK(injective_modulus(std::vector<std::uint32_t>{70000, 1, 70000}).status().code() ==
        dtrain::status_code::invalid_argument);
  CHECK(injective_modulus({}).status().code() == dtrain::status_code::invalid_argument);
}
