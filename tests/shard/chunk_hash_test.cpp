// Chunk hashing: frozen known answers (hashlib / the xxhash C library), one-shot equals
// streaming in pieces and byte by byte, reset and reuse, names.
#include "dtrain/shard/chunk_hash.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include "common/hex.h"
#include "common/test_bytes.h"

using namespace dtrain::shard;
using dtrain::test::bytes_of;
using dtrain::test::to_hex;

TEST_CASE("hash_chunk: known answers") {
  // python3: hashlib.blake2b(msg, digest_size=32).hexdigest()
  CHECK(to_hex(hash_chunk(hash_algo::blake2b_256, {})) ==
        "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
  CHECK(to_hex(hash_chunk(hash_algo::blake2b_256, bytes_of("abc"))) ==
        "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
  // libxxhash 0.8.1 C API: XXH128_canonicalFromHash(XXH3_128bits(msg)), then 16 zero bytes.
  CHECK(to_hex(hash_chunk(hash_algo::xxh3_128, {})) ==
        "99aa06d3014798d86001c324468d497f" "00000000000000000000000000000000");
  CHECK(to_hex(hash_chunk(hash_algo::xxh3_128, bytes_of("abc"))) ==
        "06b05ab6733a618578af5f94892f3950" "00000000000000000000000000000000");
}

TEST_CASE("hash_chunk: one-shot, pieces and byte by byte agree") {
  const hash_algo algo = GENERATE(hash_algo::blake2b_256, hash_algo::xxh3_128);
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 7, 64, 127, 128, 129, 4096, 1000003}));
  CAPTURE(hash_algo_name(algo), n);
  const auto msg = dtrain::test::pattern_bytes(n);
  const chunk_digest one_shot = hash_chunk(algo, msg);

  for (std::size_t piece : {std::size_t{3}, std::size_t{64}, std::size_t{200}, std::size_t{65536}}) {
    CAPTURE(piece);
    chunk_hasher h(algo);
    for (std::size_t i = 0; i < n; i += piece) h.update(std::span(msg).subspan(i, std::min(piece, n - i)));
    CHECK(h.final() == one_shot);
  }
  if (n <= 4096) {  // byte by byte through 1e6 bytes adds nothing but time
    chunk_hasher h(algo);
    for (std::size_t i = 0; i < n; ++i) h.update(std::span(msg).subspan(i, 1));
    h.update({});
    CHECK(h.final() == one_shot);
  }
}

TEST_CASE("hash_chunks: a batch equals hash_chunk one chunk at a time") {
  const hash_algo algo = GENERATE(hash_algo::blake2b_256, hash_algo::xxh3_128);
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 3, 4, 5, 9, 14}));
  CAPTURE(hash_algo_name(algo), n);
  // Equal lengths (the encoder's stripes) and mixed ones (a last short chunk, empty chunks).
  const auto buf = dtrain::test::pattern_bytes(200'000);
  std::vector<std::span<const std::byte>> chunks;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t len = i % 5 == 3 ? 0 : (i % 4 == 2 ? 777 + i : 4096);
    chunks.push_back(std::span(buf).subspan(i * 5000 + i % 3, len));
  }
  std::vector<chunk_digest> got(n);
  hash_chunks(algo, chunks, got);
  for (std::size_t i = 0; i < n; ++i) {
    CAPTURE(i);
    CHECK(got[i] == hash_chunk(algo, chunks[i]));
  }
  // A changed byte in one chunk changes that digest only.
  if (n >= 4) {
    auto copy = std::vector<std::byte>(chunks[1].begin(), chunks[1].end());
    copy[copy.size() / 2] ^= std::byte{1};
    auto altered = chunks;
    altered[1] = copy;
    std::vector<chunk_digest> again(n);
    hash_chunks(algo, altered, again);
    CHECK(again[1] != got[1]);
    CHECK(again[0] == got[0]);
    CHECK(again[2] == got[2]);
  }
}

TEST_CASE("chunk_hasher: final() starts over, reset() forgets, algorithms differ") {
  const hash_algo algo = GENERATE(hash_algo::blake2b_256, hash_algo::xxh3_128);
  CAPTURE(hash_algo_name(algo));
  const auto a = dtrain::test::pattern_bytes(300);
  chunk_hasher h(algo);
  CHECK(h.algo() == algo);
  h.update(a);
  CHECK(h.final() == hash_chunk(algo, a));
  // After final() the hasher is empty again: the next chunk hashes on its own.
  h.update(bytes_of("abc"));
  CHECK(h.final() == hash_chunk(algo, bytes_of("abc")));
  h.update(bytes_of("garbage"));
  h.reset();
  CHECK(h.final() == hash_chunk(algo, {}));
  // Moving keeps the state.
  h.update(std::span(a).first(100));
  chunk_hasher moved = std::move(h);
  moved.update(std::span(a).subspan(100));
  CHECK(moved.final() == hash_chunk(algo, a));
  // One flipped bit changes the digest.
  auto b = a;
  b[150] ^= std::byte{1};
  CHECK(hash_chunk(algo, b) != hash_chunk(algo, a));
  CHECK(hash_chunk(hash_algo::blake2b_256, a) != hash_chunk(hash_algo::xxh3_128, a));
}

TEST_CASE("hash_algo: names and wire values") {
  CHECK(hash_algo_name(hash_algo::blake2b_256) == "blake2b-256");
  CHECK(hash_algo_name(hash_algo::xxh3_128) == "xxh3-128");
  CHECK(hash_algo_name(static_cast<hash_algo>(9)) == "unknown");
  CHECK(static_cast<int>(hash_algo::blake2b_256) == 1);
  CHECK(static_cast<int>(hash_algo::xxh3_128) == 2);
  CHECK(is_known_hash_algo(1));
  CHECK(is_known_hash_algo(2));
  CHECK_FALSE(is_known_hash_algo(0));
  CHECK_FALSE(is_known_hash_algo(3));
  CHECK_FALSE(is_known_hash_algo(255));
}
