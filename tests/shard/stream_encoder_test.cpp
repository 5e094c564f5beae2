// Streaming encoding: for every write split (all at once, byte by byte, random pieces
// with empty ones) the sink receives exactly encode()'s chunks, each once, in stripe
// order (a stripe's parity before the next stripe's data), and finish() gives
// encode()'s manifest byte for byte once signed; tensors and delta coding likewise;
// a decoder fed the sink's chunks (with losses) rebuilds the bytes; error paths.
#include "dtrain/shard/stream_encoder.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include "common/test_bytes.h"
#include "dtrain/crypto/identity.h"
#include "dtrain/shard/decoder.h"
#include "dtrain/shard/encoder.h"
#include "dtrain/shard/manifest.h"

using namespace dtrain;
using namespace dtrain::shard;
using dtrain::test::random_bytes;

namespace {

constexpr std::uint64_t chunk = 1000;

crypto::identity origin_key() {
  std::vector<std::byte> seed(32, std::byte{0x5e});
  return crypto::identity::from_seed(seed).value();
}

std::vector<std::byte> signed_bytes(const manifest& man) {
  auto b = sign_manifest(man, origin_key());
  REQUIRE(b.ok());
  return std::move(*b);
}

// What the sink saw: the chunks by index and the order they came in.
struct recorder {
  std::vector<std::pair<std::size_t, std::vector<std::byte>>> calls;

  stream_encoder::chunk_sink sink() {
    return [this](std::size_t i, std::span<const std::byte> b) {
      calls.emplace_back(i, std::vector<std::byte>(b.begin(), b.end()));
      return status{};
    };
  }
};

enum class split { whole, bytewise, random };

// Feeds `data` in pieces; every write must succeed.
void feed(stream_encoder& enc, std::span<const std::byte> data, split how, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::size_t at = 0;
  while (at < data.size()) {
    std::size_t n = data.size() - at;
    if (how == split::bytewise) n = 1;
    if (how == split::random) n = std::min<std::size_t>(n, rng() % (3 * chunk));  // 0: an empty write
    REQUIRE(enc.write(data.subspan(at, n)).ok());
    at += n;
  }
  REQUIRE(enc.write({}).ok());
  REQUIRE(enc.bytes_written() == data.size());
}

// The order the sink must see: stripe by stripe, its data chunks then its parity.
std::vector<std::size_t> expected_order(const manifest& man) {
  std::vector<std::size_t> order;
  const std::size_t n = man.chunks.size();
  if (man.m == 0) {
    for (std::size_t i = 0; i < n; ++i) order.push_back(i);
    return order;
  }
  for (std::size_t s = 0; s * man.k < n; ++s) {
    for (std::size_t i = s * man.k; i < std::min<std::size_t>(n, (s + 1) * man.k); ++i) order.push_back(i);
    for (std::size_t j = 0; j < man.m; ++j) order.push_back(n + s * man.m + j);
  }
  return order;
}

// The sink got exactly encode()'s chunks, each once, in stripe order; the manifests match.
void require_same(const recorder& rec, const manifest& got, const encoded_checkpoint& want) {
  REQUIRE(got == want.man);
  REQUIRE(signed_bytes(got) == signed_bytes(want.man));
  const auto order = expected_order(want.man);
  REQUIRE(order.size() == want.man.total_chunks());
  REQUIRE(rec.calls.size() == order.size());
  for (std::size_t c = 0; c < order.size(); ++c) {
    CAPTURE(c);
    REQUIRE(rec.calls[c].first == order[c]);
    const auto w = want.chunk(order[c]);
    REQUIRE(rec.calls[c].second == std::vector<std::byte>(w.begin(), w.end()));
  }
}

// A decoder fed the sink's chunks, the first min(m, count) data chunks of every stripe
// lost (rebuilt from parity), writes the original bytes.
void require_round_trip(const recorder& rec, const manifest& man, std::span<const std::byte> data,
                        std::span<const std::byte> base = {}) {
  auto opened = open_manifest(signed_bytes(man), {});
  REQUIRE(opened.ok());
  std::vector<std::byte> out(data.size(), std::byte{0xcc});
  auto dec = man.delta == delta_codec::none ? decoder::create(*opened, out) : decoder::create(*opened, out, base);
  REQUIRE(dec.ok());
  const std::size_t n = man.chunks.size();
  for (const auto& [i, bytes] : rec.calls) {
    const bool lost = man.m > 0 && i < n && i % man.k < man.m;
    if (!lost) REQUIRE(dec->add_chunk(i, bytes).ok());
  }
  REQUIRE(dec->complete());
  REQUIRE(std::equal(out.begin(), out.end(), data.begin(), data.end()));
}

}  // namespace

TEST_CASE("stream_encoder: same chunks and manifest as encode() for any write split") {
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 999, 1000, 25000, 43210}));
  const auto [k, m] = GENERATE(values<std::pair<std::size_t, std::size_t>>({{1, 0}, {4, 0}, {4, 2}, {10, 4}, {3, 1}}));
  const auto algo = GENERATE(hash_algo::blake2b_256, hash_algo::xxh3_128);
  const auto how = GENERATE(split::whole, split::bytewise, split::random);
  if (how == split::bytewise && n > 1000) return;
  CAPTURE(n, k, m, static_cast<int>(algo), static_cast<int>(how));
  const auto data = random_bytes(n, n * 31 + k);
  encode_options opts;
  opts.chunk_size = chunk;
  opts.k = k;
  opts.m = m;
  opts.algo = algo;
  opts.version = 7;
  opts.created_unix = 1'700'000'000;
  auto want = encode(data, opts);
  REQUIRE(want.ok());

  recorder rec;
  auto enc = stream_encoder::create(n, opts, rec.sink());
  REQUIRE(enc.ok());
  REQUIRE(enc->total_size() == n);
  feed(*enc, data, how, n + m);
  auto got = enc->finish();
  REQUIRE(got.ok());
  require_same(rec, *got, *want);
  require_round_trip(rec, *got, data);
}

TEST_CASE("stream_encoder: tensors, as encode_tensors()") {
  const std::vector<tensor_desc> tensors = {
      make_tensor("embed", dtype::bf16, {64, 32}),  // 4096 bytes: big, cut every 1000
      make_tensor("ln.w", dtype::f32, {32}),        // small, packed
      make_tensor("empty", dtype::f32, {0}),        // no bytes, starts no chunk
      make_tensor("ln.b", dtype::f32, {32}),        // small, packed with ln.w
      make_tensor("head", dtype::f16, {300}),       // 600 bytes: big, own chunk
      tensor_desc{"tail", "u8", {7}, 7},            // small, its own short chunk
  };
  std::uint64_t total = 0;
  for (const auto& t : tensors) total += t.size;
  const auto data = random_bytes(total, 11);
  const auto [k, m] = GENERATE(values<std::pair<std::size_t, std::size_t>>({{1, 0}, {3, 2}, {4, 1}, {10, 4}}));
  const auto how = GENERATE(split::whole, split::bytewise, split::random);
  CAPTURE(k, m, static_cast<int>(how));
  encode_options opts;
  opts.chunk_size = chunk;
  opts.k = k;
  opts.m = m;
  auto want = encode_tensors(tensors, data, opts);
  REQUIRE(want.ok());
  REQUIRE(want->man.tensors.size() == tensors.size());

  recorder rec;
  auto enc = stream_encoder::create_tensors(tensors, opts, rec.sink());
  REQUIRE(enc.ok());
  REQUIRE(enc->total_size() == total);
  feed(*enc, data, how, k);
  auto got = enc->finish();
  REQUIRE(got.ok());
  require_same(rec, *got, *want);
  require_round_trip(rec, *got, data);
}

TEST_CASE("stream_encoder: delta coding, as encode() (wire bytes, wire digests, parity over wire lengths)") {
  // The new version: chunks 0-9 barely changed (delta-coded), 10-14 new (raw), then past
  // the base's end zeros (delta-coded: XOR with nothing) and random bytes (raw).
  const auto base = random_bytes(25000, 3);
  auto data = base;
  for (std::size_t i = 0; i < 10000; i += 97) data[i] ^= std::byte{0x10};
  const auto fresh = random_bytes(5000, 4);
  std::copy(fresh.begin(), fresh.end(), data.begin() + 10000);
  data.resize(28000, std::byte{0});
  const auto tail = random_bytes(2500, 5);
  data.insert(data.end(), tail.begin(), tail.end());

  const auto [k, m] = GENERATE(values<std::pair<std::size_t, std::size_t>>({{1, 0}, {4, 0}, {4, 2}, {10, 4}, {3, 1}}));
  const auto algo = GENERATE(hash_algo::blake2b_256, hash_algo::xxh3_128);
  const auto how = GENERATE(split::whole, split::random);
  CAPTURE(k, m, static_cast<int>(algo), static_cast<int>(how));
  encode_options opts;
  opts.chunk_size = chunk;
  opts.k = k;
  opts.m = m;
  opts.algo = algo;
  opts.version = 5;
  opts.delta_base = delta_reference{4, base};
  auto want = encode(data, opts);
  REQUIRE(want.ok());
  std::size_t coded = 0;
  for (std::size_t i = 0; i < want->man.chunks.size(); ++i) coded += want->man.delta_coded(i) ? 1 : 0;
  REQUIRE(coded > 0);                          // both encodings occur
  REQUIRE(coded < want->man.chunks.size());
  if (m > 0) {
    // Stripe lengths follow the wire lengths: some stripe is shorter than a plain chunk.
    bool short_stripe = false;
    for (const auto& p : want->man.parity) short_stripe = short_stripe || p.length < chunk;
    REQUIRE(short_stripe);
  }

  recorder rec;
  auto enc = stream_encoder::create(data.size(), opts, rec.sink());
  REQUIRE(enc.ok());
  feed(*enc, data, how, k + m);
  auto got = enc->finish();
  REQUIRE(got.ok());
  require_same(rec, *got, *want);
  require_round_trip(rec, *got, data, base);
}

TEST_CASE("stream_encoder: chunks leave at once, a stripe's parity before the next stripe") {
  const auto data = random_bytes(10 * chunk, 21);  // RS(4, 2): stripes of 4, 4 and 2 chunks
  encode_options opts;
  opts.chunk_size = chunk;
  opts.k = 4;
  opts.m = 2;
  recorder rec;
  auto enc = stream_encoder::create(data.size(), opts, rec.sink());
  REQUIRE(enc.ok());
  const auto indices = [&] {
    std::vector<std::size_t> v;
    for (const auto& c : rec.calls) v.push_back(c.first);
    return v;
  };
  const std::span<const std::byte> all(data);
  REQUIRE(enc->write(all.first(999)).ok());
  REQUIRE(rec.calls.empty());
  REQUIRE(enc->write(all.subspan(999, 1)).ok());
  REQUIRE(indices() == std::vector<std::size_t>{0});  // chunk 0 out as soon as it is whole
  REQUIRE(enc->write(all.subspan(1000, 3000)).ok());
  REQUIRE(indices() == std::vector<std::size_t>{0, 1, 2, 3, 10, 11});
  REQUIRE(enc->write(all.subspan(4000)).ok());
  REQUIRE(indices() == std::vector<std::size_t>{0, 1, 2, 3, 10, 11, 4, 5, 6, 7, 12, 13, 8, 9, 14, 15});
  REQUIRE(enc->finish().ok());
}

TEST_CASE("stream_encoder: without parity a chunk whole in one write goes out uncopied") {
  const auto data = random_bytes(2500, 22);
  encode_options opts;
  opts.chunk_size = chunk;
  std::vector<const std::byte*> seen;
  auto enc = stream_encoder::create(data.size(), opts, [&](std::size_t, std::span<const std::byte> b) {
    seen.push_back(b.data());
    return status{};
  });
  REQUIRE(enc.ok());
  REQUIRE(enc->write(std::span(data).first(2100)).ok());  // chunks 0 and 1 whole, 100 bytes of chunk 2
  REQUIRE(enc->write(std::span(data).subspan(2100)).ok());
  REQUIRE(seen.size() == 3);
  REQUIRE(seen[0] == data.data());
  REQUIRE(seen[1] == data.data() + 1000);
  REQUIRE(seen[2] != data.data() + 2000);  // split across writes: from the encoder's buffer
  REQUIRE(enc->finish().ok());
}

TEST_CASE("stream_encoder: errors stop the encoder") {
  const auto data = random_bytes(5000, 23);
  encode_options opts;
  opts.chunk_size = chunk;
  opts.k = 2;
  opts.m = 1;
  recorder rec;
  const std::span<const std::byte> all(data);

  SECTION("too many bytes: out_of_range, nothing more reaches the sink") {
    auto enc = stream_encoder::create(4500, opts, rec.sink());
    REQUIRE(enc.ok());
    REQUIRE(enc->write(all.first(2500)).ok());
    const std::size_t before = rec.calls.size();
    REQUIRE(before == 3);  // chunks 0, 1 and stripe 0's parity
    REQUIRE(enc->write(all.subspan(2500, 2001)).code() == status_code::out_of_range);
    REQUIRE(rec.calls.size() == before);  // checked before any byte was used
    REQUIRE(enc->write(all.subspan(2500, 1)).code() == status_code::failed_precondition);
    REQUIRE(enc->write({}).code() == status_code::failed_precondition);
    REQUIRE(enc->finish().status().code() == status_code::failed_precondition);
    REQUIRE(rec.calls.size() == before);
  }
  SECTION("too many bytes in the first write") {
    auto enc = stream_encoder::create(0, opts, rec.sink());
    REQUIRE(enc.ok());
    REQUIRE(enc->write(all.first(1)).code() == status_code::out_of_range);
    REQUIRE(rec.calls.empty());
  }
  SECTION("finish() early: failed_precondition saying how many bytes are missing") {
    auto enc = stream_encoder::create(5000, opts, rec.sink());
    REQUIRE(enc.ok());
    REQUIRE(enc->write(all.first(4200)).ok());
    auto fin = enc->finish();
    REQUIRE(fin.status().code() == status_code::failed_precondition);
    REQUIRE_THAT(fin.status().message(), Catch::Contains("800 bytes missing"));
    REQUIRE(enc->write(all.subspan(4200)).code() == status_code::failed_precondition);
    REQUIRE(enc->finish().status().code() == status_code::failed_precondition);
  }
  SECTION("finish() twice, write() after finish()") {
    auto enc = stream_encoder::create(5000, opts, rec.sink());
    REQUIRE(enc.ok());
    REQUIRE(enc->write(all).ok());
    REQUIRE(enc->finish().ok());
    REQUIRE(enc->finish().status().code() == status_code::failed_precondition);
    REQUIRE(enc->write({}).code() == status_code::failed_precondition);
  }
  SECTION("a sink error is returned unchanged and stops the encoder") {
    const std::size_t fail_at = GENERATE(0u, 1u, 5u);  // a data chunk, a data chunk, a parity chunk
    CAPTURE(fail_at);
    std::vector<std::size_t> got;
    auto enc = stream_encoder::create(5000, opts, [&](std::size_t i, std::span<const std::byte>) {
      got.push_back(i);
      return i == fail_at ? status(status_code::unavailable, "disk full at " + std::to_string(i)) : status{};
    });
    REQUIRE(enc.ok());
    const status st = enc->write(all);
    REQUIRE(st.code() == status_code::unavailable);
    REQUIRE(st.message() == "disk full at " + std::to_string(fail_at));
    REQUIRE(got.back() == fail_at);  // nothing after the failing call
    const std::size_t calls = got.size();
    REQUIRE(enc->write({}).code() == status_code::failed_precondition);
    REQUIRE(enc->finish().status().code() == status_code::failed_precondition);
    REQUIRE(got.size() == calls);
  }
  SECTION("a sink calling back into the encoder is refused") {
    stream_encoder* self = nullptr;
    status inner;
    auto enc = stream_encoder::create(5000, opts, [&](std::size_t, std::span<const std::byte>) {
      if (self != nullptr && inner.ok()) inner = self->write({});
      return status{};
    });
    REQUIRE(enc.ok());
    self = &*enc;
    REQUIRE(enc->write(all).ok());
    REQUIRE(inner.code() == status_code::failed_precondition);
    REQUIRE(enc->finish().ok());
  }
  SECTION("moved from") {
    auto enc = stream_encoder::create(5000, opts, rec.sink());
    REQUIRE(enc.ok());
    REQUIRE(enc->write(all.first(1500)).ok());
    stream_encoder moved = std::move(*enc);
    REQUIRE(enc->write({}).code() == status_code::failed_precondition);  // NOLINT(bugprone-use-after-move)
    REQUIRE(moved.write(all.subspan(1500)).ok());
    auto fin = moved.finish();
    REQUIRE(fin.ok());
    auto want = encode(data, opts);
    REQUIRE(want.ok());
    REQUIRE(*fin == want->man);
  }
}

TEST_CASE("stream_encoder: bad options fail as encode() does") {
  const auto data = random_bytes(100, 24);
  const auto base = random_bytes(100, 25);
  const auto ok_sink = [](std::size_t, std::span<const std::byte>) { return status{}; };
  const auto both_invalid = [&](const encode_options& o) {
    REQUIRE(encode(data, o).status().code() == status_code::invalid_argument);
    REQUIRE(stream_encoder::create(data.size(), o, ok_sink).status().code() == status_code::invalid_argument);
  };
  encode_options opts;
  opts.chunk_size = 10;
  SECTION("chunk size 0") {
    opts.chunk_size = 0;
    both_invalid(opts);
  }
  SECTION("erasure parameters") {
    opts.k = 0;
    opts.m = 2;
    both_invalid(opts);
    opts.k = 200;
    opts.m = 56;
    both_invalid(opts);
  }
  SECTION("hash algorithm") {
    opts.algo = static_cast<hash_algo>(9);
    both_invalid(opts);
  }
  SECTION("delta base version and zstd level") {
    opts.version = 3;
    opts.delta_base = delta_reference{0, base};
    both_invalid(opts);
    opts.delta_base = delta_reference{3, base};
    both_invalid(opts);
    opts.delta_base = delta_reference{2, base};
    opts.zstd_level = 1000;
    both_invalid(opts);
  }
  SECTION("tensors the manifest cannot hold, sizes overflowing") {
    const std::vector<tensor_desc> bad_name = {{"\xff", "u8", {100}, 100}};
    REQUIRE(encode_tensors(bad_name, data, opts).status().code() == status_code::invalid_argument);
    REQUIRE(stream_encoder::create_tensors(bad_name, opts, ok_sink).status().code() == status_code::invalid_argument);
    const std::vector<tensor_desc> bad_dtype = {{"a", "\x01", {100}, 100}};
    REQUIRE(encode_tensors(bad_dtype, data, opts).status().code() == status_code::invalid_argument);
    REQUIRE(stream_encoder::create_tensors(bad_dtype, opts, ok_sink).status().code() ==
            status_code::invalid_argument);
    const std::vector<tensor_desc> huge = {{"a", "u8", {1}, ~std::uint64_t{0}}, {"b", "u8", {1}, 2}};
    REQUIRE(stream_encoder::create_tensors(huge, opts, ok_sink).status().code() == status_code::invalid_argument);
  }
  SECTION("no sink") {
    REQUIRE(stream_encoder::create(data.size(), opts, nullptr).status().code() == status_code::invalid_argument);
  }
  SECTION("0 bytes are accepted, as encode() accepts them") {
    opts.k = 4;
    opts.m = 2;
    auto want = encode({}, opts);
    REQUIRE(want.ok());
    auto enc = stream_encoder::create(0, opts, ok_sink);
    REQUIRE(enc.ok());
    auto got = enc->finish();
    REQUIRE(got.ok());
    REQUIRE(signed_bytes(*got) == signed_bytes(want->man));
  }
}
