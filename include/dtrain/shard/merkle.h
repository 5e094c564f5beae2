// dtrain/shard/merkle.h: the binary Merkle tree over chunk digests (BLAKE2b-256,
// domain-separated leaves and nodes, odd node promoted), its root and inclusion proofs.
// Exact definition: docs/shard.md "Merkle tree".
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/shard/chunk_hash.h"

namespace dtrain::shard {

/// The root over `leaves` (chunk digests, in chunk order), with H = BLAKE2b-256:
///   leaf node   = H(0x00 ‖ digest)                       (33 bytes hashed)
///   inner node  = H(0x01 ‖ left ‖ right)                 (65 bytes hashed)
///   each level pairs nodes (0,1), (2,3), ...; an odd last node moves up unchanged;
///   the root of one leaf is its leaf node; the root of no leaves is H(0x02).
/// Deterministic. Allocates a copy of one level (32·n bytes); terminates on out-of-memory.
chunk_digest merkle_root(std::span<const chunk_digest> leaves) noexcept;

/// An inclusion proof: the siblings met on the way from leaf `index` to the root, bottom
/// up, skipping the levels where the node was promoted (it had no sibling).
struct merkle_proof {
  std::uint64_t index = 0;
  std::uint64_t leaf_count = 0;
  std::vector<chunk_digest> siblings;
};

/// The proof for leaf `index` of `leaves`. Errors: out_of_range when index >= leaves.size().
result<merkle_proof> merkle_prove(std::span<const chunk_digest> leaves, std::uint64_t index);

/// True when `leaf` (a chunk digest, not yet leaf-hashed) sits at proof.index of a tree of
/// proof.leaf_count leaves whose root is `root`. False for any malformed proof (index out
/// of range, zero leaves, too few or too many siblings). Never reads out of bounds.
/// The root does not commit to the leaf count (e.g. 33 and 34 leaves share leaf 0's path
/// shape), so proof.leaf_count must come from a trusted source (the signed manifest), not
/// from whoever sent the proof.
bool merkle_verify(const chunk_digest& root, const chunk_digest& leaf, const merkle_proof& proof) noexcept;

}  // namespace dtrain::shard
