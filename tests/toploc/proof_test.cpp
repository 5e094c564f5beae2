// Tests for toploc/proof.h: byte layout, base64, the null proof and every malformed input
// the reference crashes on or lets through (../shared/reference/toploc_shardcast.md §1.10).
#include "dtrain/toploc/proof.h"

#include <catch2/catch.hpp>

#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/toploc/field.h"
#include "toploc/toploc_test_util.h"

using namespace dtrain::toploc;
using dtrain::status_code;

namespace {
proof random_proof(std::size_t k, std::uint64_t seed) {
  dtrain::counter_rng rng(seed);
  proof p{static_cast<std::uint32_t>(k + rng.next_below(prime - static_cast<std::uint32_t>(k) + 1)), {}};
  for (std::size_t i = 0; i < k; ++i) p.coeffs.push_back(static_cast<std::uint16_t>(rng.next_below(prime)));
  return p;
}
}  // namespace

TEST_CASE("proof bytes: u16 big-endian modulus, then coefficients lowest first", "[toploc][proof]") {
  const proof p{65497, {1, 0x0203, 65496}};
  const auto bytes = to_bytes(p);
  CHECK(test::to_hex(bytes) == "ffd900010203ffd8");
  CHECK(bytes.size() == proof_size(3));
  CHECK(proof_size(128) == 258);
  auto back = parse_proof(bytes, 3);
  REQUIRE(back.ok());
  CHECK(*back == p);
}

TEST_CASE("proofs round-trip through bytes and base64", "[toploc][proof]") {
  const std::size_t k = GENERATE(values<std::size_t>({1, 4, 128, 300}));
  CAPTURE(k);
  std::vector<proof> ps;
  for (int i = 0; i < 5; ++i) ps.push_back(random_proof(k, k * 10 + static_cast<std::uint64_t>(i)));
  const auto bytes = to_bytes(ps);
  REQUIRE(bytes.size() == 5 * proof_size(k));
  auto back = parse_proofs(bytes, k, 5);
  REQUIRE(back.ok());
  CHECK(*back == ps);
  for (const proof& p : ps) {
    auto b = proof_from_base64(to_base64(p), k);
    REQUIRE(b.ok());
    CHECK(*b == p);
  }
}

TEST_CASE("the null proof is rejected with an error, not a crash", "[toploc][proof][vectors]") {
  const auto& v = test::vectors()["null_proof"];
  const auto k = static_cast<std::size_t>(v["k"].num);
  const auto bytes = test::from_hex(v["bytes_hex"].str);
  CHECK(to_bytes(null_proof(k)) == bytes);
  auto p = parse_proof(bytes, k);
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().code() == status_code::data_loss);
  CHECK(p.status().message().find("modulus 0") != std::string::npos);
}

TEST_CASE("malformed proofs get clear errors", "[toploc][proof]") {
  const std::size_t k = 4;
  const auto good = to_bytes(proof{65497, {1, 2, 3, 4}});
  REQUIRE(parse_proof(good, k).ok());

  SECTION("a wrong length, including the reference's length-2 crash") {
    for (std::size_t len : {0, 1, 2, 9, 11, 20}) {
      CAPTURE(len);
      std::vector<std::byte> b(len, std::byte{0x11});
      auto p = parse_proof(b, k);
      REQUIRE_FALSE(p.ok());
      CHECK(p.status().code() == status_code::data_loss);
    }
  }
  SECTION("modulus below k or above p") {
    auto b = good;
    b[0] = std::byte{0};
    b[1] = std::byte{3};
    CHECK(parse_proof(b, k).status().code() == status_code::data_loss);
    b[0] = std::byte{0xff};
    b[1] = std::byte{0xda};
    CHECK(parse_proof(b, k).status().code() == status_code::data_loss);
    b[1] = std::byte{4};
    b[0] = std::byte{0};
    CHECK(parse_proof(b, k).ok());  // m = k is allowed
  }
  SECTION("a coefficient >= p names its position") {
    auto b = good;
    b[6] = std::byte{0xff};
    b[7] = std::byte{0xd9};
    auto p = parse_proof(b, k);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().code() == status_code::data_loss);
    CHECK(p.status().message().find("coefficient 2") != std::string::npos);
  }
  SECTION("wrong proof counts and odd trailing bytes") {
    std::vector<std::byte> two = good;
    two.insert(two.end(), good.begin(), good.end());
    CHECK(parse_proofs(two, k, 2).ok());
    CHECK(parse_proofs(two, k, 3).status().code() == status_code::data_loss);
    CHECK(parse_proofs(two, k, 1).status().code() == status_code::data_loss);
    auto odd = two;
    odd.push_back(std::byte{0});
    auto r = parse_proofs(odd, k, 2);
    CHECK(r.status().code() == status_code::data_loss);
    CHECK(r.status().message().find("trailing") != std::string::npos);
    auto bad_second = two;
    bad_second[10] = std::byte{0};
    bad_second[11] = std::byte{0};
    auto r2 = parse_proofs(bad_second, k, 2);
    CHECK(r2.status().code() == status_code::data_loss);
    CHECK(r2.status().message().find("proof 1") != std::string::npos);
  }
  SECTION("bad base64 and bad k") {
    CHECK(proof_from_base64("not base64!", k).status().code() == status_code::data_loss);
    CHECK(proof_from_base64("/9kAAQACAAMABA", k).status().code() == status_code::data_loss);  // padding missing
    CHECK(proof_from_base64("", k).status().code() == status_code::data_loss);
    // libsodium 1.0.18 alone would read the byte 0x8d as '/' (found by the fuzzer).
    CHECK(proof_from_base64("\x8d" "9lN/ILTnu50RZd91TVL8QVy", 8).status().code() == status_code::data_loss);
    CHECK(proof_from_base64("/9lN/ILTnu50RZd91TVL8QVy", 8).ok());
    CHECK(parse_proof(good, 0).status().code() == status_code::invalid_argument);
    CHECK(parse_proofs(good, 70000, 1).status().code() == status_code::invalid_argument);
  }
}
