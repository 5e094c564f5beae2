// dtrain/shard/chunk_hash.h: the per-chunk hash of the shard layer, BLAKE2b-256
// (adversarial settings) or XXH3-128 (trusted settings), one-shot and streaming.
// Definitions and byte layout: docs/shard.md "Chunk hashing".
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <variant>

#include "dtrain/core/hash.h"
#include "dtrain/crypto/blake2b.h"

namespace dtrain::shard {

/// Which function hashes a chunk. The numeric values are written into manifests: frozen.
enum class hash_algo : std::uint8_t {
  blake2b_256 = 1,  ///< BLAKE2b, 32-byte output, unkeyed (RFC 7693; libsodium). Collision resistant.
  xxh3_128 = 2,     ///< XXH3-128, seed 0 (libxxhash). Fast; catches accidents, not attackers.
};

/// A chunk digest: always 32 bytes. blake2b_256 fills all 32; xxh3_128 writes its
/// 16-byte canonical (big-endian, XXH128_canonicalFromHash) form into bytes 0..15 and
/// leaves bytes 16..31 zero.
using chunk_digest = std::array<std::byte, 32>;

/// Stable lower-case name ("blake2b-256", "xxh3-128"); "unknown" for a value outside the enum.
std::string_view hash_algo_name(hash_algo a) noexcept;

/// True for the values the enum names (use it on a byte read from a manifest).
bool is_known_hash_algo(std::uint8_t v) noexcept;

/// The digest of `data` under `a`. Deterministic on every platform; any length, including
/// empty. @pre `a` is one of the enum's values (asserted).
chunk_digest hash_chunk(hash_algo a, std::span<const std::byte> data) noexcept;

/// hash_chunk of many chunks at once: out[i] = hash_chunk(a, chunks[i]), bit for bit.
/// With BLAKE2b-256 on an AVX2 core, four chunks are hashed together (one state per
/// vector lane; crypto/blake2b_many.h), about 3x the throughput of one at a time; chunks
/// of equal length are fastest. @pre out.size() == chunks.size() (asserted).
void hash_chunks(hash_algo a, std::span<const std::span<const std::byte>> chunks, std::span<chunk_digest> out) noexcept;

/// How many chunks hash_chunks hashes together on this machine under `a` (4 for
/// BLAKE2b-256 on an AVX2 core, else 1): a caller that can wait for a few chunks before
/// verifying them gains most from batches of this size.
std::size_t hash_chunks_batch(hash_algo a) noexcept;

/// The streaming form: update() any number of times, then final(). However the input is
/// split, final() equals hash_chunk() of the concatenation. Movable, not copyable; one
/// object is not safe to use from several threads at once.
class chunk_hasher {
 public:
  /// Ready to hash. @pre `a` is one of the enum's values (asserted).
  explicit chunk_hasher(hash_algo a);

  /// Appends `data` to the message.
  void update(std::span<const std::byte> data) noexcept;
  /// The digest of everything passed to update() since construction or the last
  /// reset()/final(); the hasher then starts over, ready for the next chunk.
  chunk_digest final() noexcept;
  /// Forgets everything hashed so far.
  void reset() noexcept;
  hash_algo algo() const noexcept { return algo_; }

 private:
  hash_algo algo_;
  std::variant<crypto::blake2b_256_state, xxh3_128_stream> state_;
};

}  // namespace dtrain::shard
