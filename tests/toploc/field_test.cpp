// Tests for toploc/field.h: reduction, arithmetic and the inverse table of GF(65497).
#include "dtrain/toploc/field.h"

#include <catch2/catch.hpp>

#include <cstdint>

#include "dtrain/core/rng.h"

using namespace dtrain::toploc;

TEST_CASE("reduce agrees with % on edge values and random u32", "[toploc][field]") {
  for (std::uint32_t x : {0u, 1u, 65496u, 65497u, 65498u, 65535u, 65536u, 65536u * 39u, 0xfffffffeu, 0xffffffffu,
                          65496u * 65496u, 65497u * 65497u - 1u}) {
    CAPTURE(x);
    CHECK(gf::reduce(x) == x % prime);
  }
  dtrain::counter_rng rng(7);
  for (int i = 0; i < 200000; ++i) {
    const std::uint32_t x = rng.next_u32();
    REQUIRE(gf::reduce(x) == x % prime);
  }
}

TEST_CASE("add, sub, mul, pow match 64-bit arithmetic", "[toploc][field]") {
  dtrain::counter_rng rng(11);
  for (int i = 0; i < 100000; ++i) {
    const std::uint32_t a = rng.next_below(prime), b = rng.next_below(prime);
    REQUIRE(gf::add(a, b) == (a + b) % prime);
    REQUIRE(gf::sub(a, b) == (a + prime - b) % prime);
    REQUIRE(gf::mul(a, b) == static_cast<std::uint32_t>(std::uint64_t{a} * b % prime));
  }
  CHECK(gf::pow(3, 0) == 1);
  CHECK(gf::pow(0, 0) == 1);
  CHECK(gf::pow(2, 16) == 65536u % prime);
  CHECK(gf::pow(12345, prime - 1) == 1);  // Fermat
}

TEST_CASE("the inverse table holds every inverse", "[toploc][field]") {
  const auto table = inverse_table();
  REQUIRE(table.size() == prime);
  CHECK(table[0] == 0);
  for (std::uint32_t a = 1; a < prime; ++a) {
    if (gf::mul(a, table[a]) != 1) FAIL("inverse of " << a << " is wrong: " << table[a]);
  }
  CHECK(gf::inv(2) == table[2]);
  CHECK(gf::inv(65496) == 65496);  // -1 is its own inverse
}
