// Merkle tree: roots frozen from an independent Python (hashlib) computation, every proof
// verifies, and tampered leaves, siblings, indices and counts fail.
#include "dtrain/shard/merkle.h"

#include <catch2/catch.hpp>

#include <limits>
#include <vector>

#include "common/hex.h"
#include "dtrain/crypto/blake2b.h"

using namespace dtrain::shard;
using dtrain::test::to_hex;

namespace {
// Leaf digest i = BLAKE2b-256 of the single byte i.
std::vector<chunk_digest> leaves(std::size_t n) {
  std::vector<chunk_digest> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto b = static_cast<std::byte>(i);
    v[i] = dtrain::crypto::blake2b_256(std::span(&b, 1));
  }
  return v;
}
}  // namespace

TEST_CASE("merkle_root: frozen roots") {
  // python3, with b = lambda d: hashlib.blake2b(d, digest_size=32).digest():
  //   leaves = [b(bytes([i])) for i in range(n)]; level = [b(b"\x00" + d) for d in leaves]
  //   while len(level) > 1: pair (0,1), (2,3)... as b(b"\x01" + l + r), odd last kept
  //   n == 0: b(b"\x02")
  const std::pair<std::size_t, const char*> expected[] = {
      {0, "bb30a42c1e62f0afda5f0a4e8a562f7a13a24cea00ee81917b86b89e801314aa"},
      {1, "3946e42970577c9173a8f4d152fd19978ce2dd8ebe9ae841b0ce809661d3aa0c"},
      {2, "b8bc17005fd60e103d27fb7b417ed7601d74f2a887800356cb2c986f8bbf9e3b"},
      {3, "e13696916a40519dfef0ed54b55992e01bf1993215ba50ac94c75be929ebbeb8"},
      {5, "dc31f41937b6ebc00567efa88bbecb2f66124988b2643f0eee68098092e7e320"},
      {8, "fc1e91df617b2bf14a4b88002a2aa89cf92dae9eec2913e867c9cc096b0fa177"},
      {13, "702a516de99b101d11995078993f5b1a118bd7b8955a671fa34755cab965b902"},
  };
  for (const auto& [n, hex] : expected) {
    CAPTURE(n);
    CHECK(to_hex(merkle_root(leaves(n))) == hex);
  }
}

TEST_CASE("merkle_root: order and content matter") {
  auto l = leaves(5);
  const auto root = merkle_root(l);
  std::swap(l[1], l[2]);
  CHECK(merkle_root(l) != root);
  // A leaf is hashed with its tag: the root of one leaf is not the leaf digest itself.
  const auto one = leaves(1);
  CHECK(merkle_root(one) != one[0]);
}

TEST_CASE("merkle_prove / merkle_verify: every proof verifies, tampering fails") {
  const std::size_t n = GENERATE(values<std::size_t>({1, 2, 3, 5, 8, 13, 33}));
  CAPTURE(n);
  const auto l = leaves(n);
  const auto root = merkle_root(l);
  for (std::size_t i = 0; i < n; ++i) {
    CAPTURE(i);
    auto p = merkle_prove(l, i);
    REQUIRE(p.ok());
    CHECK(p->index == i);
    CHECK(p->leaf_count == n);
    CHECK(merkle_verify(root, l[i], *p));

    auto bad_leaf = l[i];
    bad_leaf[0] ^= std::byte{1};
    CHECK_FALSE(merkle_verify(root, bad_leaf, *p));

    auto bad_root = root;
    bad_root[31] ^= std::byte{0x80};
    CHECK_FALSE(merkle_verify(bad_root, l[i], *p));

    for (std::size_t s = 0; s < p->siblings.size(); ++s) {
      auto q = *p;
      q.siblings[s][7] ^= std::byte{4};
      CHECK_FALSE(merkle_verify(root, l[i], q));
    }
    if (n > 1) {
      auto q = *p;
      q.index = (i + 1) % n;  // the right leaf under the wrong index
      CHECK_FALSE(merkle_verify(root, l[i], q));
      auto extra = *p;
      extra.siblings.push_back(root);
      CHECK_FALSE(merkle_verify(root, l[i], extra));
      auto fewer = *p;
      fewer.siblings.pop_back();
      CHECK_FALSE(merkle_verify(root, l[i], fewer));
    }
    auto wrong_count = *p;
    wrong_count.leaf_count = 2 * n;  // one more level: the sibling list is one short
    CHECK_FALSE(merkle_verify(root, l[i], wrong_count));
  }
}

TEST_CASE("merkle_verify: the root does not commit to the leaf count") {
  // 33 and 34 leaves give the same path shape for leaf 0 (levels 33 -> 17 and 34 -> 17 both
  // pair leaf 0 with leaf 1): a proof checks against a count the caller trusts, i.e. the
  // one in the signed manifest, never one taken from the proof's sender (docs/shard.md).
  const auto l = leaves(33);
  auto p = merkle_prove(l, 0);
  REQUIRE(p.ok());
  auto q = *p;
  q.leaf_count = 34;
  CHECK(merkle_verify(merkle_root(l), l[0], q));
}

TEST_CASE("merkle_prove / merkle_verify: malformed input") {
  const auto l = leaves(4);
  const auto root = merkle_root(l);
  auto p = merkle_prove(l, 4);
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().code() == dtrain::status_code::out_of_range);
  CHECK_FALSE(merkle_prove({}, 0).ok());

  merkle_proof zero{0, 0, {}};
  CHECK_FALSE(merkle_verify(root, l[0], zero));
  merkle_proof past{4, 4, {l[0], l[1]}};
  CHECK_FALSE(merkle_verify(root, l[0], past));
  // A huge leaf count with no siblings terminates and fails.
  merkle_proof huge{0, std::numeric_limits<std::uint64_t>::max(), {}};
  CHECK_FALSE(merkle_verify(root, l[0], huge));
  merkle_proof huge_last{std::numeric_limits<std::uint64_t>::max() - 1, std::numeric_limits<std::uint64_t>::max(), {}};
  CHECK_FALSE(merkle_verify(root, l[0], huge_last));
  // A single-leaf tree: the proof is empty.
  const auto one = leaves(1);
  auto p1 = merkle_prove(one, 0);
  REQUIRE(p1.ok());
  CHECK(p1->siblings.empty());
  CHECK(merkle_verify(merkle_root(one), one[0], *p1));
}
