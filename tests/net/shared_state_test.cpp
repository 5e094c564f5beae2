// Shared-state sync: the registry, the wire format (frozen vectors, truncations, byte
// flips), the vote against a brute-force referee, exact byte counts for identical, dirty,
// tied, joining and multi-source syncs, a lying holder, a crashing peer and mismatched
// tensor sets.
#include "dtrain/net/shared_state.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <tuple>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dtrain/core/rng.h"
#include "net_test_util.h"
#include "wire_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace dtrain::net::test;
using dtrain::net::wire_test::bytes;
using dtrain::net::wire_test::canon;
using dtrain::net::wire_test::hex;
using dtrain::net::wire_test::unhex;
using namespace std::chrono_literals;

namespace {

constexpr std::uint32_t kStepChunk = 2;  // docs/formats/shared_state_messages.md

bytes pattern(std::size_t size, std::uint64_t seed) {
  bytes b(size);
  counter_rng g(seed, 77);
  for (auto& x : b) x = static_cast<std::byte>(g.next_u32());
  return b;
}

// One peer: its tensor memory (stable addresses) and the state viewing it.
struct peer {
  std::map<std::string, bytes> mem;
  shared_state st;
  sync_options opt;
  result<sync_report> out = sync_report{};

  void add(const std::string& name, bytes b, std::optional<dtype> type = std::nullopt) {
    auto& m = mem[name];
    m = std::move(b);
    REQUIRE(st.add(name, m, type).ok());
  }
  bytes snapshot(const std::string& name) const { return mem.at(name); }
};

using peers = std::vector<std::unique_ptr<peer>>;

peers make_peers(std::size_t n, std::uint64_t chunk_bytes) {
  peers p;
  for (std::size_t r = 0; r < n; ++r) {
    p.push_back(std::make_unique<peer>());
    p.back()->opt.chunk_bytes = chunk_bytes;
    p.back()->opt.timeout = 10s;
  }
  return p;
}

// Runs sync_shared_state on every peer at once; wrap[r] (if set) replaces rank r's endpoint.
void sync_all(inproc_fabric& f, peers& p, std::uint32_t seq = 0, std::vector<transport*> wrap = {}) {
  wrap.resize(p.size(), nullptr);
  run_peers(f, [&](rank_t r, transport& t) {
    transport& use = wrap[r] ? *wrap[r] : t;
    p[r]->out = sync_shared_state(use, p[r]->st, p[r]->opt, seq);
  });
}

void require_ok(const peers& p) {
  for (std::size_t r = 0; r < p.size(); ++r) {
    CAPTURE(r, p[r]->out.ok() ? std::string("ok") : p[r]->out.status().to_string());
    REQUIRE(p[r]->out.ok());
  }
}

// Every peer holds the same bytes for every tensor as `ref` does, and the same revision.
void require_equal_state(const peers& p, std::size_t ref) {
  for (std::size_t r = 0; r < p.size(); ++r) {
    CAPTURE(r);
    REQUIRE(p[r]->st.revision() == p[ref]->st.revision());
    for (const auto& [name, m] : p[ref]->mem) {
      CAPTURE(name);
      REQUIRE(p[r]->mem.at(name) == m);
      REQUIRE(*p[r]->st.hash(name) == xxh3_128(m));
    }
  }
}

// Flips one byte in the middle of every message of one step (chunks by default) it sends.
class lying_transport final : public forwarding_transport {
 public:
  explicit lying_transport(transport& inner, std::uint32_t step = kStepChunk)
      : forwarding_transport(inner), step_(step) {}
  result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override {
    if ((tag & 0xFFFF) != step_ || data.empty()) return forwarding_transport::post_send(to, tag, data);
    copies_.emplace_back(data.begin(), data.end());
    copies_.back()[data.size() / 2] ^= std::byte{0x40};
    return forwarding_transport::post_send(to, tag, copies_.back());
  }

 private:
  std::uint32_t step_;
  std::deque<bytes> copies_;  // stable addresses while the sends are in flight
};

}  // namespace

// ---- the registry ------------------------------------------------------------------------

TEST_CASE("shared_state: registry keeps names sorted and refuses bad tensors", "[net][shared_state]") {
  bytes a(8), b(6), c(0);
  shared_state s(42);
  REQUIRE(s.add("zeta", a, dtype::f32).ok());
  REQUIRE(s.add("alpha", b, dtype::f16).ok());
  REQUIRE(s.add("mid", c).ok());
  REQUIRE(s.size() == 3);
  CHECK(s.tensor(0).name == "alpha");
  CHECK(s.tensor(1).name == "mid");
  CHECK(s.tensor(2).name == "zeta");
  CHECK(s.total_bytes() == 14);
  CHECK(s.revision() == 42);
  REQUIRE(s.find("zeta") != nullptr);
  CHECK(s.find("zeta")->data.data() == a.data());
  CHECK(s.find("nope") == nullptr);
  a[3] = std::byte{9};
  CHECK(*s.hash("zeta") == xxh3_128(a));  // computed on demand, from the caller's memory
  CHECK(s.hash("nope").status().code() == status_code::invalid_argument);

  bytes odd(7);
  CHECK(s.add("zeta", odd).code() == status_code::invalid_argument);            // duplicate
  CHECK(s.add("", odd).code() == status_code::invalid_argument);                // empty name
  CHECK(s.add(std::string(1025, 'x'), odd).code() == status_code::invalid_argument);
  CHECK(s.add("odd", odd, dtype::bf16).code() == status_code::invalid_argument);  // 7 % 2 != 0
  CHECK(s.add(std::string(1024, 'x'), odd).ok());
  CHECK(s.size() == 4);
}

// ---- wire format -------------------------------------------------------------------------

namespace {
manifest frozen_manifest() {
  manifest m;
  m.revision = 0x0102030405060708ull;
  m.chunk_bytes = 4;
  m.strategy = sync_strategy::receive_only;
  m.tensors.push_back({"a", 6, untyped_code, {1, 2}, {{3, 4}, {5, 6}}});
  m.tensors.push_back({"b", 0, 0, {7, 8}, {}});
  return m;
}
// magic "DTSM" | version | strategy | reserved u16 | revision u64 | chunk_bytes u64 |
// count u32 | reserved u32 | entries (name_len u16, type, reserved u8, reserved u32,
// bytes u64, hash, chunk hashes, name) | xxh3_64 of everything before.
constexpr std::string_view kFrozenManifest =
    "4454534d 01 01 0000 0807060504030201 0400000000000000 02000000 00000000"
    " 0100 ff 00 00000000 0600000000000000 00000000000000020000000000000001"
    "   00000000000000040000000000000003 00000000000000060000000000000005 61"
    " 0100 00 00 00000000 0000000000000000 00000000000000080000000000000007 62";
}  // namespace

TEST_CASE("shared_state: manifest frozen vector and round trip", "[net][shared_state][format]") {
  const manifest m = frozen_manifest();
  bytes out(encoded_manifest_bytes(m));
  REQUIRE(out.size() == 32 + (32 + 32 + 1) + (32 + 1) + 8);
  auto w = encode_manifest(m, out);
  REQUIRE(w.ok());
  REQUIRE(*w == out.size());
  const bytes body = unhex(kFrozenManifest);
  CHECK(hex(std::span(out).first(body.size())) == canon(kFrozenManifest));
  // The trailer is the XXH3-64 of the body, little-endian.
  CHECK(load_le<std::uint64_t>(out.data() + body.size()) == xxh3_64(body));
  CHECK(hex(std::span(out).last(8)) == "25236685a5f33639");

  manifest back;
  REQUIRE(decode_manifest(out, back).ok());
  CHECK(back.revision == m.revision);
  CHECK(back.chunk_bytes == 4);
  CHECK(back.strategy == sync_strategy::receive_only);
  REQUIRE(back.tensors.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(back.tensors[i].name == m.tensors[i].name);
    CHECK(back.tensors[i].bytes == m.tensors[i].bytes);
    CHECK(back.tensors[i].type == m.tensors[i].type);
    CHECK(back.tensors[i].hash == m.tensors[i].hash);
    CHECK(back.tensors[i].chunks == m.tensors[i].chunks);
  }

  SECTION("every truncation is data_loss and leaves the output alone") {
    for (std::size_t len = 0; len < out.size(); ++len) {
      manifest keep = frozen_manifest();
      CAPTURE(len);
      CHECK(decode_manifest(std::span(out).first(len), keep).code() == status_code::data_loss);
      CHECK(keep.tensors.size() == 2);
    }
  }
  SECTION("every single-byte change is refused") {
    for (std::size_t off = 0; off < out.size(); ++off) {
      bytes bad = out;
      bad[off] ^= std::byte{0x01};
      manifest keep;
      CAPTURE(off);
      const auto st = decode_manifest(bad, keep);
      // Version 1 -> 0 is data_loss; everything else breaks the magic or the checksum.
      CHECK(st.code() == status_code::data_loss);
      CHECK(keep.tensors.empty());
    }
    bytes newer = out;
    newer[4] = std::byte{2};
    manifest keep;
    CHECK(decode_manifest(newer, keep).code() == status_code::unimplemented);
  }
  SECTION("rules behind a valid checksum") {
    // Re-seal a modified body so that only the rule under test fails.
    auto sealed = [&](bytes b) {
      store_le<std::uint64_t>(b.data() + b.size() - 8, xxh3_64(std::span(b).first(b.size() - 8)));
      manifest keep;
      return decode_manifest(b, keep);
    };
    CHECK(sealed(out).ok());
    auto with = [&](std::size_t off, std::uint8_t v) {
      bytes b = out;
      b[off] = std::byte{v};
      return sealed(b);
    };
    CHECK(with(5, 3).code() == status_code::data_loss);    // strategy
    CHECK(with(6, 1).code() == status_code::data_loss);    // reserved
    CHECK(with(16, 0).code() == status_code::data_loss);   // chunk_bytes 0
    CHECK(with(19, 0x40).code() == status_code::data_loss); // chunk_bytes 2^30 + 4
    CHECK(with(24, 3).code() == status_code::data_loss);   // count 3
    CHECK(with(24, 1).code() == status_code::data_loss);   // count 1: trailing bytes
    CHECK(with(28, 1).code() == status_code::data_loss);   // reserved
    CHECK(with(32, 0).code() == status_code::data_loss);   // name length 0
    CHECK(with(32, 0xff).code() == status_code::data_loss); // name length 255: past the end
    CHECK(with(34, 3).code() == status_code::data_loss);   // type code 3
    CHECK(with(35, 1).code() == status_code::data_loss);   // reserved
    CHECK(with(40, 9).code() == status_code::data_loss);   // 9 bytes: 3 chunk hashes needed
    CHECK(with(40, 5).ok());                                // 5 bytes: still 2 chunks of 4
    CHECK(with(96, 'c').code() == status_code::data_loss); // "c" then "b": out of order
    CHECK(with(96, 'b').code() == status_code::data_loss); // duplicate "b"
    CHECK(with(99, 2).ok());                                // "b" as bf16: 0 bytes is fine
    CHECK(with(34, 1).ok());                                // "a" as f16: 6 bytes is fine
    CHECK(with(34, 0).code() == status_code::data_loss);   // "a" as f32: 6 % 4 != 0
  }
}

TEST_CASE("shared_state: manifest encoder refuses what the decoder would", "[net][shared_state][format]") {
  bytes out(4096);
  manifest m = frozen_manifest();
  SECTION("order") { std::swap(m.tensors[0], m.tensors[1]); }
  SECTION("chunk list") { m.tensors[0].chunks.pop_back(); }
  SECTION("type") { m.tensors[1].type = 7; }
  SECTION("size vs type") {
    m.tensors[1].bytes = 2;  // f32 needs multiples of 4
    m.tensors[1].chunks.resize(1);
  }
  SECTION("chunk_bytes") { m.chunk_bytes = 0; }
  SECTION("space") { out.resize(10); }
  CHECK(encode_manifest(m, out).status().code() == status_code::invalid_argument);
}

TEST_CASE("shared_state: control messages", "[net][shared_state][format]") {
  std::array<std::byte, control_bytes> h{};
  encode_hello(h, 0x1234);
  CHECK(hex(h) == canon("44545353 01 01 0000 3412000000000000"));
  CHECK(*decode_hello(h, 1 << 20) == 0x1234);
  CHECK(decode_hello(h, 0x1000).status().code() == status_code::data_loss);  // above the cap
  encode_hello(h, 39);
  CHECK(decode_hello(h, 1 << 20).status().code() == status_code::data_loss);  // below an empty manifest

  std::array<std::byte, control_bytes> o{};
  encode_outcome(o, {status_code::data_loss, 3});
  CHECK(hex(o) == canon("44545353 01 02 04 00 03000000 00000000"));
  auto v = decode_outcome(o);
  REQUIRE(v.ok());
  CHECK(v->code == status_code::data_loss);
  CHECK(v->culprit == 3);
  CHECK(decode_outcome(h).status().code() == status_code::data_loss);  // a hello is not an outcome
  for (std::size_t len = 0; len < control_bytes; ++len)
    CHECK(decode_outcome(std::span(o).first(len)).status().code() == status_code::data_loss);
  for (std::size_t off : {0, 6, 7, 12}) {
    auto bad = o;
    bad[off] = std::byte{0x7f};
    CAPTURE(off);
    CHECK(decode_outcome(bad).status().code() == status_code::data_loss);
  }
  auto newer = o;
  newer[4] = std::byte{2};
  CHECK(decode_outcome(newer).status().code() == status_code::unimplemented);
}

// ---- the vote, against a brute-force referee -----------------------------------------------

TEST_CASE("shared_state: vote and revision match a brute-force referee", "[net][shared_state]") {
  // Random groups: per peer and tensor one of three contents, revisions in {1, 2, 3},
  // some receive_only. The referee ranks every distinct hash by (holders, max revision,
  // -min rank) the slow way.
  const std::uint64_t seed = GENERATE(range(0, 24));
  counter_rng g(seed, 5);
  const std::size_t n = 2 + g.next_below(3);
  const std::size_t nt = 1 + g.next_below(2);
  std::vector<std::vector<std::uint32_t>> content(n, std::vector<std::uint32_t>(nt));
  std::vector<std::uint64_t> rev(n);
  std::vector<bool> recv_only(n);
  for (std::size_t r = 0; r < n; ++r) {
    rev[r] = 1 + g.next_below(3);
    recv_only[r] = g.next_below(4) == 0;
    for (auto& c : content[r]) c = g.next_below(3);
  }
  if (std::all_of(recv_only.begin(), recv_only.end(), [](bool b) { return b; })) recv_only[0] = false;
  CAPTURE(seed, n, nt);

  const std::size_t size = 40;
  auto p = make_peers(n, 16);
  for (std::size_t r = 0; r < n; ++r) {
    p[r]->st.set_revision(rev[r]);
    if (recv_only[r]) p[r]->opt.strategy = sync_strategy::receive_only;
    for (std::size_t i = 0; i < nt; ++i) p[r]->add("t" + std::to_string(i), pattern(size, content[r][i] + 10 * i));
  }
  inproc_fabric f(n);
  sync_all(f, p);
  require_ok(p);

  std::vector<std::uint32_t> win(nt);
  for (std::size_t i = 0; i < nt; ++i) {
    struct cand {
      std::size_t count = 0;
      std::uint64_t rev = 0;
      std::size_t min_rank = 99;
    };
    std::map<std::uint32_t, cand> cands;
    for (std::size_t r = 0; r < n; ++r) {
      if (recv_only[r]) continue;
      auto& c = cands[content[r][i]];
      ++c.count;
      c.rev = std::max(c.rev, rev[r]);
      c.min_rank = std::min(c.min_rank, r);
    }
    auto best = cands.begin();
    for (auto it = cands.begin(); it != cands.end(); ++it) {
      const auto& a = it->second;
      const auto& b = best->second;
      if (std::tie(a.count, a.rev) > std::tie(b.count, b.rev) ||
          (a.count == b.count && a.rev == b.rev && a.min_rank < b.min_rank))
        best = it;
    }
    win[i] = best->first;
  }
  // Revision: max over voters holding all winners, else over voters holding any.
  std::uint64_t rev_all = 0, rev_any = 0;
  bool any_all = false;
  for (std::size_t r = 0; r < n; ++r) {
    if (recv_only[r]) continue;
    std::size_t wins = 0;
    for (std::size_t i = 0; i < nt; ++i) wins += content[r][i] == win[i];
    if (wins == nt) {
      any_all = true;
      rev_all = std::max(rev_all, rev[r]);
    }
    if (wins > 0) rev_any = std::max(rev_any, rev[r]);
  }
  const std::uint64_t want_rev = any_all ? rev_all : rev_any;

  std::uint64_t sent = 0, received = 0;
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r);
    std::size_t pulls = 0;
    for (std::size_t i = 0; i < nt; ++i) {
      pulls += content[r][i] != win[i];
      CHECK(p[r]->mem.at("t" + std::to_string(i)) == pattern(size, win[i] + 10 * i));
    }
    CHECK(p[r]->st.revision() == want_rev);
    CHECK(p[r]->out->revision == want_rev);
    CHECK(p[r]->out->previous_revision == rev[r]);
    CHECK(p[r]->out->tensors_pulled == pulls);
    CHECK(p[r]->out->outdated == (pulls > 0));
    CHECK(p[r]->out->bytes_received == pulls * size);
    CHECK(p[r]->out->chunks_received == pulls * 3);  // 40 bytes in chunks of 16
    if (recv_only[r]) CHECK(p[r]->out->bytes_sent == 0);
    sent += p[r]->out->bytes_sent;
    received += p[r]->out->bytes_received;
  }
  CHECK(sent == received);
}

// ---- byte accounting -----------------------------------------------------------------------

TEST_CASE("shared_state: identical state moves 0 bytes", "[net][shared_state]") {
  const std::size_t n = GENERATE(1, 2, 3);
  CAPTURE(n);
  auto p = make_peers(n, 4096);
  for (std::size_t r = 0; r < n; ++r) {
    p[r]->st.set_revision(7);
    p[r]->add("a.empty", {});
    p[r]->add("b.one", pattern(1, 1));
    p[r]->add("c.seven", pattern(7, 2));
    p[r]->add("d.big", pattern((4u << 20) + 1, 3));
    p[r]->add("e.f32", pattern(64, 4), dtype::f32);
  }
  inproc_fabric f(n);
  sync_all(f, p);
  require_ok(p);
  for (std::size_t r = 0; r < n; ++r) {
    const auto& rep = *p[r]->out;
    CHECK(rep.bytes_sent == 0);
    CHECK(rep.bytes_received == 0);
    CHECK(rep.chunks_sent + rep.chunks_received == 0);
    CHECK(rep.tensors_pulled == 0);
    CHECK_FALSE(rep.outdated);
    CHECK(rep.revision == 7);
    CHECK(rep.received_from == std::vector<std::uint64_t>(n, 0));
  }
  require_equal_state(p, 0);
}

TEST_CASE("shared_state: only the dirty tensor moves, split over the holders", "[net][shared_state]") {
  const std::size_t size = GENERATE(1, 7, 4096, (4u << 20) + 1);
  const std::uint64_t chunk = 4096;
  CAPTURE(size);
  const std::size_t n = 3;
  auto p = make_peers(n, chunk);
  for (std::size_t r = 0; r < n; ++r) {
    p[r]->add("a", pattern(100, 1));
    p[r]->add("b", pattern(size, r == 1 ? 99 : 2));  // rank 1 is dirty
    p[r]->add("c", pattern(5000, 3));
  }
  const bytes want = pattern(size, 2);
  inproc_fabric f(n);
  sync_all(f, p);
  require_ok(p);
  require_equal_state(p, 0);
  CHECK(p[1]->mem.at("b") == want);

  // Independent expectation: chunk c of tensor 1 ("b") to puller 1 comes from holders
  // {0, 2}[(c + 1 + 1) % 2].
  std::vector<std::uint64_t> from(n, 0);
  const std::size_t chunks = (size + chunk - 1) / chunk;
  for (std::size_t c = 0; c < chunks; ++c) from[(c % 2) == 0 ? 0 : 2] += std::min<std::size_t>(chunk, size - c * chunk);
  const auto& r1 = *p[1]->out;
  CHECK(r1.bytes_received == size);
  CHECK(r1.chunks_received == chunks);
  CHECK(r1.tensors_pulled == 1);
  CHECK(r1.outdated);
  CHECK(r1.bytes_sent == 0);
  CHECK(r1.received_from == from);
  for (rank_t h : {0u, 2u}) {
    CAPTURE(h);
    CHECK(p[h]->out->bytes_received == 0);
    CHECK_FALSE(p[h]->out->outdated);
    CHECK(p[h]->out->bytes_sent == from[h]);
    CHECK(p[h]->out->sent_to[1] == from[h]);
  }
}

TEST_CASE("shared_state: 2-of-3 majority beats a higher revision", "[net][shared_state]") {
  auto p = make_peers(3, 64);
  for (std::size_t r = 0; r < 3; ++r) {
    p[r]->st.set_revision(r == 0 ? 9 : 5);  // rank 0 is alone with the highest revision
    p[r]->add("w", pattern(300, r == 0 ? 1 : 2));
  }
  inproc_fabric f(3);
  sync_all(f, p);
  require_ok(p);
  for (std::size_t r = 0; r < 3; ++r) {
    CAPTURE(r);
    CHECK(p[r]->mem.at("w") == pattern(300, 2));
    CHECK(p[r]->st.revision() == 5);
  }
  CHECK(p[0]->out->bytes_received == 300);
  CHECK(p[0]->out->outdated);
  CHECK(p[1]->out->bytes_sent + p[2]->out->bytes_sent == 300);
}

TEST_CASE("shared_state: ties go to the higher revision, then the lowest rank", "[net][shared_state]") {
  SECTION("2-peer tie at one revision: exactly one transfer, rank 0 wins") {
    auto p = make_peers(2, 1000);
    for (std::size_t r = 0; r < 2; ++r) {
      p[r]->st.set_revision(3);
      p[r]->add("x", pattern(2500, r));
    }
    inproc_fabric f(2);
    sync_all(f, p);
    require_ok(p);
    CHECK(p[1]->mem.at("x") == pattern(2500, 0));
    CHECK(p[0]->out->bytes_received == 0);
    CHECK(p[0]->out->bytes_sent == 2500);
    CHECK(p[1]->out->bytes_received == 2500);
    CHECK(p[1]->out->chunks_received == 3);
    CHECK(p[1]->out->received_from == std::vector<std::uint64_t>{2500, 0});
    CHECK(f.endpoint(0).stats().total_received() + f.endpoint(1).stats().total_received() > 2500);  // + manifests
  }
  SECTION("2 against 2: the pair with the higher revision wins") {
    auto p = make_peers(4, 1000);
    for (std::size_t r = 0; r < 4; ++r) {
      p[r]->st.set_revision(r >= 2 ? 6 : 4);
      p[r]->add("x", pattern(10, r >= 2 ? 1 : 0));
    }
    inproc_fabric f(4);
    sync_all(f, p);
    require_ok(p);
    for (std::size_t r = 0; r < 4; ++r) {
      CHECK(p[r]->mem.at("x") == pattern(10, 1));
      CHECK(p[r]->st.revision() == 6);
    }
  }
}

TEST_CASE("shared_state: a receive-only joiner with zeroed tensors catches up", "[net][shared_state]") {
  const std::size_t n = 3;
  auto p = make_peers(n, 512);
  for (std::size_t r = 0; r < n; ++r) {
    const bool joiner = r == 2;
    p[r]->st.set_revision(joiner ? 0 : 40);
    if (joiner) p[r]->opt.strategy = sync_strategy::receive_only;
    p[r]->add("emb", joiner ? bytes(2048) : pattern(2048, 1), dtype::f32);
    p[r]->add("head", joiner ? bytes(6) : pattern(6, 2), dtype::bf16);
    p[r]->add("none", {});
  }
  inproc_fabric f(n);
  sync_all(f, p);
  require_ok(p);
  require_equal_state(p, 0);
  CHECK(p[2]->st.revision() == 40);
  CHECK(p[2]->out->bytes_received == 2054);
  CHECK(p[2]->out->tensors_pulled == 2);
  CHECK(p[2]->out->previous_revision == 0);
  CHECK(p[0]->out->bytes_sent + p[1]->out->bytes_sent == 2054);
  CHECK(p[0]->out->bytes_received + p[1]->out->bytes_received == 0);
}

TEST_CASE("shared_state: an outdated peer pulls from every up-to-date holder", "[net][shared_state]") {
  // 4 peers, ranks 0, 1, 3 up to date, rank 2 outdated in both tensors.
  const std::uint64_t chunk = 256;
  const std::size_t n = 4;
  auto p = make_peers(n, chunk);
  const std::size_t sizes[2] = {12 * chunk - 5, 2 * chunk};
  for (std::size_t r = 0; r < n; ++r) {
    p[r]->add("t0", pattern(sizes[0], r == 2 ? 50 : 1));
    p[r]->add("t1", pattern(sizes[1], r == 2 ? 51 : 2));
  }
  inproc_fabric f(n);
  sync_all(f, p);
  require_ok(p);
  require_equal_state(p, 0);
  // holders {0, 1, 3}; chunk c of tensor i to puller 2 from holders[(c + i + 2) % 3].
  const rank_t holders[3] = {0, 1, 3};
  std::vector<std::uint64_t> from(n, 0);
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t c = 0; c * chunk < sizes[i]; ++c)
      from[holders[(c + i + 2) % 3]] += std::min<std::size_t>(chunk, sizes[i] - c * chunk);
  CHECK(from[0] > 0);
  CHECK(from[1] > 0);
  CHECK(from[3] > 0);
  CHECK(p[2]->out->received_from == from);
  CHECK(p[2]->out->bytes_received == sizes[0] + sizes[1]);
  CHECK(p[2]->out->chunks_received == 14);
  for (rank_t h : holders) CHECK(p[h]->out->sent_to[2] == from[h]);
  // Transport counters agree: what rank 2's endpoint received from each holder is its
  // chunks plus one hello, one manifest and one outcome.
  const auto st2 = f.endpoint(2).stats();
  for (rank_t h : holders) {
    CAPTURE(h);
    const std::uint64_t manifest_size = 32 + 8 + (32 + 2 + 16 * 12) + (32 + 2 + 16 * 2);
    CHECK(st2.received[h] == from[h] + 16 + manifest_size + 16);
  }
}

// ---- failures ------------------------------------------------------------------------------

TEST_CASE("shared_state: a lying holder gives data_loss and changes nothing", "[net][shared_state]") {
  const std::size_t n = 3;
  auto p = make_peers(n, 128);
  for (std::size_t r = 0; r < n; ++r) {
    p[r]->st.set_revision(r == 2 ? 1 : 2);
    p[r]->add("w", pattern(1000, r == 2 ? 9 : 1));
  }
  const bytes before = p[2]->mem.at("w");
  inproc_fabric f(n);
  lying_transport liar(f.endpoint(1));
  sync_all(f, p, 0, {nullptr, &liar, nullptr});
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r);
    REQUIRE_FALSE(p[r]->out.ok());
    CHECK(p[r]->out.status().code() == status_code::data_loss);
    CHECK(p[r]->out.status().message().find("rank 1") != std::string::npos);
  }
  CHECK(p[2]->mem.at("w") == before);
  CHECK(p[2]->st.revision() == 1);
  CHECK(p[0]->st.revision() == 2);

  // A retry without the liar succeeds (fresh sequence number).
  sync_all(f, p, 1);
  require_ok(p);
  require_equal_state(p, 0);
  CHECK(p[2]->mem.at("w") == pattern(1000, 1));
}

TEST_CASE("shared_state: a corrupt manifest is data_loss naming its sender", "[net][shared_state]") {
  const std::size_t n = 3;
  auto p = make_peers(n, 128);
  for (std::size_t r = 0; r < n; ++r) {
    p[r]->st.set_revision(r == 2 ? 1 : 2);
    p[r]->add("w", pattern(1000, r == 2 ? 9 : 1));
  }
  // Rank 1 parses everyone's manifests and finds the others gone; it only runs into its
  // (short) deadline, as docs/shared_state.md says.
  p[1]->opt.timeout = 200ms;
  const bytes before = p[2]->mem.at("w");
  inproc_fabric f(n);
  lying_transport liar(f.endpoint(1), 1);  // step 1: manifests
  sync_all(f, p, 0, {nullptr, &liar, nullptr});
  for (std::size_t r : {0u, 2u}) {
    CAPTURE(r);
    REQUIRE_FALSE(p[r]->out.ok());
    CHECK(p[r]->out.status().code() == status_code::data_loss);
    CHECK(p[r]->out.status().message().find("rank 1") != std::string::npos);
  }
  CHECK_FALSE(p[1]->out.ok());
  CHECK(p[2]->mem.at("w") == before);
  for (std::size_t r = 0; r < n; ++r) CHECK(p[r]->st.revision() == (r == 2 ? 1u : 2u));
}

TEST_CASE("shared_state: a peer killed mid-sync leaves the survivors unchanged", "[net][shared_state]") {
  // Rank 1 holds, rank 2 pulls; rank 1 dies at its send number crash_at: 0-1 hellos,
  // 2-3 manifests, then chunks.
  const std::size_t crash_at = GENERATE(0, 2, 4, 6);
  CAPTURE(crash_at);
  const std::size_t n = 3;
  auto p = make_peers(n, 64);
  for (std::size_t r = 0; r < n; ++r) {
    p[r]->opt.timeout = 3s;
    p[r]->st.set_revision(r == 2 ? 1 : 2);
    p[r]->add("w", pattern(1000, r == 2 ? 9 : 1));
  }
  const bytes before = p[2]->mem.at("w");
  inproc_fabric f(n);
  crashing_transport crash(f, 1, crash_at);
  sync_all(f, p, 0, {nullptr, &crash, nullptr});
  for (std::size_t r : {0u, 2u}) {
    CAPTURE(r);
    REQUIRE_FALSE(p[r]->out.ok());
    // Every survivor works with rank 1 (rank 0 in the manifest and outcome rounds), so it
    // hears of the crash from the transport instead of running into its deadline.
    CHECK(p[r]->out.status().code() == status_code::aborted);
  }
  CHECK(p[2]->mem.at("w") == before);
  CHECK(p[2]->st.revision() == 1);
  CHECK(p[0]->st.revision() == 2);
}

TEST_CASE("shared_state: incompatible tensor sets fail everywhere alike", "[net][shared_state]") {
  const std::size_t n = 3;
  auto p = make_peers(n, 64);
  std::string expect;
  SECTION("a name differs") {
    for (std::size_t r = 0; r < n; ++r) p[r]->add(r == 2 ? "bias" : "weight", pattern(8, 1));
    expect = "'bias'";
  }
  SECTION("a size differs") {
    for (std::size_t r = 0; r < n; ++r) p[r]->add("w", pattern(r == 1 ? 12 : 8, 1));
    expect = "'w' holds 8 bytes on rank 0 but 12 on rank 1";
  }
  SECTION("a type differs") {
    for (std::size_t r = 0; r < n; ++r) p[r]->add("w", pattern(8, 1), r == 2 ? dtype::f16 : dtype::f32);
    expect = "f16";
  }
  SECTION("chunk_bytes differ") {
    for (std::size_t r = 0; r < n; ++r) p[r]->add("w", pattern(8, 1));
    p[1]->opt.chunk_bytes = 32;
    expect = "chunk_bytes";
  }
  SECTION("a send_only peer loses") {
    for (std::size_t r = 0; r < n; ++r) p[r]->add("w", pattern(8, r == 0 ? 1 : 2));
    p[0]->opt.strategy = sync_strategy::send_only;
    expect = "send_only";
  }
  SECTION("everyone receive_only") {
    for (std::size_t r = 0; r < n; ++r) {
      p[r]->add("w", pattern(8, 1));
      p[r]->opt.strategy = sync_strategy::receive_only;
    }
    expect = "receive_only";
  }
  std::vector<bytes> before;
  for (auto& q : p) before.push_back(q->mem.begin()->second);
  inproc_fabric f(n);
  sync_all(f, p);
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r);
    REQUIRE_FALSE(p[r]->out.ok());
    CHECK(p[r]->out.status().code() == status_code::failed_precondition);
    CHECK(p[r]->out.status().message() == p[0]->out.status().message());
    CHECK(p[r]->out.status().message().find(expect) != std::string::npos);
    CHECK(p[r]->mem.begin()->second == before[r]);
  }
}

TEST_CASE("shared_state: send_only wins and never pulls", "[net][shared_state]") {
  // One send_only peer against two agreeing voters would lose; alone with a receive-only
  // peer it serves.
  auto p = make_peers(2, 64);
  p[0]->opt.strategy = sync_strategy::receive_only;
  p[1]->opt.strategy = sync_strategy::send_only;
  p[1]->st.set_revision(11);
  for (std::size_t r = 0; r < 2; ++r) p[r]->add("w", pattern(100, r));
  inproc_fabric f(2);
  sync_all(f, p);
  require_ok(p);
  require_equal_state(p, 1);
  CHECK(p[0]->st.revision() == 11);
  CHECK(p[1]->out->bytes_sent == 100);
}

TEST_CASE("shared_state: bad options are invalid_argument", "[net][shared_state]") {
  inproc_fabric f(1);
  shared_state s;
  sync_options o;
  SECTION("timeout") { o.timeout = 0ms; }
  SECTION("channel") { o.channel = 1u << 24; }
  SECTION("chunk 0") { o.chunk_bytes = 0; }
  SECTION("chunk huge") { o.chunk_bytes = max_chunk_bytes + 1; }
  SECTION("window") { o.max_inflight_sends = 0; }
  SECTION("strategy") { o.strategy = static_cast<sync_strategy>(3); }
  CHECK(sync_shared_state(f.endpoint(0), s, o, 0).status().code() == status_code::invalid_argument);
}
