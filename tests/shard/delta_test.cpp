// Delta coding against the previous version (docs/shard.md "Delta coding"): a fake
// training checkpoint whose float tensors move slightly between versions round trips
// through a signed format-2 manifest with RS parity over the wire bytes (random order,
// random losses, write_fn, in place), much smaller than raw; a corrupted wire chunk is
// rejected at that chunk; a wrong base is data_loss (received and rebuilt chunks); zstd
// bombs are data_loss without a large allocation; bases shorter and longer than the new
// version; the format-2 byte layout; manifest rules for the wire table.
#include "dtrain/shard/delta.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/test_bytes.h"
#include "dtrain/core/bytes.h"
#include "dtrain/crypto/identity.h"
#include "dtrain/shard/decoder.h"
#include "dtrain/shard/encoder.h"
#include "dtrain/shard/manifest.h"
#include "dtrain/shard/merkle.h"

using namespace dtrain;
using namespace dtrain::shard;
using dtrain::test::random_bytes;

namespace {

crypto::identity origin_key() {
  std::vector<std::byte> seed(32, std::byte{0x42});
  return crypto::identity::from_seed(seed).value();
}

std::vector<tensor_desc> model_tensors() {
  return {make_tensor("embed", dtype::f32, {256, 512}), make_tensor("w1", dtype::f32, {512, 512}),
          make_tensor("b1", dtype::f32, {512}), make_tensor("w2", dtype::f32, {512, 256})};
}

// Version 1 of a fake checkpoint: normal(0, 0.02) weights.
std::vector<float> initial_weights(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> w(n);
  for (auto& x : w) x = nd(rng);
  return w;
}

// One optimizer step: every weight moves by a relative 1e-4 at most.
std::vector<float> step(const std::vector<float>& w, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1e-4f, 1e-4f);
  std::vector<float> out(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) out[i] = w[i] * (1.0f + u(rng));
  return out;
}

std::vector<std::byte> as_bytes(const std::vector<float>& w) {
  std::vector<std::byte> b(w.size() * sizeof(float));
  std::memcpy(b.data(), w.data(), b.size());
  return b;
}

std::size_t wire_bytes(const encoded_checkpoint& enc) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < enc.man.chunks.size(); ++i) n += enc.chunk(i).size();
  return n;
}

encode_options delta_options(std::span<const std::byte> base, std::size_t k, std::size_t m, std::uint64_t chunk) {
  encode_options o;
  o.chunk_size = chunk;
  o.k = k;
  o.m = m;
  o.version = 2;
  o.delta_base = delta_reference{1, base};
  return o;
}

// Feeds every stripe's chunks in random order with up to m of them lost.
std::vector<std::size_t> lossy_order(const manifest& man, std::mt19937_64& rng) {
  std::vector<std::size_t> order;
  const auto layout = manifest_stripes(man).value();
  if (layout.m == 0) {
    for (std::size_t i = 0; i < man.chunks.size(); ++i) order.push_back(i);
  } else {
    for (std::size_t s = 0; s < layout.stripes(); ++s) {
      std::vector<std::size_t> members;
      for (std::size_t i = 0; i < layout.stripe_data_count(s); ++i) members.push_back(layout.stripe_first(s) + i);
      for (std::size_t j = 0; j < layout.m; ++j) members.push_back(layout.parity_index(s, j));
      std::shuffle(members.begin(), members.end(), rng);
      const std::size_t need = layout.stripe_data_count(s);  // virtual zero chunks count as held
      const std::size_t keep = need + rng() % (members.size() - need + 1);
      members.resize(std::max(keep, need));
      order.insert(order.end(), members.begin(), members.end());
    }
  }
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

// Little-endian 3-byte zstd block header (RFC 8878 §3.1.1.2).
void block(std::vector<std::byte>& f, bool last, unsigned type, std::uint32_t size) {
  const std::uint32_t h = (last ? 1u : 0u) | (type << 1) | (size << 3);
  for (int i = 0; i < 3; ++i) f.push_back(static_cast<std::byte>((h >> (8 * i)) & 0xff));
}

void magic(std::vector<std::byte>& f) {
  for (std::uint8_t b : {0x28, 0xb5, 0x2f, 0xfd}) f.push_back(std::byte{b});
}

}  // namespace

TEST_CASE("delta: a training checkpoint round trips, much smaller than raw") {
  const auto tensors = model_tensors();
  std::size_t floats = 0;
  for (const auto& t : tensors) floats += static_cast<std::size_t>(t.size / 4);
  const auto w1 = initial_weights(floats, 1);
  const auto v1 = as_bytes(w1);
  const auto v2 = as_bytes(step(w1, 2));
  const auto [k, m] = GENERATE(table<std::size_t, std::size_t>({{1, 0}, {4, 2}, {10, 4}}));
  CAPTURE(k, m);

  auto opts = delta_options(v1, k, m, 64 << 10);
  auto enc = encode_tensors(tensors, v2, opts).value();
  REQUIRE(enc.man.delta == delta_codec::xor_zstd);
  REQUIRE(enc.man.delta_base == 1);
  std::size_t coded = 0;
  for (std::size_t i = 0; i < enc.man.chunks.size(); ++i) coded += enc.man.delta_coded(i) ? 1 : 0;
  REQUIRE(coded == enc.man.chunks.size());
  const std::size_t wire = wire_bytes(enc);
  static bool reported = false;  // once per run, not once per section
  if (!reported) {
    reported = true;
    WARN("delta + zstd: " << wire << " wire bytes for " << v2.size() << " raw bytes (ratio "
                          << static_cast<double>(wire) / static_cast<double>(v2.size()) << ")");
  }
  REQUIRE(wire < v2.size());
  // Parity is over the wire bytes: each parity chunk is its stripe's longest wire chunk.
  for (const auto& p : enc.man.parity) REQUIRE(p.length < opts.chunk_size);

  // Through a signed manifest.
  const auto id = origin_key();
  const auto signed_bytes = sign_manifest(enc.man, id).value();
  REQUIRE(load_le<std::uint16_t>(signed_bytes.data() + 4) == manifest_format_version_delta);
  const std::vector<crypto::peer_id> trusted = {id.id()};
  const manifest man = open_manifest(signed_bytes, trusted).value();

  std::mt19937_64 rng(k * 100 + m);
  SECTION("into a buffer, random order and losses") {
    std::vector<std::byte> out(v2.size());
    auto dec = decoder::create(man, out, v1).value();
    for (std::size_t i : lossy_order(man, rng)) REQUIRE(dec.add_chunk(i, enc.chunk(i)).ok());
    REQUIRE(dec.complete());
    REQUIRE(out == v2);
  }
  SECTION("through write_fn") {
    std::vector<std::byte> out(v2.size());
    std::size_t writes = 0;
    auto dec = decoder::create(
                   man,
                   [&](std::uint64_t off, std::span<const std::byte> b) {
                     std::memcpy(out.data() + off, b.data(), b.size());
                     ++writes;
                     return ok_status();
                   },
                   v1)
                   .value();
    for (std::size_t i : lossy_order(man, rng)) REQUIRE(dec.add_chunk(i, enc.chunk(i)).ok());
    REQUIRE(dec.complete());
    REQUIRE(writes == man.chunks.size());
    REQUIRE(out == v2);
  }
  SECTION("in place over the base") {
    std::vector<std::byte> buf = v1;
    auto dec = decoder::create(man, std::span<std::byte>(buf), std::span<const std::byte>(buf)).value();
    for (std::size_t i : lossy_order(man, rng)) REQUIRE(dec.add_chunk(i, enc.chunk(i)).ok());
    REQUIRE(dec.complete());
    REQUIRE(buf == v2);
  }
}

TEST_CASE("delta: chunks that do not shrink travel raw") {
  const auto base = random_bytes(50000, 5);
  auto next = base;
  // The first 20000 bytes are new random bytes (incompressible XOR), the rest unchanged.
  const auto fresh = random_bytes(20000, 6);
  std::copy(fresh.begin(), fresh.end(), next.begin());
  const auto enc = encode(next, delta_options(base, 3, 2, 10000)).value();
  REQUIRE(enc.man.delta_chunks.size() == 5);
  for (std::size_t i = 0; i < 5; ++i) {
    CAPTURE(i);
    const auto& d = enc.man.delta_chunks[i];
    if (i < 2) {
      REQUIRE(d.encoding == chunk_encoding::raw);
      REQUIRE(d.wire_length == enc.man.chunks[i].length);
      REQUIRE(d.wire_digest == enc.man.chunks[i].digest);
      REQUIRE(enc.chunk(i).data() == next.data() + enc.man.chunks[i].offset);  // a view, not a copy
    } else {
      REQUIRE(d.encoding == chunk_encoding::xor_zstd);
      REQUIRE(d.wire_length < 100);  // all zeros after XOR
    }
  }
  // Stripe 0 mixes raw and coded chunks; lose each data chunk in turn.
  for (std::size_t lost = 0; lost < 3; ++lost) {
    CAPTURE(lost);
    std::vector<std::byte> out(next.size());
    auto dec = decoder::create(enc.man, out, base).value();
    for (std::size_t i = 0; i < enc.man.total_chunks(); ++i)
      if (i != lost) REQUIRE(dec.add_chunk(i, enc.chunk(i)).ok());
    REQUIRE(dec.complete());
    REQUIRE(out == next);
  }
}

TEST_CASE("delta: a corrupted wire chunk is rejected at that chunk, the good one accepted later") {
  const auto base = random_bytes(40000, 7);
  auto next = base;
  for (std::size_t i = 0; i < next.size(); i += 97) next[i] ^= std::byte{0x10};
  const auto enc = encode(next, delta_options(base, 2, 1, 8192)).value();
  std::vector<std::byte> out(next.size());
  auto dec = decoder::create(enc.man, out, base).value();
  for (std::size_t i = 0; i < enc.man.chunks.size(); ++i) {
    CAPTURE(i);
    REQUIRE(enc.man.delta_coded(i));
    std::vector<std::byte> bad(enc.chunk(i).begin(), enc.chunk(i).end());
    bad[bad.size() / 2] ^= std::byte{1};
    const auto st = dec.add_chunk(i, bad);
    REQUIRE(st.code() == status_code::data_loss);
    REQUIRE_THAT(st.message(), Catch::Contains("chunk " + std::to_string(i)));
    REQUIRE(!dec.has_chunk(i));
    REQUIRE(dec.add_chunk(i, enc.chunk(i)).ok());
  }
  REQUIRE(dec.complete());
  REQUIRE(out == next);
}

TEST_CASE("delta: a wrong base is data_loss, received or rebuilt, and nothing is written") {
  const auto base = random_bytes(30000, 8);
  auto next = base;
  for (std::size_t i = 0; i < next.size(); i += 50) next[i] ^= std::byte{0x55};
  const auto enc = encode(next, delta_options(base, 2, 1, 10000)).value();
  auto wrong = base;
  wrong[15000] ^= std::byte{1};  // chunk 1's range only
  std::vector<std::byte> out(next.size(), std::byte{0xee});
  auto dec = decoder::create(enc.man, out, wrong).value();
  // Chunk 0's base range is intact: it decodes.
  REQUIRE(dec.add_chunk(0, enc.chunk(0)).ok());
  auto st = dec.add_chunk(1, enc.chunk(1));
  REQUIRE(st.code() == status_code::data_loss);
  REQUIRE_THAT(st.message(), Catch::Contains("plain digest"));
  REQUIRE(!dec.has_chunk(1));
  REQUIRE(std::all_of(out.begin() + 10000, out.begin() + 20000, [](std::byte b) { return b == std::byte{0xee}; }));
  // Rebuilt from parity (stripe 0 = chunks 0, 1; parity index 3): the same check.
  st = dec.add_chunk(3, enc.chunk(3));
  REQUIRE(st.code() == status_code::data_loss);
  REQUIRE_THAT(st.message(), Catch::Contains("plain digest"));
  REQUIRE(!dec.has_chunk(1));
  REQUIRE(!dec.complete());
  REQUIRE(std::all_of(out.begin() + 10000, out.begin() + 20000, [](std::byte b) { return b == std::byte{0xee}; }));
}

TEST_CASE("delta: bases shorter and longer than the new version") {
  const auto a = random_bytes(30000, 9);
  const std::size_t new_size = GENERATE(1u, 9999u, 20000u, 30000u, 45001u);
  const std::size_t base_size = GENERATE(0u, 100u, 30000u);
  CAPTURE(new_size, base_size);
  const std::span<const std::byte> base = std::span(a).first(base_size);
  // The new version: the base's bytes (where it has them) slightly changed, then fresh bytes.
  std::vector<std::byte> next = random_bytes(new_size, 10);
  for (std::size_t i = 0; i < std::min(new_size, base_size); ++i) next[i] = a[i] ^ (i % 64 == 0 ? std::byte{1} : std::byte{0});
  const auto enc = encode(next, delta_options(base, 2, 1, 4096)).value();
  std::vector<std::byte> out(next.size());
  auto dec = decoder::create(enc.man, out, base).value();
  std::mt19937_64 rng(new_size + base_size);
  for (std::size_t i : lossy_order(enc.man, rng)) REQUIRE(dec.add_chunk(i, enc.chunk(i)).ok());
  REQUIRE(dec.complete());
  REQUIRE(out == next);
}

TEST_CASE("delta: delta_encode_chunk and delta_decode_chunk") {
  const auto base = random_bytes(5000, 11);
  SECTION("identical to the base: a tiny frame; unrelated: raw") {
    auto same = delta_encode_chunk(std::span(base).subspan(1000, 2000), base, 1000).value();
    REQUIRE(same.has_value());
    REQUIRE(same->size() < 100);
    std::vector<std::byte> out(2000);
    REQUIRE(delta_decode_chunk(*same, base, 1000, out).ok());
    REQUIRE(std::equal(out.begin(), out.end(), base.begin() + 1000));
    const auto other = random_bytes(2000, 12);
    REQUIRE(!delta_encode_chunk(other, base, 1000).value().has_value());
  }
  SECTION("argument errors") {
    REQUIRE(delta_encode_chunk(base, base, 0, 1000).status().code() == status_code::invalid_argument);
    REQUIRE(delta_encode_chunk({}, base, 0).status().code() == status_code::invalid_argument);
    REQUIRE(check_zstd_level(default_zstd_level).ok());
    encode_options o;
    o.version = 3;
    o.delta_base = delta_reference{3, base};
    REQUIRE(encode(base, o).status().code() == status_code::invalid_argument);
    o.delta_base = delta_reference{0, base};
    REQUIRE(encode(base, o).status().code() == status_code::invalid_argument);
    o.delta_base = delta_reference{2, base};
    o.zstd_level = 1000;
    REQUIRE(encode(base, o).status().code() == status_code::invalid_argument);
  }
  SECTION("a frame longer than the chunk: the declared size is checked first") {
    const std::vector<std::byte> zeros(16 << 20);
    auto bomb = delta_encode_chunk(zeros, {}, 0).value();
    REQUIRE(bomb.has_value());
    REQUIRE(bomb->size() < 4096);
    std::vector<std::byte> out(1000);
    const auto st = delta_decode_chunk(*bomb, {}, 0, out);
    REQUIRE(st.code() == status_code::data_loss);
    REQUIRE_THAT(st.message(), Catch::Contains("16777216"));
  }
  SECTION("a hand-made frame without a content size (12.8 MB of RLE blocks)") {
    std::vector<std::byte> f;
    magic(f);
    f.push_back(std::byte{0x00});  // frame header descriptor: no content size, not single segment
    f.push_back(std::byte{0x38});  // window descriptor: 2^17 bytes
    for (int i = 0; i < 100; ++i) {
      block(f, i == 99, 1, 128 << 10);  // RLE block of 128 KiB
      f.push_back(std::byte{0x61});
    }
    std::vector<std::byte> out(1000);
    const auto st = delta_decode_chunk(f, {}, 0, out);
    REQUIRE(st.code() == status_code::data_loss);
    REQUIRE_THAT(st.message(), Catch::Contains("does not state its size"));
  }
  SECTION("a frame that lies about its content size") {
    std::vector<std::byte> f;
    magic(f);
    f.push_back(std::byte{0x60});  // single segment, 2-byte content size (value + 256)
    f.push_back(std::byte{0xe8});  // 1000 - 256 = 744 = 0x02e8
    f.push_back(std::byte{0x02});
    block(f, false, 1, 1000);
    f.push_back(std::byte{0x61});
    block(f, true, 1, 1000);  // 1000 bytes more than declared
    f.push_back(std::byte{0x62});
    std::vector<std::byte> out(1000);
    REQUIRE(delta_decode_chunk(f, {}, 0, out).code() == status_code::data_loss);
    // Truncated after the first block: fewer bytes than declared.
    std::vector<std::byte> g(f.begin(), f.begin() + 11);
    g[7] |= std::byte{1};  // make the first block the last (bit 0 of the block header)
    REQUIRE(delta_decode_chunk(g, {}, 0, out).ok());
    REQUIRE(std::all_of(out.begin(), out.end(), [](std::byte b) { return b == std::byte{0x61}; }));
    std::vector<std::byte> small(999);
    REQUIRE(delta_decode_chunk(g, {}, 0, small).code() == status_code::data_loss);
  }
  SECTION("not one zstd frame") {
    auto good = delta_encode_chunk(std::span(base).first(3000), {}, 0).value();
    REQUIRE(!good.has_value());  // random bytes do not compress
    const std::vector<std::byte> zeros(3000);
    auto z = delta_encode_chunk(zeros, {}, 0).value().value();
    std::vector<std::byte> out(3000);
    REQUIRE(delta_decode_chunk(z, {}, 0, out).ok());
    auto trailing = z;
    trailing.push_back(std::byte{0});
    REQUIRE(delta_decode_chunk(trailing, {}, 0, out).code() == status_code::data_loss);
    auto two = z;
    two.insert(two.end(), z.begin(), z.end());
    REQUIRE(delta_decode_chunk(two, {}, 0, out).code() == status_code::data_loss);
    auto bad_magic = z;
    bad_magic[0] = std::byte{0x50};  // not the zstd frame magic
    REQUIRE(delta_decode_chunk(bad_magic, {}, 0, out).code() == status_code::data_loss);
    REQUIRE(delta_decode_chunk(std::span(z).first(3), {}, 0, out).code() == status_code::data_loss);
    for (std::size_t n = 4; n < z.size(); ++n)
      REQUIRE(delta_decode_chunk(std::span(z).first(n), {}, 0, out).code() == status_code::data_loss);
  }
}

TEST_CASE("delta: a bomb signed by the origin is data_loss in the decoder") {
  const auto base = random_bytes(20000, 13);
  auto next = base;
  next[5] ^= std::byte{1};
  auto enc = encode(next, delta_options(base, 1, 0, 10000)).value();
  // Replace chunk 0's frame by one declaring 16 MiB (smaller than the chunk, so the
  // manifest is consistent) and re-sign.
  const std::vector<std::byte> zeros(16 << 20);
  auto bomb = delta_encode_chunk(zeros, {}, 0).value().value();
  REQUIRE(bomb.size() < 10000);
  enc.man.delta_chunks[0].wire_length = bomb.size();
  enc.man.delta_chunks[0].wire_digest = hash_chunk(enc.man.algo, bomb);
  enc.man.merkle_root = manifest_merkle_root(enc.man);
  const auto id = origin_key();
  const auto man = open_manifest(sign_manifest(enc.man, id).value(), {}).value();
  std::vector<std::byte> out(next.size());
  auto dec = decoder::create(man, out, base).value();
  const auto st = dec.add_chunk(0, bomb);
  REQUIRE(st.code() == status_code::data_loss);
  REQUIRE_THAT(st.message(), Catch::Contains("chunk 0"));
  REQUIRE(!dec.has_chunk(0));
  REQUIRE(dec.add_chunk(1, enc.chunk(1)).ok());
}

TEST_CASE("delta: format 2 byte layout") {
  const auto base = random_bytes(3000, 14);
  auto next = base;
  next[0] ^= std::byte{1};
  std::copy_n(random_bytes(1000, 15).begin(), 1000, next.begin() + 2000);  // chunk 2 travels raw
  const auto enc = encode(next, delta_options(base, 2, 1, 1000)).value();
  const auto id = origin_key();
  const auto b = sign_manifest(enc.man, id).value();
  const std::size_t n = 3;
  const std::size_t p = 2;
  REQUIRE(b.size() == 64 + 89 * n + 48 * p + 128);
  REQUIRE(load_le<std::uint16_t>(b.data() + 4) == 2);
  REQUIRE(static_cast<std::uint8_t>(b[7]) == 1);               // delta codec xor_zstd
  REQUIRE(load_le<std::uint64_t>(b.data() + 32) == 1);         // delta base
  for (std::size_t i = 0; i < n; ++i) {
    CAPTURE(i);
    const std::byte* e = b.data() + 64 + 89 * i;
    REQUIRE(load_le<std::uint64_t>(e) == 1000 * i);
    REQUIRE(load_le<std::uint64_t>(e + 8) == 1000);
    REQUIRE(std::memcmp(e + 16, enc.man.chunks[i].digest.data(), 32) == 0);
    REQUIRE(static_cast<std::uint8_t>(e[48]) == (i == 2 ? 0 : 1));
    REQUIRE(load_le<std::uint64_t>(e + 49) == enc.chunk(i).size());
    const auto wd = hash_chunk(hash_algo::blake2b_256, enc.chunk(i));
    REQUIRE(std::memcmp(e + 57, wd.data(), 32) == 0);
  }
  // Parity entries (v1 layout) follow, then the Merkle root over the wire digests.
  const std::byte* par = b.data() + 64 + 89 * n;
  REQUIRE(load_le<std::uint64_t>(par) == 0);
  REQUIRE(load_le<std::uint64_t>(par + 48) == 1);
  std::vector<chunk_digest> leaves;
  for (std::size_t i = 0; i < enc.man.total_chunks(); ++i) leaves.push_back(hash_chunk(hash_algo::blake2b_256, enc.chunk(i)));
  const chunk_digest root = merkle_root(leaves);
  REQUIRE(std::memcmp(par + 48 * p, root.data(), 32) == 0);
  // The signature covers the v2 context.
  std::vector<std::byte> msg(manifest_signing_context_v2.size());
  std::memcpy(msg.data(), manifest_signing_context_v2.data(), msg.size());
  msg.insert(msg.end(), b.begin(), b.end() - 64);
  crypto::signature sig;
  std::memcpy(sig.data(), b.data() + b.size() - 64, 64);
  REQUIRE(crypto::verify(id.id(), msg, sig));

  // Every single-bit change and every truncation is rejected.
  REQUIRE(open_manifest(b, {}).ok());
  for (std::size_t i = 0; i < b.size(); ++i) {
    auto bad = b;
    bad[i] ^= std::byte{0x80};
    CAPTURE(i);
    REQUIRE(!open_manifest(bad, {}).ok());
  }
  for (std::size_t len = 0; len < b.size(); ++len) REQUIRE(!open_manifest(std::span(b).first(len), {}).ok());
}

TEST_CASE("delta: manifest rules for the wire table") {
  const auto base = random_bytes(3000, 16);
  auto next = base;
  next[0] ^= std::byte{1};
  const auto enc = encode(next, delta_options(base, 0, 0, 1000)).value();
  REQUIRE(check_manifest(enc.man).ok());
  auto m = enc.man;
  SECTION("a delta-coded chunk not smaller than the chunk") { m.delta_chunks[0].wire_length = 1000; }
  SECTION("a raw chunk whose wire length differs") {
    m.delta_chunks[0].encoding = chunk_encoding::raw;
  }
  SECTION("unknown encoding") { m.delta_chunks[1].encoding = static_cast<chunk_encoding>(2); }
  SECTION("missing wire entries") { m.delta_chunks.pop_back(); }
  SECTION("wire entries without a codec") {
    m.delta = delta_codec::none;
    m.delta_base = 0;
  }
  m.merkle_root = manifest_merkle_root(m);
  REQUIRE(check_manifest(m).code() == status_code::data_loss);
  REQUIRE(sign_manifest(m, origin_key()).status().code() == status_code::invalid_argument);
}

TEST_CASE("delta: format version and codec must agree") {
  const auto base = random_bytes(3000, 17);
  const auto id = origin_key();
  const auto enc = encode(base, delta_options(base, 0, 0, 1000)).value();
  auto b = sign_manifest(enc.man, id).value();
  // Claim format 1 and re-sign with the v1 context: structure error, not a misparse.
  b[4] = std::byte{1};
  std::vector<std::byte> msg(manifest_signing_context.size());
  std::memcpy(msg.data(), manifest_signing_context.data(), msg.size());
  msg.insert(msg.end(), b.begin(), b.end() - 64);
  const auto sig = id.sign(msg);
  std::memcpy(b.data() + b.size() - 64, sig.data(), 64);
  const auto r = open_manifest(b, {});
  REQUIRE(r.status().code() == status_code::data_loss);
  REQUIRE_THAT(r.status().message(), Catch::Contains("format version 1 with delta codec 1"));
}
