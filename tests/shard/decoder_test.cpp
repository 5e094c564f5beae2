// The streaming decoder: round trips in any order with m = 0, RS(4,2) and RS(10,4),
// random loss of up to m chunks per stripe (rebuilt from parity), corrupted chunks
// rejected before any write and the good chunk accepted later, duplicates, the write
// callback, missing_chunks, inconsistent parity, and one-shot == streaming.
#include "dtrain/shard/decoder.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "dtrain/shard/encoder.h"
#include "common/test_bytes.h"

using namespace dtrain;
using namespace dtrain::shard;

using dtrain::test::random_bytes;

namespace {


encoded_checkpoint make(const std::vector<std::byte>& data, std::size_t k, std::size_t m, std::uint64_t chunk = 1000) {
  encode_options opts;
  opts.chunk_size = chunk;
  opts.k = k;
  opts.m = m;
  return encode(data, opts).value();
}

}  // namespace

TEST_CASE("decoder: round trip in random order with random losses") {
  const auto [k, m] = GENERATE(table<std::size_t, std::size_t>({{1, 0}, {4, 0}, {4, 2}, {10, 4}, {3, 1}}));
  const std::size_t n = GENERATE(values<std::size_t>({1, 999, 1000, 25000, 43210}));
  const std::uint64_t seed = GENERATE(1u, 2u, 3u);
  CAPTURE(k, m, n, seed);
  const auto data = random_bytes(n, seed * 77 + n);
  const auto enc = make(data, k, m);
  auto layout = manifest_stripes(enc.man).value();
  std::mt19937_64 rng(seed);

  // Drop up to m chunks of every stripe (data or parity); keep every data chunk when m = 0.
  std::vector<std::size_t> order;
  if (m == 0) {
    for (std::size_t i = 0; i < enc.man.total_chunks(); ++i) order.push_back(i);
  } else {
    for (std::size_t s = 0; s < layout.stripes(); ++s) {
      std::vector<std::size_t> members;
      for (std::size_t i = 0; i < layout.stripe_data_count(s); ++i) members.push_back(layout.stripe_first(s) + i);
      for (std::size_t j = 0; j < m; ++j) members.push_back(layout.parity_index(s, j));
      std::shuffle(members.begin(), members.end(), rng);
      // A short stripe's virtual chunks count as held, so more may be lost there.
      const std::size_t virtual_chunks = k - layout.stripe_data_count(s);
      const std::size_t drop = rng() % (m + virtual_chunks + 1);
      members.resize(members.size() - std::min(drop, members.size() - (k - virtual_chunks)));
      order.insert(order.end(), members.begin(), members.end());
    }
  }
  std::shuffle(order.begin(), order.end(), rng);

  std::vector<std::byte> out(n);
  auto dec = decoder::create(enc.man, out);
  REQUIRE(dec.ok());
  REQUIRE(!dec->complete());
  for (std::size_t idx : order) REQUIRE(dec->add_chunk(idx, enc.chunk(idx)).ok());
  REQUIRE(dec->complete());
  REQUIRE(dec->missing_chunks().empty());
  REQUIRE(out == data);
}

TEST_CASE("decoder: a corrupted chunk is rejected before writing, the good one accepted later") {
  const auto data = random_bytes(10000, 4);
  const auto enc = make(data, 4, 2);
  std::vector<std::byte> out(data.size(), std::byte{0xee});
  auto dec = decoder::create(enc.man, out).value();
  for (std::size_t idx : {std::size_t{2}, std::size_t{10}}) {  // a data chunk and a parity chunk
    std::vector<std::byte> bad(enc.chunk(idx).begin(), enc.chunk(idx).end());
    bad[bad.size() / 2] ^= std::byte{0x40};
    auto st = dec.add_chunk(idx, bad);
    REQUIRE(st.code() == status_code::data_loss);
    REQUIRE_THAT(st.message(), Catch::Contains("chunk " + std::to_string(idx) + " fails"));
    REQUIRE(!dec.has_chunk(idx));
  }
  REQUIRE(std::all_of(out.begin(), out.end(), [](std::byte b) { return b == std::byte{0xee}; }));
  // Wrong length.
  auto st = dec.add_chunk(0, enc.chunk(0).first(10));
  REQUIRE(st.code() == status_code::data_loss);
  REQUIRE_THAT(st.message(), Catch::Contains("holds 10 bytes"));
  REQUIRE(dec.add_chunk(dec.chunk_count(), enc.chunk(0)).code() == status_code::out_of_range);
  for (std::size_t i = 0; i < enc.man.total_chunks(); ++i) REQUIRE(dec.add_chunk(i, enc.chunk(i)).ok());
  REQUIRE(dec.complete());
  REQUIRE(out == data);
  // Duplicates after completion: verified, ignored.
  REQUIRE(dec.add_chunk(3, enc.chunk(3)).ok());
  std::vector<std::byte> bad(enc.chunk(3).begin(), enc.chunk(3).end());
  bad[0] ^= std::byte{1};
  REQUIRE(dec.add_chunk(3, bad).code() == status_code::data_loss);
}

TEST_CASE("decoder: rebuilds a stripe as soon as k of its chunks are verified") {
  const auto data = random_bytes(4 * 1000 + 2 * 1000 + 500, 9);  // stripes: 4 chunks, 3 chunks (short)
  const auto enc = make(data, 4, 2);
  std::vector<std::byte> out(data.size());
  auto dec = decoder::create(enc.man, out).value();
  REQUIRE(enc.man.chunks.size() == 7);
  // Stripe 0: chunks 0..3, parity 7, 8. Stripe 1: chunks 4..6 + one virtual, parity 9, 10.
  REQUIRE(dec.missing_chunks() == std::vector<std::size_t>{0, 1, 2, 3, 4, 5, 6});
  REQUIRE(dec.add_chunk(0, enc.chunk(0)).ok());
  REQUIRE(dec.add_chunk(8, enc.chunk(8)).ok());
  REQUIRE(dec.missing_chunks() == std::vector<std::size_t>{1, 2, 4, 5, 6});
  REQUIRE(dec.add_chunk(3, enc.chunk(3)).ok());
  REQUIRE(!dec.has_chunk(1));
  REQUIRE(dec.add_chunk(7, enc.chunk(7)).ok());  // the 4th of stripe 0: 1 and 2 rebuilt
  REQUIRE(dec.has_chunk(1));
  REQUIRE(dec.has_chunk(2));
  REQUIRE(dec.missing_chunks() == std::vector<std::size_t>{4, 5, 6});
  // Stripe 1 has a virtual zero chunk: two parity chunks and one data chunk suffice.
  REQUIRE(dec.add_chunk(9, enc.chunk(9)).ok());
  REQUIRE(dec.add_chunk(10, enc.chunk(10)).ok());
  REQUIRE(dec.missing_chunks() == std::vector<std::size_t>{4});
  REQUIRE(dec.add_chunk(6, enc.chunk(6)).ok());
  REQUIRE(dec.complete());
  REQUIRE(out == data);
}

TEST_CASE("decoder: write callback, one-shot == streaming") {
  const auto data = random_bytes(33333, 11);
  const auto enc = make(data, 5, 3, 777);
  std::map<std::uint64_t, std::vector<std::byte>> writes;
  std::size_t calls = 0;
  bool fail_next = false;
  auto dec = decoder::create(enc.man, [&](std::uint64_t off, std::span<const std::byte> b) -> status {
    if (fail_next) {
      fail_next = false;
      return unavailable("disk busy");
    }
    ++calls;
    REQUIRE(writes.count(off) == 0);  // each chunk written once
    writes[off].assign(b.begin(), b.end());
    return {};
  });
  REQUIRE(dec.ok());
  // A failing write is reported and the chunk can be added again.
  fail_next = true;
  REQUIRE(dec->add_chunk(0, enc.chunk(0)).code() == status_code::unavailable);
  REQUIRE(!dec->has_chunk(0));
  // Only parity and some data: everything else is rebuilt through the callback.
  for (std::size_t i = enc.man.chunks.size(); i < enc.man.total_chunks(); ++i)
    REQUIRE(dec->add_chunk(i, enc.chunk(i)).ok());
  for (std::size_t i = 0; i < enc.man.chunks.size(); ++i)
    if (i % 5 >= 3) REQUIRE(dec->add_chunk(i, enc.chunk(i)).ok());
  REQUIRE(dec->complete());
  REQUIRE(calls == enc.man.chunks.size());
  std::vector<std::byte> joined;
  for (const auto& [off, b] : writes) {
    REQUIRE(off == joined.size());
    joined.insert(joined.end(), b.begin(), b.end());
  }
  REQUIRE(joined == data);
}

TEST_CASE("decoder: read-back instead of kept copies rebuilds from what was written") {
  const auto data = random_bytes(33333, 21);
  const auto enc = make(data, 5, 3, 777);
  std::vector<std::byte> file(data.size(), std::byte{0});
  std::size_t reads = 0;
  bool fail_read = false;
  auto dec = decoder::create(enc.man, [&](std::uint64_t off, std::span<const std::byte> b) -> status {
    std::copy(b.begin(), b.end(), file.begin() + static_cast<std::ptrdiff_t>(off));
    return {};
  });
  REQUIRE(dec.ok());
  dec->set_read_back([&](std::uint64_t off, std::span<std::byte> into) -> status {
    if (fail_read) return unavailable("disk gone");
    ++reads;
    REQUIRE(off + into.size() <= file.size());
    std::copy_n(file.begin() + static_cast<std::ptrdiff_t>(off), into.size(), into.begin());
    return {};
  });
  // Stripe 0: data chunks 0..2 and parity 0..1; chunks 3 and 4 are rebuilt from the
  // read-back bytes of 0..2. The first attempt's read fails and is reported unchanged.
  for (std::size_t i = 0; i < 3; ++i) REQUIRE(dec->add_chunk(i, enc.chunk(i)).ok());
  const std::size_t p0 = enc.man.chunks.size();
  REQUIRE(dec->add_chunk(p0, enc.chunk(p0)).ok());
  fail_read = true;
  REQUIRE(dec->add_chunk(p0 + 1, enc.chunk(p0 + 1)).code() == status_code::unavailable);
  REQUIRE(!dec->has_chunk(3));
  fail_read = false;
  REQUIRE(dec->add_chunk(p0 + 1, enc.chunk(p0 + 1)).ok());  // a duplicate retries the rebuild
  REQUIRE(dec->has_chunk(3));
  REQUIRE(dec->has_chunk(4));
  REQUIRE(reads == 3);
  // A corrupted file under the decoder shows as a rebuild with the wrong digest.
  for (std::size_t i = 5; i < 8; ++i) REQUIRE(dec->add_chunk(i, enc.chunk(i)).ok());
  file[static_cast<std::size_t>(enc.man.chunks[5].offset)] ^= std::byte{0x40};
  REQUIRE(dec->add_chunk(p0 + 3, enc.chunk(p0 + 3)).ok());
  REQUIRE(dec->add_chunk(p0 + 4, enc.chunk(p0 + 4)).code() == status_code::data_loss);
  REQUIRE(!dec->has_chunk(8));
  file[static_cast<std::size_t>(enc.man.chunks[5].offset)] ^= std::byte{0x40};
  // The rest arrives as data (stripe 1 now completes only from its own data chunks).
  for (std::size_t i = 8; i < enc.man.chunks.size(); ++i) REQUIRE(dec->add_chunk(i, enc.chunk(i)).ok());
  REQUIRE(dec->complete());
  REQUIRE(file == data);
}

TEST_CASE("decoder: add_chunks verifies a batch like add_chunk one by one") {
  const hash_algo algo = GENERATE(hash_algo::blake2b_256, hash_algo::xxh3_128);
  CAPTURE(hash_algo_name(algo));
  const auto data = random_bytes(20000, 31);
  encode_options opts;
  opts.chunk_size = 1000;
  opts.k = 4;
  opts.m = 2;
  opts.algo = algo;
  const auto enc = encode(data, opts).value();
  std::vector<std::byte> out(data.size(), std::byte{0});
  auto dec = decoder::create(enc.man, out).value();
  auto bad = std::vector<std::byte>(enc.chunk(2).begin(), enc.chunk(2).end());
  bad[10] ^= std::byte{4};
  const std::vector<std::byte> short_chunk(999);
  // Good chunks, a corrupted one, a short one, an index past the end, a duplicate, and
  // a parity chunk completing stripe 1 (chunks 4..7: 4, 5, parity 2 and 3).
  const std::size_t p1 = enc.man.chunks.size() + 2;
  std::vector<decoder::chunk_input> batch = {{0, enc.chunk(0)},  {1, enc.chunk(1)},       {2, bad},
                                             {3, short_chunk},   {999, enc.chunk(0)},     {0, enc.chunk(0)},
                                             {4, enc.chunk(4)},  {5, enc.chunk(5)},       {p1, enc.chunk(p1)},
                                             {p1 + 1, enc.chunk(p1 + 1)}};
  const auto st = dec.add_chunks(batch);
  REQUIRE(st.size() == batch.size());
  CHECK(st[0].ok());
  CHECK(st[1].ok());
  CHECK(st[2].code() == status_code::data_loss);
  CHECK(st[3].code() == status_code::data_loss);
  CHECK(st[4].code() == status_code::out_of_range);
  CHECK(st[5].ok());
  for (std::size_t i = 6; i < batch.size(); ++i) CHECK(st[i].ok());
  CHECK(!dec.has_chunk(2));
  CHECK(!dec.has_chunk(3));
  CHECK(dec.has_chunk(6));  // rebuilt from parity within the batch
  CHECK(dec.has_chunk(7));
  // The rest one at a time: the outcome is the same as never batching.
  for (std::size_t i = 0; i < enc.man.chunks.size(); ++i)
    if (!dec.has_chunk(i)) REQUIRE(dec.add_chunk(i, enc.chunk(i)).ok());
  REQUIRE(dec.complete());
  CHECK(out == data);
}

TEST_CASE("decoder: a rebuild that a failed write interrupted is retried from the right bytes") {
  // 0: write callback (kept copies); 1: with read-back; 2: read-back and delta-coded chunks.
  const int mode = GENERATE(0, 1, 2);
  CAPTURE(mode);
  const auto base = random_bytes(4000, 7);
  auto data = base;
  for (std::size_t i = 0; i < data.size(); i += 97) data[i] ^= std::byte{0x21};
  encode_options opts;
  opts.chunk_size = 1000;
  opts.k = 4;
  opts.m = 2;
  if (mode == 2) {
    opts.delta_base = delta_reference{1, base};
    opts.version = 2;
  }
  const auto& want = mode == 2 ? data : base;
  const auto enc = encode(want, opts).value();
  if (mode == 2) REQUIRE(enc.man.delta_coded(2));
  std::vector<std::byte> file(want.size(), std::byte{0});
  bool fail_chunk3 = true;
  decoder::write_fn wr = [&](std::uint64_t off, std::span<const std::byte> b) -> status {
    if (off == enc.man.chunks[3].offset && fail_chunk3) {
      fail_chunk3 = false;
      return unavailable("disk full, once");
    }
    std::copy(b.begin(), b.end(), file.begin() + static_cast<std::ptrdiff_t>(off));
    return {};
  };
  auto dec = mode == 2 ? decoder::create(enc.man, wr, base) : decoder::create(enc.man, wr);
  REQUIRE(dec.ok());
  if (mode >= 1)
    dec->set_read_back([&](std::uint64_t off, std::span<std::byte> into) -> status {
      std::copy_n(file.begin() + static_cast<std::ptrdiff_t>(off), into.size(), into.begin());
      return {};
    });
  const std::size_t p0 = enc.man.chunks.size();
  REQUIRE(dec->add_chunk(0, enc.chunk(0)).ok());
  REQUIRE(dec->add_chunk(1, enc.chunk(1)).ok());
  REQUIRE(dec->add_chunk(p0, enc.chunk(p0)).ok());
  // The 4th chunk rebuilds 2 and 3: 2 is written, 3's write fails.
  REQUIRE(dec->add_chunk(p0 + 1, enc.chunk(p0 + 1)).code() == status_code::unavailable);
  REQUIRE(dec->has_chunk(2));
  REQUIRE_FALSE(dec->has_chunk(3));
  // Adding a held chunk again retries the rebuild, which now uses the rebuilt chunk 2.
  const status again = dec->add_chunk(0, enc.chunk(0));
  INFO(again.to_string());
  CHECK(again.ok());
  CHECK(dec->complete());
  CHECK(file == want);
}

TEST_CASE("decoder: parity inconsistent with the data is caught by the data digests") {
  const auto data = random_bytes(8000, 12);
  auto enc = make(data, 4, 2);
  // An origin that signs wrong parity: recompute the digests of altered parity chunks.
  for (std::size_t j = 0; j < enc.parity_chunks.size(); ++j) {
    enc.parity_chunks[j][5] ^= std::byte{1};
    enc.man.parity[j].digest = hash_chunk(enc.man.algo, enc.parity_chunks[j]);
  }
  enc.man.merkle_root = manifest_merkle_root(enc.man);
  REQUIRE(check_manifest(enc.man).ok());
  std::vector<std::byte> out(data.size(), std::byte{0});
  auto dec = decoder::create(enc.man, out).value();
  REQUIRE(dec.add_chunk(0, enc.chunk(0)).ok());
  REQUIRE(dec.add_chunk(1, enc.chunk(1)).ok());
  REQUIRE(dec.add_chunk(8, enc.chunk(8)).ok());
  auto st = dec.add_chunk(9, enc.chunk(9));
  REQUIRE(st.code() == status_code::data_loss);
  REQUIRE_THAT(st.message(), Catch::Contains("stripe 0"));
  REQUIRE(!dec.has_chunk(2));
  REQUIRE(dec.missing_chunks() == std::vector<std::size_t>{2, 3, 4, 5, 6, 7});  // stripe 0 needs all its data
  // The data chunks themselves still complete it.
  REQUIRE(dec.add_chunk(2, enc.chunk(2)).ok());
  REQUIRE(dec.add_chunk(3, enc.chunk(3)).ok());
  REQUIRE(dec.add_chunk(4, enc.chunk(4)).ok());
  REQUIRE(dec.add_chunk(5, enc.chunk(5)).ok());
  REQUIRE(dec.add_chunk(6, enc.chunk(6)).ok());
  REQUIRE(dec.add_chunk(7, enc.chunk(7)).ok());
  REQUIRE(dec.complete());
  REQUIRE(out == data);
}

TEST_CASE("decoder: create errors, empty checkpoint") {
  const auto data = random_bytes(5000, 13);
  const auto enc = make(data, 2, 1);
  std::vector<std::byte> small(10);
  REQUIRE(decoder::create(enc.man, small).status().code() == status_code::invalid_argument);
  auto bad = enc.man;
  bad.chunks[0].offset = 1;
  std::vector<std::byte> out(data.size());
  REQUIRE(decoder::create(bad, out).status().code() == status_code::invalid_argument);
  auto delta = enc.man;
  delta.version = 5;
  delta.delta_base = 4;
  delta.delta = delta_codec::xor_zstd;
  // Without its per-chunk wire table the manifest is inconsistent.
  REQUIRE(decoder::create(delta, out).status().code() == status_code::invalid_argument);
  // A consistent delta-coded manifest needs the base (delta_test.cpp decodes them).
  delta.delta_chunks.resize(delta.chunks.size());
  for (std::size_t i = 0; i < delta.chunks.size(); ++i)
    delta.delta_chunks[i] = {chunk_encoding::raw, delta.chunks[i].length, delta.chunks[i].digest};
  REQUIRE(check_manifest(delta).ok());
  REQUIRE(decoder::create(delta, out).status().code() == status_code::failed_precondition);
  REQUIRE(decoder::create(delta, [](std::uint64_t, std::span<const std::byte>) { return ok_status(); })
              .status()
              .code() == status_code::failed_precondition);
  REQUIRE(decoder::create(delta, out, std::span<const std::byte>{}).ok());
  // A base given to a plain manifest is ignored.
  REQUIRE(decoder::create(enc.man, out, data).ok());
  REQUIRE(decoder::create(enc.man, decoder::write_fn{}).status().code() == status_code::invalid_argument);

  std::vector<std::byte> none;
  const auto empty = make(none, 4, 2);
  auto dec = decoder::create(empty.man, std::span<std::byte>{}).value();
  REQUIRE(dec.complete());
  REQUIRE(dec.missing_chunks().empty());
}
