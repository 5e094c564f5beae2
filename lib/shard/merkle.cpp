// The shard Merkle tree (definition in merkle.h and docs/shard.md): a level-by-level
// reduction for the root, the same walk recording siblings for proofs.
#include "dtrain/shard/merkle.h"

#include <string>

#include "dtrain/crypto/blake2b.h"

namespace dtrain::shard {
namespace {

constexpr std::byte leaf_tag{0x00};
constexpr std::byte node_tag{0x01};
constexpr std::byte empty_tag{0x02};

chunk_digest hash_leaf(const chunk_digest& d) noexcept {
  crypto::blake2b_256_state h;
  h.update(std::span(&leaf_tag, 1));
  h.update(d);
  return h.final();
}

chunk_digest hash_node(const chunk_digest& l, const chunk_digest& r) noexcept {
  crypto::blake2b_256_state h;
  h.update(std::span(&node_tag, 1));
  h.update(l);
  h.update(r);
  return h.final();
}

/// Replaces level[0, n) by the next level in place; returns its size.
std::size_t reduce(std::vector<chunk_digest>& level, std::size_t n) noexcept {
  std::size_t out = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2) level[out++] = hash_node(level[i], level[i + 1]);
  if (n % 2 == 1) level[out++] = level[n - 1];  // odd last node: promoted unchanged
  return out;
}

std::vector<chunk_digest> leaf_level(std::span<const chunk_digest> leaves) {
  std::vector<chunk_digest> level(leaves.size());
  for (std::size_t i = 0; i < leaves.size(); ++i) level[i] = hash_leaf(leaves[i]);
  return level;
}

}  // namespace

chunk_digest merkle_root(std::span<const chunk_digest> leaves) noexcept {
  if (leaves.empty()) return crypto::blake2b_256(std::span(&empty_tag, 1));
  std::vector<chunk_digest> level = leaf_level(leaves);
  std::size_t n = level.size();
  while (n > 1) n = reduce(level, n);
  return level[0];
}

result<merkle_proof> merkle_prove(std::span<const chunk_digest> leaves, std::uint64_t index) {
  if (index >= leaves.size())
    return out_of_range("merkle_prove: index " + std::to_string(index) + " >= leaf count " +
                        std::to_string(leaves.size()));
  merkle_proof proof;
  proof.index = index;
  proof.leaf_count = leaves.size();
  std::vector<chunk_digest> level = leaf_level(leaves);
  std::size_t n = level.size();
  std::size_t pos = static_cast<std::size_t>(index);
  while (n > 1) {
    const bool promoted = (n % 2 == 1) && pos == n - 1;
    if (!promoted) proof.siblings.push_back(level[pos ^ 1]);
    n = reduce(level, n);
    pos /= 2;
  }
  return proof;
}

bool merkle_verify(const chunk_digest& root, const chunk_digest& leaf, const merkle_proof& proof) noexcept {
  if (proof.leaf_count == 0 || proof.index >= proof.leaf_count) return false;
  chunk_digest cur = hash_leaf(leaf);
  std::uint64_t n = proof.leaf_count;
  std::uint64_t pos = proof.index;
  std::size_t used = 0;
  while (n > 1) {  // at most 64 levels, whatever leaf_count says
    const bool promoted = (n % 2 == 1) && pos == n - 1;
    if (!promoted) {
      if (used >= proof.siblings.size()) return false;
      const chunk_digest& sib = proof.siblings[used++];
      cur = (pos % 2 == 0) ? hash_node(cur, sib) : hash_node(sib, cur);
    }
    n = n / 2 + n % 2;
    pos /= 2;
  }
  // Roots are public: a plain comparison leaks nothing secret.
  return used == proof.siblings.size() && cur == root;
}

}  // namespace dtrain::shard
