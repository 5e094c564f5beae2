// The multi-relay client against real nginx relays on 127.0.0.1: a plain fetch (whole
// chunks and ranges), a relay serving corrupted chunks (detected, fetched elsewhere, the
// relay reported), a dead relay (rebuilt from parity, no waiting on timeouts), forged and
// tampered manifests, a lying `latest`, a truncated download resumed, and the stable
// marker (written only on success; the previous one stays when a fetch fails).
#include "dtrain/shard/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
#include <optional>

#include "common/test_bytes.h"
#include "dtrain/shard/encoder.h"
#include "dtrain/shard/layout.h"
#include "dtrain/shard/manifest.h"
#include "dtrain/shard/origin.h"
#include "dtrain/shard/resume.h"
#include "common/test_bytes.h"
#include "shard/nginx_util.h"

using namespace dtrain;
using namespace dtrain::shard;
namespace fs = std::filesystem;
using dtrain::test::nginx_server;
using dtrain::test::read_bytes;
using dtrain::test::temp_dir;

namespace {


std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
}

void flip_byte(const fs::path& p, std::size_t at) {
  std::fstream f(p, std::ios::binary | std::ios::in | std::ios::out);
  REQUIRE(f);
  f.seekg(static_cast<std::streamoff>(at));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(at));
  f.put(static_cast<char>(c ^ 0x5a));
}

crypto::identity test_key(std::uint8_t seed) {
  std::vector<std::byte> s(32, std::byte{seed});
  return crypto::identity::from_seed(s).value();
}

// An origin directory written by the publisher, and relays serving copies of it.
struct world {
  temp_dir tmp;
  crypto::identity key = test_key(1);
  std::vector<std::byte> data;
  fs::path origin;
  std::optional<publisher> pub;
  std::vector<nginx_server> servers;
  std::vector<fs::path> relay_roots;

  world(std::size_t bytes, std::size_t k, std::size_t m, std::uint64_t chunk, const crypto::identity& signer) {
    origin = tmp.path() / "origin";
    encode_options enc;
    enc.chunk_size = chunk;
    enc.k = k;
    enc.m = m;
    enc.created_unix = 1700000000;
    auto p = publisher::create(publisher_options{origin, signer, 5, enc});
    REQUIRE(p.ok());
    pub.emplace(std::move(p).value());
    data = dtrain::test::random_bytes(bytes, 99);
    auto v = pub->publish(data);
    REQUIRE(v.ok());
    REQUIRE(*v == 1);
  }
  world(std::size_t bytes, std::size_t k, std::size_t m, std::uint64_t chunk) : world(bytes, k, m, chunk, test_key(1)) {}

  /// Copies the origin dir to relay `name` (not served yet).
  fs::path copy_relay(const std::string& name) {
    const fs::path dst = tmp.path() / name;
    fs::remove_all(dst);
    fs::copy(origin, dst, fs::copy_options::recursive);
    relay_roots.push_back(dst);
    return dst;
  }
  /// Starts nginx on `root`; returns its URL.
  std::string serve(const fs::path& root) {
    auto s = nginx_server::start(root);
    REQUIRE(s.ok());
    servers.push_back(std::move(s).value());
    return servers.back().url();
  }

  fetch_options options(std::vector<std::string> relays) const {
    fetch_options o;
    o.relays = std::move(relays);
    o.trusted_origins = {key.id()};
    o.out_dir = tmp.path() / "out";
    o.request_timeout = std::chrono::milliseconds(600000);  // never waited on: a hang fails by ctest's timeout
    return o;
  }
  fs::path out() const { return tmp.path() / "out"; }
  std::size_t data_chunks() const { return (data.size() + 999) / 1000; }

  /// Writes version v of `bytes` into `root`, delta-coded against `base` (version v - 1),
  /// in 1000-byte chunks with RS(k, m), signed with `key`, and points `latest` at it.
  manifest publish_delta(const fs::path& root, std::uint64_t v, const std::vector<std::byte>& bytes,
                         const std::vector<std::byte>& base, std::size_t k, std::size_t m) const {
    encode_options enc;
    enc.chunk_size = 1000;
    enc.k = k;
    enc.m = m;
    enc.version = v;
    enc.created_unix = 1700000001;
    enc.delta_base = delta_reference{v - 1, base};
    auto e = encode(bytes, enc);
    REQUIRE(e.ok());
    REQUIRE(e->man.delta != delta_codec::none);
    auto signed_bytes = sign_manifest(e->man, key);
    REQUIRE(signed_bytes.ok());
    auto vw = version_writer::begin(root, v);
    REQUIRE(vw.ok());
    for (std::size_t i = 0; i < e->man.total_chunks(); ++i) REQUIRE(vw->write_chunk(i, e->chunk(i)).ok());
    REQUIRE(vw->write_manifest(*signed_bytes).ok());
    REQUIRE(vw->commit().ok());
    REQUIRE(write_latest(root, v).ok());
    return e->man;
  }
};

// A listening socket that never accepts: connections complete in the kernel's backlog,
// requests are sent, no byte ever comes back. Closed on destruction.
struct silent_relay {
  int fd = -1;
  std::string url;
  silent_relay() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 128) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  }
  silent_relay(const silent_relay&) = delete;
  silent_relay& operator=(const silent_relay&) = delete;
  ~silent_relay() {
    if (fd >= 0) ::close(fd);
  }
};

void check_output(const world& w, std::uint64_t version, const std::vector<std::byte>& want) {
  const fs::path dir = w.out() / ("v" + std::to_string(version));
  auto got = read_bytes(dir / "checkpoint");
  REQUIRE(got);
  CHECK(*got == want);
  CHECK(read_bytes(dir / "manifest").has_value());
  CHECK_FALSE(fs::exists(w.out() / ("v" + std::to_string(version) + ".partial")));
  CHECK(read_text(w.out() / "stable") == std::to_string(version) + "\n");
}

}  // namespace

TEST_CASE("client: fetches from two relays, whole chunks and ranges") {
  const std::uint64_t split = GENERATE(std::uint64_t{1} << 20, std::uint64_t{300});
  CAPTURE(split);
  world w(25000, 4, 2, 1000);
  const auto a = w.serve(w.copy_relay("relay-a"));
  const auto b = w.serve(w.copy_relay("relay-b"));
  auto o = w.options({a, b});
  o.split_bytes = split;
  auto lv = latest_version(o);
  REQUIRE(lv.ok());
  CHECK(*lv == 1);
  auto r = fetch(o);
  INFO((r.ok() ? std::string("ok") : r.status().to_string()));
  REQUIRE(r.ok());
  CHECK(r->version == 1);
  CHECK(r->bad_chunks.empty());
  CHECK(r->chunks_from_parity == 0);
  CHECK_FALSE(r->resumed);
  REQUIRE(r->relays.size() == 2);
  CHECK(r->relays[0].requests > 0);  // every relay is tried
  CHECK(r->relays[1].requests > 0);
  CHECK(r->bytes_downloaded >= w.data.size());
  check_output(w, 1, w.data);
  if (split < 1000) {
    // Ranges were used: nginx logged Range headers.
    const std::string log = w.servers[0].access_log() + w.servers[1].access_log();
    CHECK(log.find("bytes=") != std::string::npos);
    CHECK(log.find(" 206 ") != std::string::npos);
  }
  // Fetching the same version again finds it present.
  auto again = fetch(o);
  REQUIRE(again.ok());
  CHECK(again->already_present);
  CHECK(again->bytes_downloaded == 0);
}

TEST_CASE("client: a relay serving a corrupted chunk is detected at that chunk and reported") {
  SECTION("one chunk, no parity: fetched from the other relay") {
    world w(5000, 0, 0, 1000);
    const fs::path bad_root = w.copy_relay("relay-bad");
    flip_byte(bad_root / "v1" / "chunk" / "0", 17);
    const auto bad = w.serve(bad_root);
    const auto good = w.serve(w.copy_relay("relay-good"));
    auto o = w.options({bad, good});  // the bad relay is tried first
    o.parallel = 1;
    auto r = fetch(o);
    INFO((r.ok() ? std::string("ok") : r.status().to_string()));
    REQUIRE(r.ok());
    REQUIRE(r->bad_chunks.size() == 1);
    CHECK(r->bad_chunks[0] == std::make_pair(bad, std::size_t{0}));
    CHECK(r->relays[0].bad_chunks == 1);
    CHECK(r->relays[1].bad_chunks == 0);
    CHECK(r->retries >= 1);
    check_output(w, 1, w.data);
  }
  SECTION("every data chunk corrupted on one relay, RS(4,2), parallel") {
    world w(25000, 4, 2, 1000);
    const fs::path bad_root = w.copy_relay("relay-bad");
    for (std::size_t i = 0; i < w.data_chunks(); ++i) flip_byte(bad_root / "v1" / "chunk" / std::to_string(i), i % 1000);
    const auto good = w.serve(w.copy_relay("relay-good"));
    const auto bad = w.serve(bad_root);
    auto o = w.options({good, bad});
    auto r = fetch(o);
    INFO((r.ok() ? std::string("ok") : r.status().to_string()));
    REQUIRE(r.ok());
    CHECK_FALSE(r->bad_chunks.empty());
    for (const auto& [url, idx] : r->bad_chunks) {
      CHECK(url == bad);
      CHECK(idx < w.data_chunks());
    }
    CHECK(r->relays[0].bad_chunks == 0);
    CHECK(r->relays[1].bad_chunks == r->bad_chunks.size());
    check_output(w, 1, w.data);
  }
  SECTION("a chunk fetched as ranges from both relays: the lying relay is found") {
    world w(3000, 0, 0, 3000);
    const fs::path bad_root = w.copy_relay("relay-bad");
    flip_byte(bad_root / "v1" / "chunk" / "0", 10);  // in the first range
    const auto bad = w.serve(bad_root);
    const auto good = w.serve(w.copy_relay("relay-good"));
    auto o = w.options({bad, good});  // range 0 goes to the bad relay (tried first)
    o.split_bytes = 1000;
    o.parallel = 3;
    auto r = fetch(o);
    INFO((r.ok() ? std::string("ok") : r.status().to_string()));
    REQUIRE(r.ok());
    REQUIRE_FALSE(r->bad_chunks.empty());
    for (const auto& [url, idx] : r->bad_chunks) {
      CHECK(url == bad);
      CHECK(idx == 0);
    }
    CHECK(r->relays[1].bad_chunks == 0);
    check_output(w, 1, w.data);
  }
}

TEST_CASE("client: a dead relay's chunks are rebuilt from parity without waiting") {
  world w(40000, 4, 2, 1000);
  const auto good = w.serve(w.copy_relay("relay-good"));
  const auto dead = w.serve(w.copy_relay("relay-dead"));
  w.servers.back().stop();  // the port now refuses connections
  auto o = w.options({dead, good});
  o.request_timeout = std::chrono::milliseconds(3600 * 1000);  // never waited on
  o.connect_timeout = std::chrono::milliseconds(3600 * 1000);
  auto r = fetch(o, 1);
  INFO((r.ok() ? std::string("ok") : r.status().to_string()));
  REQUIRE(r.ok());
  CHECK(r->chunks_from_parity > 0);
  CHECK(r->relays[0].down);
  CHECK(r->relays[0].bytes == 0);
  CHECK_FALSE(r->relays[1].down);
  // Only the requests that were already on their way to the dead relay failed.
  CHECK(r->retries >= 1);
  CHECK(r->retries <= o.parallel);
  check_output(w, 1, w.data);
}

TEST_CASE("client: a client remembers a dead relay across fetches, and retries it later") {
  world w(40000, 4, 2, 1000);
  const fs::path good_root = w.copy_relay("relay-good");
  const auto good = w.serve(good_root);
  const auto dead = w.serve(w.copy_relay("relay-dead"));
  w.servers.back().stop();
  auto o = w.options({dead, good});
  o.keep_versions = 5;
  o.down_retry_after = std::chrono::hours(1);
  auto c = client::create(o);
  REQUIRE(c.ok());
  auto r1 = c->fetch(1);
  REQUIRE(r1.ok());
  CHECK(r1->chunks_from_parity > 0);
  CHECK(r1->relays[0].down);
  const auto failures_after_1 = r1->relays[0].failures;

  const auto publish_next = [&](std::uint32_t seed) {
    const auto next = dtrain::test::random_bytes(40000, seed);
    const auto v = w.pub->publish(next);
    REQUIRE(v.ok());
    fs::copy(w.origin / ("v" + std::to_string(*v)), good_root / ("v" + std::to_string(*v)), fs::copy_options::recursive);
    write_text(good_root / "latest", std::to_string(*v) + "\n");
    return std::make_pair(*v, next);
  };
  // Version 2 through the same client: the dead relay is not tried again at all.
  const auto [v2, data2] = publish_next(2);
  auto r2 = c->fetch();
  REQUIRE(r2.ok());
  CHECK(r2->version == v2);
  CHECK(r2->chunks_from_parity == 0);
  CHECK(r2->retries == 0);
  CHECK(r2->relays[0].down);
  CHECK(r2->relays[0].failures == failures_after_1);  // scores carried over, nothing new
  CHECK(r2->relays[1].requests > r1->relays[1].requests);
  check_output(w, v2, data2);

  // The free function starts fresh: it runs into the dead relay again.
  const auto [v3, data3] = publish_next(3);
  auto fresh = fetch(o, v3);
  REQUIRE(fresh.ok());
  CHECK(fresh->retries >= 1);
  CHECK(fresh->relays[0].down);

  // A client whose retry delay has passed gives the relay another chance.
  o.down_retry_after = std::chrono::milliseconds(0);
  auto c2 = client::create(o);
  REQUIRE(c2.ok());
  const auto [v4, data4] = publish_next(4);
  auto r4 = c2->fetch(v4);
  REQUIRE(r4.ok());
  CHECK(r4->relays[0].down);
  const auto [v5, data5] = publish_next(5);
  auto r5 = c2->fetch(v5);
  REQUIRE(r5.ok());
  CHECK(r5->retries >= 1);  // revived before the fetch, tried, found down again
  CHECK(r5->relays[0].failures > r4->relays[0].failures);
  CHECK(r5->relays[0].down);
  check_output(w, v5, data5);
}

TEST_CASE("client: a client whose every relay went down tries them again at the next fetch") {
  world w(20000, 4, 2, 1000);
  const fs::path root = w.copy_relay("relay-a");
  const auto a = w.serve(root);
  const auto port = w.servers.back().port();
  auto o = w.options({a});
  o.down_retry_after = std::chrono::hours(1);
  bool killed = false;
  o.should_stop = [&] {
    if (!killed) {
      killed = true;
      w.servers.back().stop();  // the only relay dies after serving the manifest
    }
    return false;
  };
  auto c = client::create(o);
  REQUIRE(c.ok());
  REQUIRE_FALSE(c->fetch(1).ok());
  CHECK(c->relay_scores()[0].down);
  auto back = nginx_server::start_on(root, port);  // the relay comes back where it was
  REQUIRE(back.ok());
  auto r = c->fetch(1);
  INFO((r.ok() ? std::string("ok") : r.status().to_string()));
  REQUIRE(r.ok());
  check_output(w, 1, w.data);
}

TEST_CASE("client: a relay a client holds down gets no request at all, not even latest") {
  world w(20000, 4, 2, 1000);
  const fs::path root_a = w.copy_relay("relay-a");
  const auto a = w.serve(root_a);
  const auto port_a = w.servers.back().port();
  const auto b = w.serve(w.copy_relay("relay-b"));
  auto o = w.options({a, b});
  o.down_retry_after = std::chrono::hours(1);
  auto c = client::create(o);
  REQUIRE(c.ok());
  w.servers[0].stop();  // relay a refuses connections: marked down during the first fetch
  auto r1 = c->fetch();
  INFO((r1.ok() ? std::string("ok") : r1.status().to_string()));
  REQUIRE(r1.ok());
  CHECK(r1->relays[0].down);
  auto back = nginx_server::start_on(root_a, port_a);  // a is back, but the client holds it down
  REQUIRE(back.ok());
  auto r2 = c->fetch();
  REQUIRE(r2.ok());
  CHECK(r2->already_present);
  CHECK(back->access_log().empty());
  // Once nothing else serves the manifest, the down relay is asked after all.
  w.servers[1].stop();
  auto v2 = dtrain::test::random_bytes(20000, 2);
  REQUIRE(w.pub->publish(v2).ok());
  fs::copy(w.origin / "v2", root_a / "v2", fs::copy_options::recursive);
  write_text(root_a / "latest", "2\n");
  auto r3 = c->fetch(2);
  INFO((r3.ok() ? std::string("ok") : r3.status().to_string()));
  CHECK_FALSE(back->access_log().empty());
  REQUIRE(r3.ok());  // and, having answered, it is used again
  CHECK(r3->relays[0].bytes > r1->relays[0].bytes);
  check_output(w, 2, v2);
}

TEST_CASE("client: a delta-coded chunk split over two relays blames only the relay that lied") {
  world w(20000, 0, 0, 1000);
  const fs::path bad_root = w.copy_relay("relay-bad");
  const fs::path good_root = w.copy_relay("relay-good");
  auto v2 = w.data;
  for (std::size_t i = 0; i < v2.size(); i += 997) v2[i] ^= std::byte{0xff};
  manifest man;
  for (const auto& root : {bad_root, good_root}) man = w.publish_delta(root, 2, v2, w.data, 0, 0);
  REQUIRE(man.delta_coded(0));
  flip_byte(bad_root / "v2" / "chunk" / "0", 2);  // in the first range
  const auto bad = w.serve(bad_root);
  const auto good = w.serve(good_root);
  auto o = w.options({bad, good});
  REQUIRE(fetch(o, 1).ok());  // the base
  o.split_bytes = 8;          // every delta-coded chunk travels as ranges from both relays
  o.parallel = 4;
  auto r = fetch(o, 2);
  INFO((r.ok() ? std::string("ok") : r.status().to_string()));
  REQUIRE(r.ok());
  REQUIRE_FALSE(r->bad_chunks.empty());
  for (const auto& [url, idx] : r->bad_chunks) {
    CAPTURE(url, idx);
    CHECK(url == bad);
  }
  CHECK(r->relays[1].bad_chunks == 0);
  check_output(w, 2, v2);
}

TEST_CASE("client: stable only moves forward unless a rollback is allowed") {
  world w(8000, 4, 2, 1000);
  const fs::path root = w.copy_relay("relay-a");
  const auto a = w.serve(root);
  const auto v2 = dtrain::test::random_bytes(8000, 2);
  REQUIRE(w.pub->publish(v2).ok());
  fs::copy(w.origin / "v2", root / "v2", fs::copy_options::recursive);
  write_text(root / "latest", "2\n");
  auto o = w.options({a});
  o.keep_versions = 1;
  auto latest = fetch(o);
  REQUIRE(latest.ok());
  CHECK(latest->version == 2);
  CHECK(latest->marked_stable);

  // Version 1 on request: downloaded, but stable stays at 2 and nothing is pruned.
  auto old = fetch(o, 1);
  REQUIRE(old.ok());
  CHECK_FALSE(old->marked_stable);
  CHECK(read_text(w.out() / "stable") == "2\n");
  CHECK(*read_bytes(w.out() / "v1" / "checkpoint") == w.data);
  CHECK(*read_bytes(w.out() / "v2" / "checkpoint") == v2);

  // A deliberate rollback moves stable back and prunes to keep_versions.
  o.allow_rollback = true;
  auto back = fetch(o, 1);
  REQUIRE(back.ok());
  CHECK(back->marked_stable);
  check_output(w, 1, w.data);
  CHECK_FALSE(fs::exists(w.out() / "v2"));
}

TEST_CASE("client: requests to a relay that never answers are hedged on another relay") {
  silent_relay hole;
  const std::string silent = hole.url;

  const std::size_t m = GENERATE(0u, 2u);
  CAPTURE(m);
  world w(20000, m == 0 ? 0 : 4, m, 1000);
  const auto good = w.serve(w.copy_relay("relay-good"));
  auto o = w.options({silent, good});  // the silent relay is tried first
  o.hedge_min = std::chrono::milliseconds(50);
  o.request_timeout = std::chrono::milliseconds(30000);  // without hedging: a failure, not a hang
  auto r = fetch(o, 1);  // the version is given: the silent relay's latest is never asked
  INFO((r.ok() ? std::string("ok") : r.status().to_string()));
  REQUIRE(r.ok());
  CHECK(r->hedged >= 1);
  CHECK(r->relays[0].bytes == 0);
  CHECK_FALSE(r->relays[0].down);
  check_output(w, 1, w.data);
}

TEST_CASE("client: a relay that never answers `latest` does not hold up latest_version") {
  silent_relay hole;
  const std::string silent = hole.url;
  world w(8000, 4, 2, 1000);
  const auto good = w.serve(w.copy_relay("relay-good"));
  auto o = w.options({silent, good});
  o.hedge_min = std::chrono::milliseconds(50);
  o.request_timeout = std::chrono::hours(1);  // waiting for the silent relay would hang: ctest's timeout fails it
  auto v = latest_version(o);
  INFO((v.ok() ? std::string("ok") : v.status().to_string()));
  REQUIRE(v.ok());
  CHECK(*v == 1);
  auto r = fetch(o);  // latest, then the manifest (the good relay's), then the chunks (hedged)
  INFO((r.ok() ? std::string("ok") : r.status().to_string()));
  REQUIRE(r.ok());
  check_output(w, 1, w.data);
}

TEST_CASE("client: forged and tampered manifests are rejected, nothing marked stable") {
  SECTION("signed by an untrusted key") {
    world w(5000, 4, 2, 1000, test_key(2));  // published by key 2, the client trusts key 1
    const auto a = w.serve(w.copy_relay("relay-a"));
    auto o = w.options({a});
    auto r = fetch(o, 1);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == status_code::permission_denied);
    CHECK_FALSE(fs::exists(w.out() / "stable"));
    CHECK_FALSE(fs::exists(w.out() / "v1"));
    CHECK(latest_version(o).status().code() == status_code::permission_denied);
  }
  SECTION("one byte changed") {
    world w(5000, 4, 2, 1000);
    const fs::path root = w.copy_relay("relay-a");
    flip_byte(root / "v1" / "manifest", 40);
    const auto a = w.serve(root);
    auto o = w.options({a});
    auto r = fetch(o, 1);
    REQUIRE_FALSE(r.ok());
    CAPTURE(r.status().to_string());
    CHECK((r.status().code() == status_code::permission_denied || r.status().code() == status_code::data_loss));
    CHECK(r.status().message().find("manifest") != std::string::npos);
    CHECK_FALSE(fs::exists(w.out() / "stable"));
  }
  SECTION("a bad manifest on one relay is skipped and reported") {
    world w(5000, 4, 2, 1000);
    const fs::path root = w.copy_relay("relay-bad");
    flip_byte(root / "v1" / "manifest", 40);
    const auto bad = w.serve(root);
    const auto good = w.serve(w.copy_relay("relay-good"));
    auto o = w.options({bad, good});
    auto r = fetch(o);
    INFO((r.ok() ? std::string("ok") : r.status().to_string()));
    REQUIRE(r.ok());
    bool reported = false;
    for (const auto& [url, why] : r->bad_manifests) reported = reported || url == bad;
    // The good relay may answer first; when the bad one answered, it is reported.
    CHECK((reported || r->bad_manifests.empty()));
    check_output(w, 1, w.data);
  }
  SECTION("trusted_origins empty is refused unless allow_any_origin") {
    world w(5000, 4, 2, 1000);
    const auto a = w.serve(w.copy_relay("relay-a"));
    auto o = w.options({a});
    o.trusted_origins.clear();
    CHECK(fetch(o).status().code() == status_code::invalid_argument);
    o.allow_any_origin = true;
    CHECK(fetch(o).ok());
  }
}

TEST_CASE("client: a lying latest cannot make the client chase a version without a manifest") {
  world w(5000, 4, 2, 1000);
  const fs::path liar = w.copy_relay("relay-liar");
  write_text(liar / "latest", "99\n");
  const auto a = w.serve(liar);
  const auto b = w.serve(w.copy_relay("relay-b"));
  auto o = w.options({a, b});
  auto lv = latest_version(o);
  REQUIRE(lv.ok());
  CHECK(*lv == 1);
  auto r = fetch(o);
  REQUIRE(r.ok());
  CHECK(r->version == 1);
}

TEST_CASE("client: a truncated download resumes from the resume file") {
  const std::size_t m = GENERATE(0u, 2u);
  CAPTURE(m);
  world w(30000, m == 0 ? 0 : 4, m, 1000);
  const auto a = w.serve(w.copy_relay("relay-a"));
  const auto b = w.serve(w.copy_relay("relay-b"));
  auto o = w.options({a, b});
  o.parallel = 2;
  o.stop_after_chunks = 10;
  auto first = fetch(o);
  REQUIRE_FALSE(first.ok());
  CHECK(first.status().code() == status_code::cancelled);
  CHECK_FALSE(fs::exists(w.out() / "stable"));
  CHECK_FALSE(fs::exists(w.out() / "v1"));
  const fs::path resume = w.out() / "v1.partial" / "resume";
  REQUIRE(fs::exists(resume));
  auto rs = parse_resume(*read_bytes(resume));
  REQUIRE(rs.ok());
  std::size_t marked = 0;
  for (auto d : rs->done) marked += d;
  CHECK(marked >= 10);

  o.stop_after_chunks.reset();
  auto second = fetch(o);
  INFO((second.ok() ? std::string("ok") : second.status().to_string()));
  REQUIRE(second.ok());
  CHECK(second->resumed);
  CHECK(second->bytes_downloaded < w.data.size());
  check_output(w, 1, w.data);
}

TEST_CASE("client: a resume file for another manifest is ignored, a damaged chunk refetched") {
  world w(10000, 0, 0, 1000);
  const auto a = w.serve(w.copy_relay("relay-a"));
  auto o = w.options({a});
  o.parallel = 1;
  o.stop_after_chunks = 5;
  REQUIRE(fetch(o).status().code() == status_code::cancelled);
  const fs::path partial = w.out() / "v1.partial";
  // Damage chunk 0 in the partial file: it is marked done but fails its re-hash.
  flip_byte(partial / "checkpoint", 3);
  o.stop_after_chunks.reset();
  auto r = fetch(o);
  REQUIRE(r.ok());
  CHECK(r->resumed);
  CHECK(r->bytes_downloaded == 10000 - 4 * 1000);  // chunks 1..4 came from the file
  check_output(w, 1, w.data);

  // Another manifest's resume file: ignored.
  fs::remove_all(w.out());
  o.stop_after_chunks = 5;
  REQUIRE(fetch(o).status().code() == status_code::cancelled);
  auto rs = parse_resume(*read_bytes(partial / "resume"));
  REQUIRE(rs.ok());
  rs->manifest_digest[0] ^= std::byte{1};
  const auto bytes = encode_resume(*rs);
  std::ofstream(partial / "resume", std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  o.stop_after_chunks.reset();
  auto fresh = fetch(o);
  REQUIRE(fresh.ok());
  CHECK_FALSE(fresh->resumed);
  CHECK(fresh->bytes_downloaded == 10000);
  check_output(w, 1, w.data);
}

TEST_CASE("client: stable moves only on success; the previous version stays when a fetch fails") {
  world w(8000, 4, 2, 1000);
  const fs::path root = w.copy_relay("relay-a");
  const auto a = w.serve(root);
  auto o = w.options({a});
  o.keep_versions = 2;
  REQUIRE(fetch(o).ok());
  check_output(w, 1, w.data);

  // Version 2 on the relay with a tampered manifest: the fetch fails, 1 stays stable.
  const auto v2 = dtrain::test::random_bytes(8000, 2);
  REQUIRE(w.pub->publish(v2).ok());
  fs::copy(w.origin / "v2", root / "v2", fs::copy_options::recursive);
  write_text(root / "latest", "2\n");
  flip_byte(root / "v2" / "manifest", 30);
  auto failed = fetch(o);
  REQUIRE_FALSE(failed.ok());
  CHECK(read_text(w.out() / "stable") == "1\n");
  CHECK(*read_bytes(w.out() / "v1" / "checkpoint") == w.data);
  CHECK_FALSE(fs::exists(w.out() / "v2"));

  // Repaired: version 2 becomes stable, version 1 is kept (keep_versions 2).
  fs::copy_file(w.origin / "v2" / "manifest", root / "v2" / "manifest", fs::copy_options::overwrite_existing);
  auto ok2 = fetch(o);
  REQUIRE(ok2.ok());
  CHECK(ok2->version == 2);
  check_output(w, 2, v2);
  CHECK(fs::exists(w.out() / "v1"));

  // Version 3 with keep_versions 2: version 1 is pruned.
  const auto v3 = dtrain::test::random_bytes(8000, 3);
  REQUIRE(w.pub->publish(v3).ok());
  fs::copy(w.origin / "v3", root / "v3", fs::copy_options::recursive);
  write_text(root / "latest", "3\n");
  REQUIRE(fetch(o).ok());
  check_output(w, 3, v3);
  CHECK(fs::exists(w.out() / "v2"));
  CHECK_FALSE(fs::exists(w.out() / "v1"));
}

TEST_CASE("client: a publisher delta-codes each version against the previous one") {
  temp_dir tmp;
  const auto key = test_key(1);
  const fs::path root = tmp.path() / "origin";
  encode_options enc;
  enc.chunk_size = 1000;
  enc.k = 4;
  enc.m = 2;
  publisher_options po{root, key, 3, enc};
  po.delta_from_previous = true;
  std::optional<publisher> pub;
  pub.emplace(publisher::create(po).value());
  auto srv = nginx_server::start(root);
  REQUIRE(srv.ok());
  fetch_options o;
  o.relays = {srv->url()};
  o.trusted_origins = {key.id()};
  o.out_dir = tmp.path() / "out";
  auto c = client::create(o);
  REQUIRE(c.ok());
  const std::vector<crypto::peer_id> trusted = {key.id()};
  const auto manifest_of = [&](std::uint64_t v) {
    return open_manifest(read_bytes(root / ("v" + std::to_string(v)) / "manifest").value(), trusted).value();
  };

  auto data = dtrain::test::random_bytes(20000, 5);
  for (std::uint64_t v = 1; v <= 3; ++v) {
    CAPTURE(v);
    if (v > 1)
      for (std::size_t i = v; i < data.size(); i += 1013) data[i] ^= std::byte{0x11};  // a training step's change
    REQUIRE(pub->publish(data).value() == v);
    const manifest man = manifest_of(v);
    if (v == 1) {
      CHECK(man.delta == delta_codec::none);  // nothing to code against yet
    } else {
      CHECK(man.delta == delta_codec::xor_zstd);
      CHECK(man.delta_base == v - 1);
    }
    auto r = c->fetch();
    INFO((r.ok() ? std::string("ok") : r.status().to_string()));
    REQUIRE(r.ok());
    CHECK(r->version == v);
    if (v > 1) CHECK(r->bytes_downloaded < data.size() / 2);
    CHECK(*read_bytes(o.out_dir / ("v" + std::to_string(v)) / "checkpoint") == data);
  }
  // A restarted publisher has no previous bytes: its first version goes out in full.
  pub.reset();
  auto again = publisher::create(po);
  REQUIRE(again.ok());
  REQUIRE(again->publish(data).value() == 4);
  CHECK(manifest_of(4).delta == delta_codec::none);
  REQUIRE(again->publish(data).value() == 5);
  CHECK(manifest_of(5).delta_base == 4);
}

TEST_CASE("client: a delta-coded version decodes against the previous version in out_dir") {
  world w(20000, 4, 2, 1000);
  const fs::path root = w.copy_relay("relay-a");
  const auto a = w.serve(root);
  auto o = w.options({a});
  REQUIRE(fetch(o).ok());

  // Version 2: a few bytes changed, delta-coded against version 1, written with the
  // layout helpers (as a delta-aware publisher would).
  auto v2 = w.data;
  for (std::size_t i = 0; i < v2.size(); i += 997) v2[i] ^= std::byte{0xff};
  encode_options enc;
  enc.chunk_size = 1000;
  enc.k = 4;
  enc.m = 2;
  enc.version = 2;
  enc.created_unix = 1700000001;
  enc.delta_base = delta_reference{1, w.data};
  auto e = encode(v2, enc);
  REQUIRE(e.ok());
  REQUIRE(e->man.delta != delta_codec::none);
  auto signed_bytes = sign_manifest(e->man, w.key);
  REQUIRE(signed_bytes.ok());
  auto vw = version_writer::begin(root, 2);
  REQUIRE(vw.ok());
  for (std::size_t i = 0; i < e->man.total_chunks(); ++i) REQUIRE(vw->write_chunk(i, e->chunk(i)).ok());
  REQUIRE(vw->write_manifest(*signed_bytes).ok());
  REQUIRE(vw->commit().ok());
  REQUIRE(write_latest(root, 2).ok());

  auto r = fetch(o);
  INFO((r.ok() ? std::string("ok") : r.status().to_string()));
  REQUIRE(r.ok());
  CHECK(r->version == 2);
  CHECK(r->bytes_downloaded < v2.size());  // delta-coded chunks are smaller
  check_output(w, 2, v2);

  // Without the base version in out_dir: failed_precondition, nothing marked stable.
  auto o2 = o;
  o2.out_dir = w.tmp.path() / "fresh";
  auto r2 = fetch(o2, 2);
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.status().code() == status_code::failed_precondition);
  CHECK_FALSE(fs::exists(o2.out_dir / "stable"));
}
