// Ed25519 identities: RFC 8032 known answers, determinism, tamper rejection.
#include "dtrain/crypto/identity.h"
#include "common/hex.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace dtrain;
using namespace dtrain::crypto;

using dtrain::test::bytes_of;
using dtrain::test::from_hex;
using dtrain::test::to_hex;

namespace {
}  // namespace

TEST_CASE("identity: RFC 8032 Ed25519 test vectors 1 and 2") {
  struct vec { const char* seed; const char* pub; const char* msg; const char* sig; };
  // RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72).
  const vec v = GENERATE(
      vec{"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
          "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
          "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
      vec{"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
          "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
          "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"});
  CAPTURE(v.seed);
  auto id = identity::from_seed(from_hex(v.seed));
  REQUIRE(id.ok());
  CHECK(id->id().hex() == v.pub);
  CHECK(id->id().short_hex() == std::string(v.pub).substr(0, 8));
  const auto msg = from_hex(v.msg);
  const auto sig = id->sign(msg);
  CHECK(to_hex(sig) == v.sig);
  CHECK(verify(id->id(), msg, sig));
}

TEST_CASE("identity: tampering with message, signature or key is rejected") {
  auto a = identity::generate();
  auto b = identity::generate();
  REQUIRE(a.id() != b.id());
  std::vector<std::byte> msg(100);
  for (std::size_t i = 0; i < msg.size(); ++i) msg[i] = static_cast<std::byte>(i * 7);
  const auto sig = a.sign(msg);
  REQUIRE(verify(a.id(), msg, sig));
  CHECK_FALSE(verify(b.id(), msg, sig));
  for (std::size_t i = 0; i < msg.size(); i += 9) {
    auto m2 = msg;
    m2[i] ^= std::byte{1};
    CHECK_FALSE(verify(a.id(), m2, sig));
  }
  for (std::size_t i = 0; i < sig.size(); ++i) {
    auto s2 = sig;
    s2[i] ^= std::byte{0x80};
    CAPTURE(i);
    CHECK_FALSE(verify(a.id(), msg, s2));
  }
  CHECK_FALSE(verify(a.id(), std::span(msg).first(99), sig));
  peer_id zero{};
  CHECK_FALSE(verify(zero, msg, sig));  // small-order key: rejected, no crash
}

TEST_CASE("identity: from_seed is deterministic, copies sign alike, bad seeds are rejected") {
  std::vector<std::byte> seed(32, std::byte{42});
  auto a = identity::from_seed(seed);
  auto b = identity::from_seed(seed);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->id() == b->id());
  const std::vector<std::byte> msg{std::byte{1}, std::byte{2}};
  CHECK(a->sign(msg) == b->sign(msg));
  identity c = *a;
  CHECK(c.sign(msg) == a->sign(msg));
  CHECK(identity::from_seed(std::span(seed).first(31)).status().code() == status_code::invalid_argument);
  std::vector<std::byte> long_seed(33);
  CHECK(identity::from_seed(long_seed).status().code() == status_code::invalid_argument);
  CHECK(identity::generate().id() != identity::generate().id());
}
