// One-shot encoding: chunk views and digests match the plan, parity matches the plain
// reference coder (zero padding, short last stripe), tensor tables, one-shot chunk
// hashes equal streaming ones, argument errors.
#include "dtrain/shard/encoder.h"

#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "dtrain/shard/erasure.h"
#include "dtrain/shard/merkle.h"
#include "common/test_bytes.h"

using namespace dtrain;
using namespace dtrain::shard;

using dtrain::test::random_bytes;

namespace {


}  // namespace

TEST_CASE("encode: chunks, digests and parity") {
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 7, 4096, 100003}));
  const std::size_t k = GENERATE(4u, 10u);
  const std::size_t m = GENERATE(0u, 2u, 4u);
  const auto algo = GENERATE(hash_algo::blake2b_256, hash_algo::xxh3_128);
  CAPTURE(n, k, m, static_cast<int>(algo));
  const auto data = random_bytes(n, n + k);
  encode_options opts;
  opts.chunk_size = 1000;
  opts.k = k;
  opts.m = m;
  opts.algo = algo;
  auto enc = encode(data, opts);
  REQUIRE(enc.ok());
  const manifest& man = enc->man;
  REQUIRE(check_manifest(man).ok());
  REQUIRE(man.total_size == n);
  REQUIRE(man.chunks.size() == (n + 999) / 1000);
  REQUIRE(enc->data_chunks.size() == man.chunks.size());
  for (std::size_t i = 0; i < man.chunks.size(); ++i) {
    const auto view = enc->data_chunks[i];
    REQUIRE(view.data() == data.data() + man.chunks[i].offset);  // a view, not a copy
    REQUIRE(view.size() == man.chunks[i].length);
    REQUIRE(man.chunks[i].digest == hash_chunk(algo, view));
    // The streaming hasher, fed the chunk byte by byte, agrees.
    chunk_hasher h(algo);
    for (std::byte b : view) h.update(std::span(&b, 1));
    REQUIRE(h.final() == man.chunks[i].digest);
  }
  auto layout = manifest_stripes(man);
  REQUIRE(layout.ok());
  REQUIRE(enc->parity_chunks.size() == layout->parity_chunks());
  REQUIRE(man.parity.size() == layout->parity_chunks());
  // Parity against the reference coder, with padding and virtual chunks made explicit.
  for (std::size_t s = 0; s < layout->stripes(); ++s) {
    const std::size_t len = layout->stripe_length[s];
    std::vector<std::vector<std::byte>> padded(k, std::vector<std::byte>(len, std::byte{0}));
    for (std::size_t i = 0; i < layout->stripe_data_count(s); ++i) {
      const auto c = enc->data_chunks[layout->stripe_first(s) + i];
      std::copy(c.begin(), c.end(), padded[i].begin());
    }
    std::vector<std::vector<std::byte>> want(m, std::vector<std::byte>(len));
    std::vector<std::span<const std::byte>> in(padded.begin(), padded.end());
    std::vector<std::span<std::byte>> out(want.begin(), want.end());
    REQUIRE(rs_encode_reference(k, m, in, out).ok());
    for (std::size_t j = 0; j < m; ++j) {
      REQUIRE(enc->parity_chunks[s * m + j] == want[j]);
      REQUIRE(man.parity[s * m + j].stripe == s);
      REQUIRE(man.parity[s * m + j].digest == hash_chunk(algo, want[j]));
    }
  }
  REQUIRE(man.merkle_root == manifest_merkle_root(man));
}

TEST_CASE("encode_tensors: tensor table and aligned chunks") {
  const std::vector<tensor_desc> tensors = {
      make_tensor("embed", dtype::bf16, {64, 32}),  // 4096 bytes: big, 4 chunks of 1024
      make_tensor("ln.w", dtype::f32, {32}),        // 128 bytes: small
      make_tensor("ln.b", dtype::f32, {32}),        // 128 bytes: small, packed with ln.w
      make_tensor("head", dtype::f16, {300}),       // 600 bytes: big, own chunk
  };
  const auto data = random_bytes(4096 + 256 + 600, 5);
  encode_options opts;
  opts.chunk_size = 1024;
  opts.k = 3;
  opts.m = 2;
  auto enc = encode_tensors(tensors, data, opts);
  REQUIRE(enc.ok());
  const manifest& man = enc->man;
  REQUIRE(man.tensors.size() == 4);
  REQUIRE(man.tensors[2].name == "ln.b");
  REQUIRE(man.tensors[2].offset == 4096 + 128);
  REQUIRE(man.tensors[3].dtype == "f16");
  REQUIRE(man.tensors[0].shape == std::vector<std::uint64_t>{64, 32});
  REQUIRE(man.chunks.size() == 6);
  REQUIRE(man.chunks[4].offset == 4096);
  REQUIRE(man.chunks[4].length == 256);
  REQUIRE(man.chunks[5].offset == 4352);
  REQUIRE(man.parity.size() == 4);
  REQUIRE(man.parity[2].length == 1024);  // stripe 1: chunks of 1024, 256, 600 bytes

  // The same big tensor in another checkpoint hashes to the same chunks (dedup).
  std::vector<tensor_desc> v2 = tensors;
  v2[1] = make_tensor("ln.w", dtype::f32, {40});
  auto data2 = data;
  data2.insert(data2.begin() + 4096, 32, std::byte{1});
  auto enc2 = encode_tensors(v2, data2, opts);
  REQUIRE(enc2.ok());
  for (std::size_t i = 0; i < 4; ++i) REQUIRE(enc2->man.chunks[i].digest == man.chunks[i].digest);
  REQUIRE(enc2->man.chunks[5].digest == man.chunks[5].digest);
  REQUIRE(enc2->man.chunks[4].digest != man.chunks[4].digest);
}

TEST_CASE("encode: argument errors") {
  const auto data = random_bytes(100, 1);
  encode_options opts;
  opts.chunk_size = 0;
  REQUIRE(encode(data, opts).status().code() == status_code::invalid_argument);
  opts.chunk_size = 10;
  opts.k = 0;
  opts.m = 2;
  REQUIRE(encode(data, opts).status().code() == status_code::invalid_argument);
  opts.k = 200;
  opts.m = 56;
  REQUIRE(encode(data, opts).status().code() == status_code::invalid_argument);
  opts.k = 4;
  opts.m = 0;
  auto plain = encode(data, opts);
  REQUIRE(plain.ok());
  REQUIRE(plain->man.k == 0);  // m = 0: k is not recorded
  const std::vector<tensor_desc> t = {make_tensor("a", dtype::f32, {10})};
  REQUIRE(encode_tensors(t, data, opts).status().code() == status_code::invalid_argument);  // 40 != 100
  std::vector<tensor_desc> bad_name = {{"\xff", "u8", {100}, 100}};
  REQUIRE(encode_tensors(bad_name, data, opts).status().code() == status_code::invalid_argument);
}
