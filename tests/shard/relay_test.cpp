// The relay against real nginx servers on 127.0.0.1: origin dir served by nginx A, the
// relay mirroring A into a dir served by nginx B. B equals A byte for byte; forged,
// tampered and replayed manifests are rejected with B unchanged; without parity a
// corrupted chunk is detected, named and never served by B; with parity chunks upstream
// fails to deliver (bad bytes, 404) are rebuilt, delta-coded versions included, unless a
// stripe lost more than m or the origin signed inconsistent parity; retention; a dead
// upstream; a relay of a relay; run() until stopped.
#include "dtrain/shard/relay.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "common/test_bytes.h"
#include "dtrain/shard/chunk_hash.h"
#include "dtrain/shard/encoder.h"
#include "dtrain/shard/layout.h"
#include "dtrain/shard/manifest.h"
#include "dtrain/shard/origin.h"
#include "shard/nginx_util.h"

using namespace dtrain;
using namespace dtrain::shard;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using dtrain::test::nginx_server;
using dtrain::test::temp_dir;

namespace {

crypto::identity test_key(std::uint8_t seed) {
  std::vector<std::byte> s(32, std::byte{seed});
  return crypto::identity::from_seed(s).value();
}

std::vector<std::byte> content_of(std::uint64_t version) {
  return dtrain::test::random_bytes(20'000 + version * 1'013, version);
}

// RS(4, 2) over 2 KiB chunks unless told otherwise (m = 0: no parity).
publisher_options origin_options(const fs::path& root, std::uint8_t key = 1, std::size_t keep = 5,
                                 std::size_t m = 2) {
  encode_options enc;
  enc.chunk_size = 2048;
  enc.k = m > 0 ? 4 : 0;
  enc.m = m;
  enc.created_unix = 1700000000;
  return publisher_options{root, test_key(key), keep, enc};
}

// Every regular file under dir (relative path -> bytes), dot entries excluded unless asked.
std::map<std::string, std::string> tree(const fs::path& dir, bool with_dot = false) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    const std::string rel = fs::relative(it->path(), dir).string();
    if (!with_dot && rel.rfind(".", 0) == 0) continue;
    if (!it->is_regular_file()) continue;
    std::ifstream in(it->path(), std::ios::binary);
    out.emplace(rel, std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
  }
  return out;
}

void flip_byte(const fs::path& p, std::size_t at) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(at));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(at));
  f.write(&c, 1);
}

nginx_server serve(const fs::path& root) {
  fs::create_directories(root);
  auto s = nginx_server::start(root);
  INFO(s.status().to_string());
  REQUIRE(s.ok());
  return std::move(s).value();
}

publisher make_publisher(const fs::path& root, std::size_t m, bool delta) {
  publisher_options o = origin_options(root, 1, 5, m);
  o.delta_from_previous = delta;
  return publisher::create(std::move(o)).value();
}

struct setup {
  explicit setup(std::size_t m = 2, bool delta = false) : pub(make_publisher(a, m, delta)) {}

  temp_dir dir;
  fs::path a = dir.path() / "origin";
  fs::path b = dir.path() / "relay";
  nginx_server nginx_a = serve(a);
  nginx_server nginx_b = serve(b);
  publisher pub;

  relay_options relay_opts(std::size_t keep = 5) const {
    relay_options o;
    o.upstream_url = nginx_a.url();
    o.root = b;
    o.trusted_origins = {test_key(1).id()};
    o.keep_versions = keep;
    o.parallel = 4;
    o.timeout = 10s;
    return o;
  }
};

std::vector<std::byte> file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  const std::string str((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto* b = reinterpret_cast<const std::byte*>(str.data());
  return {b, b + str.size()};
}

manifest manifest_of(const fs::path& root, std::uint64_t version) {
  return open_manifest(file_bytes(root / layout_manifest_path(version)), {}).value();
}

// Ways upstream fails to deliver a chunk: bad bytes of three kinds, or no file (404).
enum class damage { flip, longer, truncate, remove };

void spoil(const fs::path& p, damage d) {
  switch (d) {
    case damage::flip: flip_byte(p, fs::file_size(p) / 2); break;
    case damage::longer: std::ofstream(p, std::ios::app | std::ios::binary) << "x"; break;
    case damage::truncate: fs::resize_file(p, fs::file_size(p) - 1); break;
    case damage::remove: fs::remove(p); break;
  }
}

http_result fetch(const std::string& url) {
  auto f = http_fetcher::create(1).value();
  http_request r;
  r.url = url;
  r.timeout = 10s;
  return f.get(r).value();
}

}  // namespace

TEST_CASE("relay: mirrors the origin byte for byte, served by its own nginx") {
  setup s;
  auto rel = relay::create(s.relay_opts()).value();

  auto none = rel.sync_once();  // nothing published yet: upstream latest is 404
  CHECK(none.status().code() == status_code::unavailable);
  CHECK(tree(s.b).empty());

  REQUIRE(s.pub.publish(content_of(1)).value() == 1);
  auto r1 = rel.sync_once();
  INFO(r1.status().to_string());
  REQUIRE(r1.ok());
  CHECK(r1->updated);
  CHECK(r1->upstream_version == 1);
  CHECK(r1->version == 1);
  CHECK(r1->bad_chunks == 0);
  CHECK(r1->retries == 0);
  CHECK(r1->chunks_fetched > 6);
  CHECK(tree(s.b, true) == tree(s.a, true));  // no temp leftovers either
  CHECK(rel.latest() == 1);

  auto again = rel.sync_once().value();  // nothing new
  CHECK_FALSE(again.updated);
  CHECK(again.chunks_fetched == 0);

  REQUIRE(s.pub.publish(content_of(2)).value() == 2);
  REQUIRE(rel.sync_once().value().updated);
  CHECK(tree(s.b, true) == tree(s.a, true));

  // Served over HTTP by nginx B exactly as A serves it.
  for (const std::string& rel_path : {std::string("latest"), layout_manifest_path(2), layout_chunk_path(2, 3)}) {
    CAPTURE(rel_path);
    auto from_a = fetch(layout_url(s.nginx_a.url(), rel_path));
    auto from_b = fetch(layout_url(s.nginx_b.url(), rel_path));
    CHECK(from_a.st.ok());
    CHECK(from_b.st.ok());
    CHECK(from_a.body == from_b.body);
  }

  // A relay reopened on the same root picks up where it was.
  auto rel2 = relay::create(s.relay_opts()).value();
  CHECK(rel2.latest() == 2);
}

TEST_CASE("relay: forged, tampered and replayed manifests are rejected; the relay keeps its version") {
  setup s;
  auto rel = relay::create(s.relay_opts()).value();
  REQUIRE(s.pub.publish(content_of(1)).ok());
  REQUIRE(rel.sync_once().ok());
  const auto before = tree(s.b, true);

  SECTION("forged: signed by an untrusted key") {
    auto forger = publisher::create(origin_options(s.a, 2)).value();
    REQUIRE(forger.publish(content_of(2)).value() == 2);
    auto r = rel.sync_once();
    CHECK(r.status().code() == status_code::permission_denied);
  }
  SECTION("tampered: one byte flipped in the origin's manifest file") {
    REQUIRE(s.pub.publish(content_of(2)).value() == 2);
    const std::size_t at = GENERATE(0u, 20u, 100u, 500u);
    CAPTURE(at);
    flip_byte(s.a / "v2" / "manifest", at);
    auto r = rel.sync_once();
    INFO(r.status().to_string());
    CHECK((r.status().code() == status_code::permission_denied || r.status().code() == status_code::data_loss));
  }
  SECTION("replayed: v1's signed manifest served as v2") {
    fs::copy(s.a / "v1", s.a / "v2", fs::copy_options::recursive);
    REQUIRE(write_latest(s.a, 2).ok());
    auto r = rel.sync_once();
    CHECK(r.status().code() == status_code::data_loss);
    CHECK(r.status().message().find("version 1") != std::string::npos);
  }
  CHECK(rel.latest() == 1);
  CHECK(tree(s.b, true) == before);  // nothing written, no temp dir left
  CHECK(fetch(layout_url(s.nginx_b.url(), layout_manifest_path(2))).http_status == 404);
}

TEST_CASE("relay: without parity (m = 0) a corrupted chunk upstream is detected, named and never served") {
  setup s(0);
  auto opts = s.relay_opts();
  opts.chunk_attempts = 2;
  auto rel = relay::create(opts).value();
  REQUIRE(s.pub.publish(content_of(1)).ok());
  REQUIRE(rel.sync_once().ok());
  REQUIRE(s.pub.publish(content_of(2)).ok());
  const fs::path bad = s.a / "v2" / "chunk" / "3";
  const auto good_bytes = tree(s.a).at("v2/chunk/3");

  SECTION("a flipped byte") { flip_byte(bad, 100); }
  SECTION("a longer chunk") { std::ofstream(bad, std::ios::app | std::ios::binary) << "x"; }
  SECTION("a truncated chunk") { fs::resize_file(bad, 10); }
  SECTION("a missing chunk") { fs::remove(bad); }

  REQUIRE(manifest_of(s.a, 2).m == 0);

  auto r = rel.sync_once();
  INFO(r.status().to_string());
  CHECK_FALSE(r.ok());
  CHECK(r.status().message().find("chunk 3 of v2") != std::string::npos);
  CHECK(r.status().message().find("stripe") == std::string::npos);  // no rebuild attempted
  if (fs::exists(bad)) CHECK(r.status().code() == status_code::data_loss);
  CHECK(rel.latest() == 1);
  CHECK(fetch(layout_url(s.nginx_b.url(), layout_chunk_path(2, 3))).http_status == 404);
  CHECK(fetch(layout_url(s.nginx_b.url(), "latest")).body == std::vector<std::byte>{std::byte{'1'}, std::byte{'\n'}});
  CHECK(tree(s.b, true).count("v2/manifest") == 0);

  // Once the origin serves the right bytes again the relay catches up.
  std::ofstream(bad, std::ios::binary | std::ios::trunc) << good_bytes;
  auto ok = rel.sync_once();
  INFO(ok.status().to_string());
  REQUIRE(ok.ok());
  CHECK(ok->version == 2);
  CHECK(tree(s.b, true) == tree(s.a, true));
}

// v2 = content_of(2) under RS(4, 2), 2 KiB chunks: 22,026 bytes in 11 data chunks (the
// last one 1,546 bytes), stripes {0-3}, {4-7} and the short {8-10}; parity 11-16
// (stripe s's parity j at 11 + 2s + j).
TEST_CASE("relay: with parity a chunk upstream fails to deliver is rebuilt, verified and served") {
  setup s;
  auto opts = s.relay_opts();
  opts.chunk_attempts = 2;
  auto rel = relay::create(opts).value();
  REQUIRE(s.pub.publish(content_of(1)).ok());
  REQUIRE(rel.sync_once().ok());
  REQUIRE(s.pub.publish(content_of(2)).ok());
  const manifest man = manifest_of(s.a, 2);
  REQUIRE(man.total_chunks() == 17);
  REQUIRE(man.chunk_length(10) == 1546);  // zero-padded to 2048 in its stripe

  // A full data chunk, the short last data chunk of the short stripe, a parity chunk of
  // stripe 0 and one of the short stripe.
  const std::size_t idx = GENERATE(3u, 10u, 11u, 16u);
  const auto how = GENERATE(damage::flip, damage::longer, damage::truncate, damage::remove);
  CAPTURE(idx, static_cast<int>(how));
  const std::string rel_path = layout_chunk_path(2, idx);
  const auto good = file_bytes(s.a / rel_path);
  spoil(s.a / rel_path, how);

  auto r = rel.sync_once();
  INFO(r.status().to_string());
  REQUIRE(r.ok());
  CHECK(r->updated);
  CHECK(r->version == 2);
  CHECK(r->chunks_rebuilt == 1);
  CHECK(r->chunks_fetched == 16);
  if (how == damage::remove) {
    CHECK(r->bad_chunks == 0);  // a 404 is a transfer error, not a bad chunk
  } else {
    CHECK(r->bad_chunks >= 1);
  }
  CHECK(r->retries >= 1);  // chunk_attempts were used before rebuilding
  CHECK(file_bytes(s.b / rel_path) == good);
  CHECK(fetch(layout_url(s.nginx_b.url(), rel_path)).body == good);  // clients get good bytes

  // Apart from the chunk the origin spoiled, the relay equals the origin byte for byte.
  fs::remove(s.a / rel_path);
  std::ofstream(s.a / rel_path, std::ios::binary)
      .write(reinterpret_cast<const char*>(good.data()), static_cast<std::streamsize>(good.size()));
  CHECK(tree(s.b, true) == tree(s.a, true));
}

TEST_CASE("relay: up to m lost chunks in every stripe, data and parity together, are rebuilt") {
  setup s;
  auto opts = s.relay_opts();
  opts.chunk_attempts = 1;
  auto rel = relay::create(opts).value();
  REQUIRE(s.pub.publish(content_of(2)).ok());
  const auto origin = tree(s.a, true);
  // Stripe 0: a data chunk and a parity chunk (reconstruct, then encode); stripe 1: two
  // data chunks; the short stripe 2: its short data chunk and a parity chunk.
  const std::map<std::size_t, damage> lost{{1, damage::flip},    {12, damage::remove}, {4, damage::truncate},
                                           {7, damage::longer},  {10, damage::flip},   {15, damage::remove}};
  for (const auto& [i, how] : lost) spoil(s.a / layout_chunk_path(1, i), how);

  auto r = rel.sync_once();
  INFO(r.status().to_string());
  REQUIRE(r.ok());
  CHECK(r->chunks_rebuilt == 6);
  CHECK(r->chunks_fetched == 11);
  CHECK(r->bad_chunks == 4);
  CHECK(tree(s.b, true) == origin);
}

TEST_CASE("relay: a stripe that lost more than m chunks fails the sync; nothing is published") {
  setup s;
  auto opts = s.relay_opts();
  opts.chunk_attempts = 2;
  auto rel = relay::create(opts).value();
  REQUIRE(s.pub.publish(content_of(1)).ok());
  REQUIRE(rel.sync_once().ok());
  const auto before = tree(s.b, true);
  REQUIRE(s.pub.publish(content_of(2)).ok());

  status_code want = status_code::data_loss;
  SECTION("three bad chunks of stripe 0") {
    for (std::size_t i : {0u, 2u, 12u}) spoil(s.a / layout_chunk_path(2, i), damage::flip);
  }
  SECTION("two bad chunks and a missing one") {
    spoil(s.a / layout_chunk_path(2, 0), damage::remove);
    spoil(s.a / layout_chunk_path(2, 11), damage::flip);
    spoil(s.a / layout_chunk_path(2, 3), damage::longer);
  }
  SECTION("three missing chunks: the transfer's error, a later sync may succeed") {
    for (std::size_t i : {1u, 11u, 12u}) spoil(s.a / layout_chunk_path(2, i), damage::remove);
    want = status_code::unavailable;
  }
  SECTION("the whole short stripe but one chunk") {
    for (std::size_t i : {8u, 9u, 15u}) spoil(s.a / layout_chunk_path(2, i), damage::truncate);
  }

  auto r = rel.sync_once();
  INFO(r.status().to_string());
  CHECK(r.status().code() == want);
  CHECK(r.status().message().find("of v2") != std::string::npos);
  CHECK(r.status().message().find("cannot be rebuilt") != std::string::npos);
  CHECK(rel.latest() == 1);
  CHECK(tree(s.b, true) == before);  // no v2, no temp directory, latest unchanged
  CHECK(fetch(layout_url(s.nginx_b.url(), layout_manifest_path(2))).http_status == 404);
}

TEST_CASE("relay: parity the origin signed inconsistent with its data fails the rebuild") {
  setup s;
  auto opts = s.relay_opts();
  opts.chunk_attempts = 1;
  auto rel = relay::create(opts).value();
  REQUIRE(s.pub.publish(content_of(1)).ok());
  REQUIRE(rel.sync_once().ok());
  const auto before = tree(s.b, true);

  // v2 by hand: parity 0 of stripe 0 (chunk 11) altered, its digest and the Merkle root
  // recomputed and signed, so every chunk passes its own check.
  const auto bytes = content_of(2);
  encode_options enc = origin_options(s.a).encoding;
  enc.version = 2;
  auto e = encode(bytes, enc).value();
  e.parity_chunks[0][7] ^= std::byte{1};
  e.man.parity[0].digest = hash_chunk(e.man.algo, e.parity_chunks[0]);
  e.man.merkle_root = manifest_merkle_root(e.man);
  const auto signed_bytes = sign_manifest(e.man, test_key(1)).value();
  {
    auto w = version_writer::begin(s.a, 2).value();
    for (std::size_t i = 0; i < e.man.total_chunks(); ++i) REQUIRE(w.write_chunk(i, e.chunk(i)).ok());
    REQUIRE(w.write_manifest(signed_bytes).ok());
    REQUIRE(w.commit().ok());
  }
  REQUIRE(write_latest(s.a, 2).ok());

  std::size_t spoiled = 0;
  SECTION("a data chunk rebuilt through the bad parity") { spoiled = 0; }
  SECTION("the bad parity chunk itself, encoded again from the data") { spoiled = 11; }
  spoil(s.a / layout_chunk_path(2, spoiled), damage::remove);

  auto r = rel.sync_once();
  INFO(r.status().to_string());
  CHECK(r.status().code() == status_code::data_loss);
  CHECK(r.status().message().find("chunk " + std::to_string(spoiled) + " of v2") != std::string::npos);
  CHECK(r.status().message().find("inconsistent") != std::string::npos);
  CHECK(rel.latest() == 1);
  CHECK(tree(s.b, true) == before);
}

TEST_CASE("relay: a delta-coded version rebuilds its wire chunks from parity without the base") {
  setup s(2, /*delta=*/true);
  auto opts = s.relay_opts();
  opts.chunk_attempts = 1;
  auto rel = relay::create(opts).value();
  auto v1 = content_of(1);
  REQUIRE(s.pub.publish(v1).ok());
  REQUIRE(rel.sync_once().ok());
  // v2: a few bytes moved in every chunk (travels as a small zstd frame), chunk 3 all new
  // (travels raw): wire lengths differ widely inside a stripe.
  auto v2 = v1;
  for (std::size_t i = 0; i < v2.size(); i += 700) v2[i] ^= std::byte{0x10};
  const auto fresh = dtrain::test::random_bytes(2048, 99);
  std::copy(fresh.begin(), fresh.end(), v2.begin() + 3 * 2048);
  REQUIRE(s.pub.publish(v2).value() == 2);
  const manifest man = manifest_of(s.a, 2);
  REQUIRE(man.delta == delta_codec::xor_zstd);
  REQUIRE(man.delta_coded(1));
  REQUIRE_FALSE(man.delta_coded(3));
  REQUIRE(man.chunk_length(1) < man.chunks[1].length);
  const auto origin = tree(s.a, true);

  // A delta-coded chunk (wire bytes far shorter than the stripe), a parity chunk of the
  // same stripe, and a delta-coded chunk of stripe 1.
  spoil(s.a / layout_chunk_path(2, 1), damage::flip);
  spoil(s.a / layout_chunk_path(2, 12), damage::remove);
  spoil(s.a / layout_chunk_path(2, 5), damage::truncate);

  auto r = rel.sync_once();
  INFO(r.status().to_string());
  REQUIRE(r.ok());
  CHECK(r->version == 2);
  CHECK(r->chunks_rebuilt == 3);
  CHECK(tree(s.b, true).at("v2/chunk/1") == origin.at("v2/chunk/1"));
  CHECK(tree(s.b, true) == origin);
}

TEST_CASE("relay: retention, dead upstream, relay of a relay, run()") {
  setup s;

  SECTION("retention on the relay") {
    auto rel = relay::create(s.relay_opts(2)).value();
    for (std::uint64_t v = 1; v <= 5; ++v) {
      REQUIRE(s.pub.publish(content_of(v)).ok());
      auto r = rel.sync_once();
      REQUIRE(r.ok());
      if (v == 3) CHECK(r->pruned == std::vector<std::uint64_t>{1});
    }
    CHECK(list_versions(s.b).value() == std::vector<std::uint64_t>{4, 5});
    CHECK(read_latest(s.b).value() == 5);
  }
  SECTION("the relay skips to upstream's latest and never goes backwards") {
    auto rel = relay::create(s.relay_opts()).value();
    for (std::uint64_t v = 1; v <= 3; ++v) REQUIRE(s.pub.publish(content_of(v)).ok());
    CHECK(rel.sync_once().value().version == 3);
    CHECK(list_versions(s.b).value() == std::vector<std::uint64_t>{3});
    REQUIRE(write_latest(s.a, 2).ok());
    auto r = rel.sync_once().value();
    CHECK_FALSE(r.updated);
    CHECK(r.upstream_version == 2);
    CHECK(r.version == 3);
  }
  SECTION("a dead upstream: unavailable, nothing written") {
    auto rel = relay::create(s.relay_opts()).value();
    s.nginx_a.stop();
    auto r = rel.sync_once();
    CHECK(r.status().code() == status_code::unavailable);
    CHECK(tree(s.b, true).empty());
  }
  SECTION("a relay of a relay") {
    auto rel = relay::create(s.relay_opts()).value();
    REQUIRE(s.pub.publish(content_of(1)).ok());
    REQUIRE(rel.sync_once().ok());
    relay_options o2 = s.relay_opts();
    o2.upstream_url = s.nginx_b.url();
    o2.root = s.dir.path() / "relay2";
    auto rel2 = relay::create(o2).value();
    REQUIRE(rel2.sync_once().ok());
    CHECK(tree(o2.root, true) == tree(s.a, true));
  }
  SECTION("run() mirrors new versions until stopped") {
    std::atomic<int> syncs{0};
    relay_options o = s.relay_opts();
    o.on_sync = [&](const result<relay_sync_report>&) { syncs.fetch_add(1); };
    auto rel = relay::create(o).value();
    status run_status = internal_error("not run");
    std::jthread t([&](std::stop_token st) { run_status = rel.run(st, 20ms); });
    for (std::uint64_t v = 1; v <= 3; ++v) {
      REQUIRE(s.pub.publish(content_of(v)).ok());
      std::uint64_t seen = 0;
      for (int i = 0; i < 1000 && seen != v; ++i) {
        std::this_thread::sleep_for(10ms);
        seen = read_latest(s.b).value_or(0);
      }
      CHECK(seen == v);
    }
    t.request_stop();
    t.join();
    CHECK(run_status.ok());
    CHECK(syncs.load() > 0);
    CHECK(tree(s.b, true) == tree(s.a, true));
  }
}
