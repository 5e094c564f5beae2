// The signed manifest: a frozen vector computed independently in Python, round trips,
// every single-byte tamper and every truncation rejected, trusted origins, newer format
// versions, hostile counts, and the consistency checks behind a valid signature.
#include "dtrain/shard/manifest.h"

#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "common/hex.h"
#include "dtrain/core/bytes.h"
#include "dtrain/shard/encoder.h"

using namespace dtrain;
using namespace dtrain::shard;
using dtrain::test::from_hex;
using dtrain::test::to_hex;

namespace {

crypto::identity seeded(std::uint8_t first) {
  std::vector<std::byte> seed(32);
  for (std::size_t i = 0; i < 32; ++i) seed[i] = static_cast<std::byte>(first + i);
  return crypto::identity::from_seed(seed).value();
}

// Two f32 tensors (bytes 0..23), chunk size 16, RS(2, 1), version 7.
encoded_checkpoint frozen_encoding(std::vector<std::byte>& data) {
  data.resize(24);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i);
  const std::vector<tensor_desc> tensors = {make_tensor("w", dtype::f32, {2, 2}), make_tensor("b", dtype::f32, {2})};
  encode_options opts;
  opts.chunk_size = 16;
  opts.k = 2;
  opts.m = 1;
  opts.version = 7;
  opts.created_unix = 1700000000;
  return encode_tensors(tensors, data, opts).value();
}

// Re-signs raw manifest bytes (the trailer's origin key replaced by `id`'s), so that
// the checks behind the signature see them.
std::vector<std::byte> resign(std::vector<std::byte> bytes, const crypto::identity& id) {
  const std::size_t body = bytes.size() - 64;
  std::memcpy(bytes.data() + body - 32, id.id().key.data(), 32);
  std::vector<std::byte> msg(manifest_signing_context.size());
  std::memcpy(msg.data(), manifest_signing_context.data(), msg.size());
  msg.insert(msg.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(body));
  const auto sig = id.sign(msg);
  std::memcpy(bytes.data() + body, sig.data(), 64);
  return bytes;
}

// Computed by an independent Python script (hashlib.blake2b, struct, a GF(2^8) Cauchy
// parity written from the definition, and the cryptography package's Ed25519 with the
// private key bytes 00 01 .. 1f); see docs/formats/shard_manifest.md "Frozen vector".
constexpr const char* frozen_hex =
    "4454534d010001000201000002000000070000000000000000f1536500000000000000000000000018000000000000001000"
    "0000000000000200000001000000010077036633320202000000000000000200000000000000000000000000000010000000"
    "0000000001006203663332010200000000000000100000000000000008000000000000000000000000000000100000000000"
    "0000c7cb5d1a1a214f1d833a21fe6c7b2420e417c2f220784cbe90072975131bc36710000000000000000800000000000000"
    "414b81a130c678e80f0b688e7018af6754e2a4187ffe3242eefe6c12e4f234b8000000000000000010000000000000003342"
    "d372608f7f5856b5a52d3515772d911797e0ed69e746474281d4599ce5b176f08e27e202c15c9b32b476bedd79362f0a8616"
    "02da8fafb650c36eccf4426603a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b807b24f10167d"
    "e72d7bc0d2e1adc89e426fc7880087ce82419197d42e6abd541212f21668a79f2543c8996e20099dac492005cd5cfc145e6d"
    "4be45db272b6ac05";

}  // namespace

TEST_CASE("manifest: frozen vector (two tensors, RS(2,1), seed 00..1f)") {
  std::vector<std::byte> data;
  auto enc = frozen_encoding(data);
  const auto id = seeded(0);
  auto bytes = sign_manifest(enc.man, id);
  REQUIRE(bytes.ok());
  REQUIRE(bytes->size() == 408);
  REQUIRE(to_hex(*bytes) == frozen_hex);

  // The independently computed bytes open to the same manifest.
  const auto frozen = from_hex(frozen_hex);
  const std::vector<crypto::peer_id> trusted = {id.id()};
  auto opened = open_manifest(frozen, trusted);
  REQUIRE(opened.ok());
  manifest want = enc.man;
  want.origin = id.id();
  REQUIRE(*opened == want);
  REQUIRE(opened->tensors[0].name == "w");
  REQUIRE(opened->tensors[1].shape == std::vector<std::uint64_t>{2});
  REQUIRE(opened->parity.size() == 1);
}

TEST_CASE("manifest: round trip, deterministic signing") {
  std::vector<std::byte> data(100000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i * 31 + 7);
  const auto algo = GENERATE(hash_algo::blake2b_256, hash_algo::xxh3_128);
  const std::size_t m = GENERATE(0u, 3u);
  CAPTURE(static_cast<int>(algo), m);
  encode_options opts;
  opts.chunk_size = 4096;
  opts.algo = algo;
  opts.k = 5;
  opts.m = m;
  opts.version = 3;
  auto enc = encode(data, opts);
  REQUIRE(enc.ok());
  const auto id = seeded(9);
  auto a = sign_manifest(enc->man, id);
  auto b = sign_manifest(enc->man, id);
  REQUIRE(a.ok());
  REQUIRE(*a == *b);
  auto opened = open_manifest(*a, {});
  REQUIRE(opened.ok());
  REQUIRE(opened->origin == id.id());
  REQUIRE(sign_manifest(*opened, id).value() == *a);
}

TEST_CASE("manifest: every single-byte change and every truncation is rejected") {
  std::vector<std::byte> data;
  auto enc = frozen_encoding(data);
  const auto id = seeded(0);
  const auto good = sign_manifest(enc.man, id).value();
  const std::vector<crypto::peer_id> trusted = {id.id()};
  REQUIRE(open_manifest(good, trusted).ok());
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (int bit : {0, 7}) {
      auto bad = good;
      bad[i] ^= static_cast<std::byte>(1 << bit);
      CAPTURE(i, bit);
      auto r = open_manifest(bad, trusted);
      REQUIRE(!r.ok());
      if (i >= good.size() - 64) REQUIRE(r.status().code() == status_code::permission_denied);
    }
  }
  for (std::size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    auto r = open_manifest(std::span(good).first(n), trusted);
    REQUIRE(!r.ok());
    REQUIRE(r.status().code() == status_code::data_loss);
  }
  auto longer = good;
  longer.push_back(std::byte{0});
  REQUIRE(!open_manifest(longer, trusted).ok());
}

TEST_CASE("manifest: origins") {
  std::vector<std::byte> data;
  auto enc = frozen_encoding(data);
  const auto origin = seeded(0);
  const auto other = seeded(100);
  const auto bytes = sign_manifest(enc.man, origin).value();
  SECTION("trusted") {
    const std::vector<crypto::peer_id> t = {other.id(), origin.id()};
    REQUIRE(open_manifest(bytes, t).ok());
  }
  SECTION("untrusted signer") {
    const std::vector<crypto::peer_id> t = {other.id()};
    auto r = open_manifest(bytes, t);
    REQUIRE(r.status().code() == status_code::permission_denied);
    REQUIRE_THAT(r.status().message(), Catch::Contains("not a trusted origin"));
  }
  SECTION("empty list trusts any valid signature (the documented footgun)") {
    const auto forged = sign_manifest(enc.man, other).value();
    REQUIRE(open_manifest(forged, {}).ok());
    const std::vector<crypto::peer_id> t = {origin.id()};
    REQUIRE(open_manifest(forged, t).status().code() == status_code::permission_denied);
  }
  SECTION("origin key swapped without re-signing") {
    auto swapped = bytes;
    std::memcpy(swapped.data() + swapped.size() - 96, other.id().key.data(), 32);
    auto r = open_manifest(swapped, {});
    REQUIRE(r.status().code() == status_code::permission_denied);
    REQUIRE_THAT(r.status().message(), Catch::Contains("signature does not verify"));
  }
}

TEST_CASE("manifest: structure errors") {
  std::vector<std::byte> data;
  auto enc = frozen_encoding(data);
  const auto id = seeded(0);
  const auto good = sign_manifest(enc.man, id).value();
  SECTION("magic") {
    auto bad = good;
    bad[0] = std::byte{'X'};
    auto r = open_manifest(bad, {});
    REQUIRE(r.status().code() == status_code::data_loss);
    REQUIRE_THAT(r.status().message(), Catch::Contains("DTSM"));
  }
  SECTION("newer format version: unimplemented whatever follows") {
    auto bad = std::vector<std::byte>(good.begin(), good.begin() + 6);
    bad[4] = std::byte{3};
    REQUIRE(open_manifest(bad, {}).status().code() == status_code::unimplemented);
  }
  SECTION("format version 0") {
    auto bad = good;
    bad[4] = std::byte{0};
    REQUIRE(open_manifest(bad, {}).status().code() == status_code::data_loss);
  }
  SECTION("hostile counts are refused before allocating") {
    for (std::size_t off : {12u, 56u, 60u}) {
      auto bad = good;
      store_le<std::uint32_t>(bad.data() + off, 0xffffffffu);
      auto r = open_manifest(bad, {});
      CAPTURE(off);
      REQUIRE(r.status().code() == status_code::data_loss);
      REQUIRE_THAT(r.status().message(), Catch::Contains("truncated"));
    }
  }
  SECTION("reserved bytes") {
    auto bad = resign(good, id);
    bad[10] = std::byte{1};
    REQUIRE_THAT(open_manifest(resign(bad, id), {}).status().message(), Catch::Contains("reserved"));
  }
}

TEST_CASE("manifest: consistency checks behind a valid signature") {
  std::vector<std::byte> data;
  auto enc = frozen_encoding(data);
  const auto id = seeded(0);
  const auto good = sign_manifest(enc.man, id).value();
  REQUIRE(open_manifest(resign(good, id), {}).ok());
  // Offsets in the frozen layout: tensor table at 64 ("w": 2+1+1+3+1+16+16 = 40 bytes,
  // "b": 32 bytes), chunk table at 136, parity at 232, Merkle root at 280.
  const auto expect_loss = [&](std::vector<std::byte> bad, const char* words) {
    auto r = open_manifest(resign(std::move(bad), id), {});
    REQUIRE(r.status().code() == status_code::data_loss);
    REQUIRE_THAT(r.status().message(), Catch::Contains(words));
  };
  SECTION("gap between chunks") {
    auto bad = good;
    store_le<std::uint64_t>(bad.data() + 136 + 48, 17);
    expect_loss(bad, "a gap");
  }
  SECTION("chunk longer than the chunk size") {
    auto bad = good;
    store_le<std::uint64_t>(bad.data() + 48, 8);  // chunk size 16 -> 8
    expect_loss(bad, "outside 1..chunk size");
  }
  SECTION("total size past the chunks") {
    auto bad = good;
    store_le<std::uint64_t>(bad.data() + 40, 25);
    expect_loss(bad, "tensors end at 24");
  }
  SECTION("tensor offset") {
    auto bad = good;
    store_le<std::uint64_t>(bad.data() + 64 + 24, 1);
    expect_loss(bad, "tensors are contiguous");
  }
  SECTION("parity length") {
    auto bad = good;
    store_le<std::uint64_t>(bad.data() + 232 + 8, 8);
    expect_loss(bad, "parity chunk 0 holds 8 bytes");
  }
  SECTION("a digest changed") {
    auto bad = good;
    bad[136 + 16] ^= std::byte{1};
    expect_loss(bad, "Merkle root");
  }
  SECTION("Merkle root changed") {
    auto bad = good;
    bad[280] ^= std::byte{1};
    expect_loss(bad, "Merkle root");
  }
  SECTION("unknown hash algorithm") {
    auto bad = good;
    bad[6] = std::byte{9};
    expect_loss(bad, "unknown hash algorithm");
  }
  SECTION("k without m") {
    auto bad = good;
    bad[9] = std::byte{0};
    expect_loss(bad, "k = 2 without parity");
  }
  SECTION("delta base without codec") {
    auto bad = good;
    store_le<std::uint64_t>(bad.data() + 32, 5);
    expect_loss(bad, "delta base version 5");
  }
  SECTION("invalid UTF-8 name") {
    auto bad = good;
    bad[66] = std::byte{0xff};
    expect_loss(bad, "not valid UTF-8");
  }
}

TEST_CASE("manifest: sign_manifest refuses what open would reject") {
  std::vector<std::byte> data;
  auto enc = frozen_encoding(data);
  const auto id = seeded(0);
  auto m = enc.man;
  SECTION("Merkle root") { m.merkle_root[0] ^= std::byte{1}; }
  SECTION("tiling") { m.chunks[1].offset = 15; }
  SECTION("k without m") {
    m.m = 0;
    m.parity.clear();
  }
  SECTION("delta base not older") {
    m.delta = delta_codec::xor_zstd;
    m.delta_base = 7;
  }
  SECTION("name too long") { m.tensors[0].name.assign(70000, 'a'); }
  SECTION("xxh3 digest with bytes 16..31 set") { m.algo = hash_algo::xxh3_128; }
  auto r = sign_manifest(m, id);
  REQUIRE(r.status().code() == status_code::invalid_argument);
}

TEST_CASE("manifest: an empty checkpoint") {
  std::vector<std::byte> none;
  auto enc = encode(none, {});
  REQUIRE(enc.ok());
  REQUIRE(enc->man.chunks.empty());
  const auto id = seeded(0);
  auto bytes = sign_manifest(enc->man, id);
  REQUIRE(bytes.ok());
  REQUIRE(bytes->size() == manifest_header_bytes + manifest_trailer_bytes);
  REQUIRE(open_manifest(*bytes, {}).ok());
}
