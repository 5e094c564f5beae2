// Chunk hashing: BLAKE2b-256 via dtrain::crypto (libsodium), XXH3-128 via dtrain core
// (libxxhash) in its canonical big-endian form, zero-padded to 32 bytes.
#include "dtrain/shard/chunk_hash.h"

#include <cstring>
#include <type_traits>

#include "dtrain/core/assert.h"
#include "dtrain/crypto/blake2b_many.h"

namespace dtrain::shard {
namespace {

chunk_digest from_xxh3(const hash128& h) noexcept {
  chunk_digest d{};
  const auto c = h.canonical();
  std::memcpy(d.data(), c.data(), c.size());
  return d;
}

}  // namespace

std::string_view hash_algo_name(hash_algo a) noexcept {
  switch (a) {
    case hash_algo::blake2b_256: return "blake2b-256";
    case hash_algo::xxh3_128: return "xxh3-128";
  }
  return "unknown";
}

bool is_known_hash_algo(std::uint8_t v) noexcept {
  return v == static_cast<std::uint8_t>(hash_algo::blake2b_256) || v == static_cast<std::uint8_t>(hash_algo::xxh3_128);
}

chunk_digest hash_chunk(hash_algo a, std::span<const std::byte> data) noexcept {
  DTRAIN_ASSERT(is_known_hash_algo(static_cast<std::uint8_t>(a)) && "hash_chunk: unknown hash_algo");
  if (a == hash_algo::xxh3_128) return from_xxh3(xxh3_128(data));
  return crypto::blake2b_256(data);
}

void hash_chunks(hash_algo a, std::span<const std::span<const std::byte>> chunks, std::span<chunk_digest> out) noexcept {
  DTRAIN_ASSERT(is_known_hash_algo(static_cast<std::uint8_t>(a)) && "hash_chunks: unknown hash_algo");
  DTRAIN_ASSERT(out.size() == chunks.size() && "hash_chunks: one digest per chunk");
  static_assert(std::is_same_v<chunk_digest, crypto::digest256>);
  if (a == hash_algo::blake2b_256) {
    crypto::blake2b_256_many(chunks, out);
    return;
  }
  for (std::size_t i = 0; i < chunks.size(); ++i) out[i] = from_xxh3(xxh3_128(chunks[i]));
}

std::size_t hash_chunks_batch(hash_algo a) noexcept {
  return a == hash_algo::blake2b_256 && crypto::blake2b_256_many_uses_avx2() ? 4 : 1;
}

chunk_hasher::chunk_hasher(hash_algo a) : algo_(a) {
  DTRAIN_ASSERT(is_known_hash_algo(static_cast<std::uint8_t>(a)) && "chunk_hasher: unknown hash_algo");
  if (a == hash_algo::xxh3_128) state_.emplace<xxh3_128_stream>(0);
}

void chunk_hasher::update(std::span<const std::byte> data) noexcept {
  if (auto* b = std::get_if<crypto::blake2b_256_state>(&state_)) {
    b->update(data);
  } else {
    std::get<xxh3_128_stream>(state_).update(data);
  }
}

chunk_digest chunk_hasher::final() noexcept {
  chunk_digest d{};
  if (auto* b = std::get_if<crypto::blake2b_256_state>(&state_)) {
    d = b->final();
  } else {
    d = from_xxh3(std::get<xxh3_128_stream>(state_).digest());
  }
  reset();
  return d;
}

void chunk_hasher::reset() noexcept {
  if (auto* b = std::get_if<crypto::blake2b_256_state>(&state_)) {
    b->init();
  } else {
    std::get<xxh3_128_stream>(state_).reset(0);
  }
}

}  // namespace dtrain::shard
