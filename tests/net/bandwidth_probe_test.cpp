// bandwidth_probe and ring_view: the round-robin schedule against brute force, option
// errors, bit-identical matrices on every peer, fake slow links ranked below fast ones and
// avoided by the ring, and the proof that the optimized order is applied: a recording
// transport under the ring view shows every payload going to the successor in the
// optimized ring, never to the identity successor, with a bit-identical, exact result.
#include "dtrain/net/bandwidth_probe.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/net/allreduce_ring.h"
#include "net_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace dtrain::net::test;
using namespace std::chrono_literals;

namespace {

// Delays every send larger than 64 bytes on a slow directed link by ns_per_byte per byte
// before it leaves: a slow link whose time grows with the message, while pings and acks
// stay fast.
class slow_link_transport final : public forwarding_transport {
 public:
  slow_link_transport(transport& inner, std::set<std::pair<rank_t, rank_t>> slow, double ns_per_byte)
      : forwarding_transport(inner), slow_(std::move(slow)), ns_per_byte_(ns_per_byte) {}

  result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override {
    if (data.size() > 64 && slow_.count({rank(), to}))
      std::this_thread::sleep_for(std::chrono::nanoseconds(static_cast<long>(ns_per_byte_ * data.size())));
    return forwarding_transport::post_send(to, tag, data);
  }

 private:
  std::set<std::pair<rank_t, rank_t>> slow_;
  double ns_per_byte_;
};

// Records the destination (in the wrapped transport's ranks) and size of every send it
// posts. Used by one peer thread only.
class recording_transport final : public forwarding_transport {
 public:
  using forwarding_transport::forwarding_transport;
  struct sent {
    rank_t to;
    tag_t tag;
    std::size_t bytes;
  };
  result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override {
    auto o = forwarding_transport::post_send(to, tag, data);
    if (o.ok()) log.push_back({to, tag, data.size()});
    return o;
  }
  std::vector<sent> log;
};

constexpr std::size_t kMetaBytes = 24;  // the ring's metadata header; every other send is payload

// Runs a ring all-reduce of the exact-sum fixture over each peer's plan view and checks:
// every payload send of rank p went to succ(p) in `order` (and so never to the identity
// successor when that differs), the result is exact and bit-identical on every peer.
void check_ring_follows(inproc_fabric& f, std::vector<std::unique_ptr<recording_transport>>& rec,
                        std::vector<ring_plan>& plans, const std::vector<std::uint32_t>& order) {
  const std::size_t n = f.size(), count = 600;
  const auto x = exact_sum_inputs(n, count);
  auto o = opts("identity");
  o.channel = 9;
  const auto out = average_on_peers(
      f, [&](rank_t r, transport&) { return ring_allreduce::create(*plans[r].view, count, o); }, x);
  check_exact_sum_result(out, n, count);
  for (std::size_t r = 1; r < n; ++r) CHECK(same_bits(out[r].data, out[0].data));

  for (std::size_t pos = 0; pos < n; ++pos) {
    const rank_t p = order[pos], succ = order[(pos + 1) % n], identity_succ = static_cast<rank_t>((p + 1) % n);
    CAPTURE(p, succ, identity_succ);
    std::size_t payloads = 0, to_succ = 0, to_identity = 0, meta = 0;
    for (const auto& s : rec[p]->log) {
      if ((s.tag >> 40) != o.channel) continue;  // only this all-reduce
      if (s.bytes == kMetaBytes) {
        ++meta;
        continue;
      }
      ++payloads;
      to_succ += s.to == succ;
      to_identity += s.to == identity_succ;
    }
    CHECK(payloads == 2 * (n - 1));  // one reduce-scatter and one all-gather send per hop
    CHECK(to_succ == payloads);
    if (identity_succ != succ) CHECK(to_identity == 0);
    CHECK(meta == n - 1);
  }
}

}  // namespace

TEST_CASE("bandwidth_probe: the round-robin schedule meets every pair once, one pair per peer per round") {
  for (std::size_t n = 1; n <= 13; ++n) {
    CAPTURE(n);
    const std::size_t rounds = probe_rounds(n);
    CHECK(rounds == (n <= 1 ? 0 : n % 2 == 0 ? n - 1 : n));
    std::vector<int> met(n * n, 0);
    for (std::size_t r = 0; r < rounds; ++r) {
      std::size_t idle = 0;
      for (rank_t x = 0; x < n; ++x) {
        const rank_t y = round_robin_partner(n, r, x);
        REQUIRE(y < n);
        if (y == x) {
          ++idle;
          continue;
        }
        CHECK(round_robin_partner(n, r, y) == x);  // symmetric: at most one pair per peer
        ++met[x * n + y];
      }
      CHECK(idle == (n % 2 == 1 ? 1u : 0u));
    }
    for (std::size_t x = 0; x < n; ++x)
      for (std::size_t y = 0; y < n; ++y) CHECK(met[x * n + y] == (x == y ? 0 : 1));
  }
}

TEST_CASE("bandwidth_probe: bad options are invalid_argument") {
  inproc_fabric f(2);
  probe_options o;
  SECTION("bytes 0") { o.bytes = 0; }
  SECTION("repeats 0") { o.repeats = 0; }
  SECTION("timeout 0") { o.timeout = 0ms; }
  SECTION("channel 2^24") { o.channel = 1u << 24; }
  auto m = bandwidth_probe(f.endpoint(0), o);
  REQUIRE_FALSE(m.ok());
  CHECK(m.status().code() == status_code::invalid_argument);
}

TEST_CASE("bandwidth_probe: every peer gets the same valid matrix") {
  const std::size_t n = GENERATE(1, 2, 3, 4, 5);
  CAPTURE(n);
  inproc_fabric f(n);
  probe_options o;
  o.bytes = 2048;
  o.repeats = 1;
  o.timeout = 20s;
  std::vector<result<bandwidth_matrix>> got(n, invalid_argument("not run"));
  run_peers(f, [&](rank_t r, transport& t) { got[r] = bandwidth_probe(t, o); });
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r);
    REQUIRE(got[r].ok());
    REQUIRE(got[r]->n == n);
    REQUIRE(got[r]->bytes_per_s.size() == n * n);
    CHECK(std::memcmp(got[r]->bytes_per_s.data(), got[0]->bytes_per_s.data(), n * n * sizeof(double)) == 0);
  }
  const auto& m = *got[0];
  for (rank_t i = 0; i < n; ++i)
    for (rank_t j = 0; j < n; ++j) {
      CAPTURE(i, j);
      if (i == j)
        CHECK(m.at(i, j) == 0.0);
      else
        CHECK((std::isfinite(m.at(i, j)) && m.at(i, j) > 0.0));
    }
}

TEST_CASE("bandwidth_probe: fake slow links rank below fast ones and the ring avoids them") {
  // A pentagon whose sides are slow in both directions: the identity ring uses only slow
  // links, the pentagram (the complement of the pentagon) none; it is the only ring
  // without a slow link.
  // With `late`, rank 3 starts 100 ms after the others and every direction is timed
  // once: its round-0 partner, rank 2, sends first over the slow link 2 -> 3 and must not
  // count the wait for rank 3 (a ping inflated by it would make that link look fastest).
  const bool late = GENERATE(false, true);
  CAPTURE(late);
  const std::size_t n = 5;
  REQUIRE(round_robin_partner(n, 0, 3) == 2);
  std::set<std::pair<rank_t, rank_t>> slow;
  for (rank_t i = 0; i < n; ++i) {
    const rank_t j = static_cast<rank_t>((i + 1) % n);
    slow.insert({i, j});
    slow.insert({j, i});
  }
  inproc_fabric f(n);
  std::vector<std::unique_ptr<slow_link_transport>> shaped(n);
  std::vector<std::unique_ptr<recording_transport>> rec(n);
  for (rank_t r = 0; r < n; ++r) {
    shaped[r] = std::make_unique<slow_link_transport>(f.endpoint(r), slow, 1500.0);  // 16 KiB: ~25 ms
    rec[r] = std::make_unique<recording_transport>(*shaped[r]);
  }
  probe_options o;
  o.bytes = 16384;
  o.repeats = late ? 1 : 2;
  o.timeout = 30s;
  std::vector<result<bandwidth_matrix>> got(n, invalid_argument("not run"));
  std::vector<ring_plan> plans(n);
  std::vector<status> plan_st(n);
  run_peers(f, [&](rank_t r, transport&) {
    if (late && r == 3) std::this_thread::sleep_for(100ms);
    got[r] = bandwidth_probe(*rec[r], o);
    if (!got[r].ok()) return;
    auto p = ring_view(*rec[r], *got[r]);
    if (!p.ok()) return void(plan_st[r] = p.status());
    plans[r] = std::move(*p);
  });
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r);
    REQUIRE(got[r].ok());
    REQUIRE(plan_st[r].ok());
    CHECK(std::memcmp(got[r]->bytes_per_s.data(), got[0]->bytes_per_s.data(), n * n * sizeof(double)) == 0);
    CHECK(plans[r].ring.order == plans[0].ring.order);
  }
  const auto& m = *got[0];
  double slowest_fast = INFINITY, fastest_slow = 0;
  for (rank_t i = 0; i < n; ++i)
    for (rank_t j = 0; j < n; ++j) {
      if (i == j) continue;
      if (slow.count({i, j}))
        fastest_slow = std::max(fastest_slow, m.at(i, j));
      else
        slowest_fast = std::min(slowest_fast, m.at(i, j));
    }
  CAPTURE(slowest_fast, fastest_slow);
  CHECK(slowest_fast > fastest_slow);
  const auto& order = plans[0].ring.order;
  REQUIRE(order.size() == n);
  double ring_min = INFINITY;
  for (std::size_t k = 0; k < n; ++k) {
    CAPTURE(order, k);
    CHECK(slow.count({order[k], order[(k + 1) % n]}) == 0);
    ring_min = std::min(ring_min, m.at(order[k], order[(k + 1) % n]));
  }
  CHECK(plans[0].ring.bottleneck == ring_min);
  CHECK(plans[0].ring.bottleneck > fastest_slow);  // the pentagram beats every slow link

  // The ring over the views runs on the fast links only.
  check_ring_follows(f, rec, plans, order);
}

TEST_CASE("ring_view: the optimized order is applied (planted matrix, recorded sends)") {
  const std::size_t n = GENERATE(4, 5, 6);
  CAPTURE(n);
  // Planted ring: even ranks ascending, then odd ranks ascending (0 2 4 1 3 5): its links
  // get 1e8..1.1e8 bytes/s, every other link 1e6..1e7, so it is the unique best ring and
  // its successors differ from the identity ring's.
  std::vector<std::uint32_t> planted;
  for (std::uint32_t i = 0; i < n; i += 2) planted.push_back(i);
  for (std::uint32_t i = 1; i < n; i += 2) planted.push_back(i);
  bandwidth_matrix m;
  m.n = n;
  m.bytes_per_s.assign(n * n, 0.0);
  counter_rng g(42, n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j)
      if (i != j) m.bytes_per_s[i * n + j] = 1e6 + 9e6 * g.next_uniform();
  for (std::size_t k = 0; k < n; ++k)
    m.bytes_per_s[planted[k] * n + planted[(k + 1) % n]] = 1e8 + 1e7 * g.next_uniform();

  inproc_fabric f(n);
  std::vector<std::unique_ptr<recording_transport>> rec(n);
  std::vector<ring_plan> plans(n);
  for (rank_t r = 0; r < n; ++r) {
    rec[r] = std::make_unique<recording_transport>(f.endpoint(r));
    auto p = ring_view(*rec[r], m);
    REQUIRE(p.ok());
    plans[r] = std::move(*p);
    REQUIRE(plans[r].view->members().size() == n);
    CHECK(std::equal(planted.begin(), planted.end(), plans[r].view->members().begin()));
  }
  CHECK(plans[0].ring.order == planted);
  CHECK(plans[0].ring.exact);
  std::size_t differs = 0;
  for (std::size_t k = 0; k < n; ++k) differs += planted[(k + 1) % n] != (planted[k] + 1) % n;
  CHECK(differs >= n - 2);
  check_ring_follows(f, rec, plans, planted);
}

TEST_CASE("ring_view: a matrix that does not fit is invalid_argument") {
  inproc_fabric f(3);
  bandwidth_matrix m;
  SECTION("wrong n") {
    m.n = 2;
    m.bytes_per_s.assign(4, 1.0);
  }
  SECTION("wrong size") {
    m.n = 3;
    m.bytes_per_s.assign(8, 1.0);
  }
  SECTION("negative entry") {
    m.n = 3;
    m.bytes_per_s.assign(9, 1.0);
    m.bytes_per_s[1] = -1.0;
  }
  auto p = ring_view(f.endpoint(0), m);
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().code() == status_code::invalid_argument);
}

TEST_CASE("bandwidth_probe: a peer crashing mid-probe fails every survivor, nothing hangs") {
  const std::size_t n = 4;
  const std::size_t crash_at = GENERATE(0u, 3u);
  CAPTURE(crash_at);
  inproc_fabric f(n);
  crashing_transport crashing(f, 2, crash_at);
  probe_options o;
  o.bytes = 1024;
  o.repeats = 1;
  o.timeout = 150ms;
  std::vector<status> st(n);
  run_peers(f, [&](rank_t r, transport& t) {
    auto m = bandwidth_probe(r == 2 ? static_cast<transport&>(crashing) : t, o);
    st[r] = m.ok() ? ok_status() : m.status();
  });
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r, st[r].to_string());
    CHECK((st[r].code() == status_code::aborted || st[r].code() == status_code::deadline_exceeded));
  }
}
