// The coordinator with real peer clients over TCP on 127.0.0.1 (threads in one process):
// bootstrap, step-boundary joins, crash / silence / leave eviction, suspicion, restart
// adoption, allowlist, groups.
#include "dtrain/membership/coordinator.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <set>

#include "dtrain/core/bytes.h"
#include "dtrain/membership/messages.h"
#include "membership/membership_test_util.h"

using namespace dtrain;
using namespace dtrain::membership;
using namespace dtrain::membership::testing;
using net::after;

namespace {

struct cluster {
  log_sink log;
  identity cid = seeded(200);
  std::unique_ptr<coordinator> coord;
  std::vector<std::unique_ptr<peer_client>> peers;

  explicit cluster(std::size_t min_peers = 1) {
    coord = coordinator::create(cid, fast_coordinator(log, min_peers)).value();
  }
  peer_client& add(std::uint32_t group = 0) {
    const auto i = peers.size();
    peers.push_back(peer_client::create(seeded(static_cast<std::uint8_t>(i + 1)),
                                        fast_client(*coord, static_cast<std::uint16_t>(6000 + i), log, group))
                        .value());
    return *peers.back();
  }
  // Adds n peers and joins them all at once (bootstrap with min_peers = n).
  std::vector<view> start(std::size_t n, std::uint32_t groups = 1) {
    for (std::size_t i = 0; i < n; ++i) add(static_cast<std::uint32_t>(i % groups));
    auto rs = in_parallel(n, [&](std::size_t i) { return peers[i]->join(after(long_wait)); });
    std::vector<view> vs;
    for (auto& r : rs) {
      REQUIRE(r.ok());
      vs.push_back(*r);
    }
    return vs;
  }
  // Everyone in `who` votes at once; returns their answers.
  std::vector<result<view>> vote(const std::vector<std::size_t>& who) {
    return in_parallel(who.size(), [&](std::size_t k) { return peers[who[k]]->update_membership(after(long_wait)); });
  }
};

void check_same(const std::vector<view>& vs) {
  for (const auto& v : vs) CHECK(v == vs.front());
}

}  // namespace

TEST_CASE("coordinator: bootstrap of 4 waits for min_peers, then admits all at once") {
  cluster c(4);
  for (int i = 0; i < 3; ++i) c.add();
  // Three are not enough: they register, stay pending, and join() times out.
  auto early = in_parallel(3, [&](std::size_t i) { return c.peers[i]->join(after(150ms)); });
  for (auto& r : early) CHECK(r.status().code() == status_code::deadline_exceeded);
  CHECK(c.coord->pending_count() == 3);
  CHECK(c.coord->current_view().epoch == 0);
  c.add();
  auto rs = in_parallel(4, [&](std::size_t i) { return c.peers[i]->join(after(long_wait)); });
  std::vector<view> vs;
  for (auto& r : rs) {
    REQUIRE(r.ok());
    vs.push_back(*r);
  }
  check_same(vs);
  CHECK(vs[0].epoch == 1);
  CHECK(vs[0].session != 0);
  REQUIRE(vs[0].members.size() == 4);
  std::set<std::size_t> ranks;
  for (std::size_t i = 0; i < 4; ++i) {
    auto r = c.peers[i]->rank_of(vs[0]);
    REQUIRE(r);
    ranks.insert(*r);
    CHECK(vs[0].members[*r].data_address == net::tcp::address{"127.0.0.1", static_cast<std::uint16_t>(6000 + i)});
  }
  CHECK(ranks.size() == 4);
  CHECK(c.coord->current_view() == vs[0]);
  CHECK(c.coord->pending_count() == 0);
  // join() again is a no-op for a member.
  CHECK(*c.peers[2]->join(after(1s)) == vs[0]);
}

TEST_CASE("coordinator: a joiner waits for every member's vote, then all see the same view") {
  cluster c(3);
  const auto v1 = c.start(3).front();
  auto& joiner = c.add();
  std::atomic<bool> joined{false};
  std::optional<result<view>> joined_view;
  std::thread jt([&] {
    joined_view.emplace(joiner.join(after(long_wait)));
    joined = true;
  });
  REQUIRE(eventually([&] { return c.coord->pending_count() == 1; }));
  // Every member agrees that someone is waiting.
  for (auto& r : in_parallel(3, [&](std::size_t i) { return c.peers[i]->peers_pending(after(long_wait)); })) {
    REQUIRE(r.ok());
    CHECK(*r);
  }
  // Two of three votes do not admit anyone.
  std::vector<result<view>> first_two;
  std::thread vt([&] { first_two = c.vote({0, 1}); });
  std::this_thread::sleep_for(200ms);
  CHECK_FALSE(joined.load());
  CHECK(c.coord->current_view().epoch == v1.epoch);
  auto last = c.peers[2]->update_membership(after(long_wait));
  vt.join();
  jt.join();
  REQUIRE(last.ok());
  REQUIRE(joined_view->ok());
  for (auto& r : first_two) {
    REQUIRE(r.ok());
    CHECK(*r == *last);
  }
  CHECK(**joined_view == *last);
  CHECK(last->epoch == v1.epoch + 1);
  CHECK(last->session != v1.session);
  REQUIRE(last->members.size() == 4);
  for (std::size_t i = 0; i < 3; ++i) CHECK(c.peers[i]->rank_of(*last) == c.peers[i]->rank_of(v1));  // ranks kept
  CHECK(joiner.rank_of(*last) == 3u);
  // A vote with nobody pending changes nothing: same epoch, same view.
  for (auto& r : in_parallel(4, [&](std::size_t i) { return c.peers[i]->peers_pending(after(long_wait)); }))
    CHECK_FALSE(*r);
  for (auto& r : c.vote({0, 1, 2, 3})) {
    REQUIRE(r.ok());
    CHECK(*r == *last);
  }
}

TEST_CASE("coordinator: a crashed member (closed without goodbye) is evicted and a new view published") {
  cluster c(3);
  const auto v1 = c.start(3).front();
  const auto dead = c.peers[1]->id();
  c.peers[1].reset();  // the process dies: its socket closes, no goodbye
  for (std::size_t i : {0u, 2u}) {
    auto v2 = c.peers[i]->await_view_after(v1.epoch, after(long_wait));
    REQUIRE(v2.ok());
    CHECK(v2->epoch == v1.epoch + 1);
    CHECK_FALSE(v2->contains(dead));
    CHECK(v2->members.size() == 2);
    CHECK(*v2 == c.coord->current_view());
  }
  // Survivors keep their relative order.
  const auto v2 = c.peers[0]->latest_view();
  CHECK((*c.peers[0]->rank_of(v2) < *c.peers[2]->rank_of(v2)) == (*c.peers[0]->rank_of(v1) < *c.peers[2]->rank_of(v1)));
  // And the step-boundary vote no longer waits for the dead peer.
  for (auto& r : c.vote({0, 2})) CHECK(*r == v2);
}

TEST_CASE("coordinator: graceful leave evicts at once") {
  cluster c(3);
  const auto v1 = c.start(3).front();
  REQUIRE(c.peers[2]->leave().ok());
  auto v2 = c.peers[0]->await_view_after(v1.epoch, after(long_wait));
  REQUIRE(v2.ok());
  CHECK(v2->members.size() == 2);
  CHECK_FALSE(v2->contains(c.peers[2]->id()));
  CHECK(c.log.count("goodbye") == 1);
  CHECK(c.peers[2]->update_membership(after(100ms)).status().code() == status_code::failed_precondition);
  CHECK(c.peers[2]->leave().code() == status_code::failed_precondition);
}

TEST_CASE("coordinator: a silent member (heartbeats stopped, socket open) is evicted and can rejoin") {
  cluster c(3);
  const auto v1 = c.start(3).front();
  c.peers[1]->pause_heartbeats_for_testing(true);
  auto v2 = c.peers[0]->await_view_after(v1.epoch, after(long_wait));
  REQUIRE(v2.ok());
  CHECK_FALSE(v2->contains(c.peers[1]->id()));
  CHECK(c.log.count("silent") >= 1);
  // The silent peer learns it is out.
  CHECK(c.peers[1]->await_view_after(v1.epoch, after(long_wait)).status().code() == status_code::aborted);
  CHECK(c.peers[1]->update_membership(after(1s)).status().code() == status_code::aborted);
  // It comes back: join() registers it again and the others' next vote admits it.
  c.peers[1]->pause_heartbeats_for_testing(false);
  std::optional<result<view>> back;
  std::thread jt([&] { back.emplace(c.peers[1]->join(after(long_wait))); });
  REQUIRE(eventually([&] { return c.coord->pending_count() == 1; }));
  auto votes = c.vote({0, 2});
  jt.join();
  REQUIRE(back->ok());
  CHECK((*back)->epoch == v2->epoch + 1);
  CHECK(c.peers[1]->rank_of(**back) == 2u);
  for (auto& r : votes) CHECK(*r == **back);
}

TEST_CASE("coordinator: one peer's accusation does not evict a live peer") {
  cluster c(3);
  const auto v1 = c.start(3).front();
  REQUIRE(c.peers[0]->report_failure(v1.epoch, c.peers[1]->id()).ok());
  // The suspect keeps heartbeating, so no newer view appears.
  CHECK(c.peers[0]->await_view_after(v1.epoch, after(3 * fd)).status().code() == status_code::deadline_exceeded);
  CHECK(c.coord->current_view() == v1);
  CHECK(c.log.count("suspects") == 1);
  // A suspect that really is hung goes sooner than the full deadline would allow; here
  // we only check that it goes.
  c.peers[1]->pause_heartbeats_for_testing(true);
  REQUIRE(c.peers[2]->report_failure(v1.epoch, c.peers[1]->id()).ok());
  auto v2 = c.peers[0]->await_view_after(v1.epoch, after(long_wait));
  REQUIRE(v2.ok());
  CHECK_FALSE(v2->contains(c.peers[1]->id()));
}

TEST_CASE("coordinator: restart on the same port keeps the epoch and the ranks") {
  cluster c(3);
  const auto v1 = c.start(3).front();
  const auto addr = c.coord->address();
  const bool lose_one = GENERATE(false, true);
  CAPTURE(lose_one);
  c.coord.reset();  // the coordinator dies; peers see EOF and start reconnecting
  if (lose_one) c.peers[2].reset();  // ... and one peer dies during the outage
  auto o = fast_coordinator(c.log, 3);
  o.listen = addr;
  REQUIRE(eventually([&] {
    auto r = coordinator::create(c.cid, o);
    if (r.ok()) c.coord = std::move(*r);
    return c.coord != nullptr;
  }));
  if (!lose_one) {
    // Every member re-registers within the grace period: the same view, same epoch.
    REQUIRE(eventually([&] { return c.coord->current_view() == v1 && c.log.count("grace over") > 0; }));
    for (auto& r : c.vote({0, 1, 2})) {
      REQUIRE(r.ok());
      CHECK(*r == v1);
    }
  } else {
    // The missing member is dropped after the grace period: epoch + 1, survivors keep order.
    auto v2 = c.peers[0]->await_view_after(v1.epoch, after(long_wait));
    REQUIRE(v2.ok());
    CHECK(v2->epoch == v1.epoch + 1);
    REQUIRE(v2->members.size() == 2);
    CHECK((*c.peers[0]->rank_of(*v2) < *c.peers[1]->rank_of(*v2)) ==
          (*c.peers[0]->rank_of(v1) < *c.peers[1]->rank_of(v1)));
    for (auto& r : c.vote({0, 1})) CHECK(*r == *v2);
  }
  CHECK(c.log.count("adopting epoch 1") >= 1);
}

TEST_CASE("coordinator: allowlist admits listed keys only") {
  log_sink log;
  const auto cid = seeded(200);
  auto o = fast_coordinator(log, 2);
  o.allowlist = {seeded(1).id(), seeded(2).id()};
  auto coord = coordinator::create(cid, o).value();
  auto stranger = peer_client::create(seeded(3), fast_client(*coord, 7003, log)).value();
  CHECK(stranger->join(after(long_wait)).status().code() == status_code::permission_denied);
  CHECK(log.count("not allowlisted") >= 1);
  auto a = peer_client::create(seeded(1), fast_client(*coord, 7001, log)).value();
  auto b = peer_client::create(seeded(2), fast_client(*coord, 7002, log)).value();
  auto rs = in_parallel(2, [&](std::size_t i) { return (i == 0 ? a : b)->join(after(long_wait)); });
  REQUIRE(rs[0].ok());
  REQUIRE(rs[1].ok());
  CHECK(rs[0]->members.size() == 2);
  CHECK_FALSE(rs[0]->contains(stranger->id()));
}

TEST_CASE("coordinator: groups travel in the view; each peer gets its group's sub-view") {
  cluster c(4);
  const auto v = c.start(4, 2).front();  // groups 0, 1, 0, 1
  const auto g0 = v.group_view(0), g1 = v.group_view(1);
  CHECK(g0.epoch == v.epoch);
  CHECK(g0.session == v.session);
  REQUIRE(g0.members.size() == 2);
  REQUIRE(g1.members.size() == 2);
  for (std::size_t i = 0; i < 4; ++i) {
    const auto& g = i % 2 == 0 ? g0 : g1;
    auto r = c.peers[i]->rank_of(g);
    REQUIRE(r);
    CHECK(g.members[*r].group == i % 2);
    CHECK_FALSE(c.peers[i]->rank_of(i % 2 == 0 ? g1 : g0));
  }
  // Sub-view order follows the full view's rank order.
  CHECK(*v.rank_of(g0.members[0].id) < *v.rank_of(g0.members[1].id));
  CHECK(v.group_view(5).members.empty());
}

TEST_CASE("coordinator: bad options are rejected") {
  const auto id = seeded(1);
  coordinator_options o;
  o.heartbeat_interval = 0ms;
  CHECK(coordinator::create(id, o).status().code() == status_code::invalid_argument);
  o = {};
  o.failure_deadline = o.heartbeat_interval;
  CHECK(coordinator::create(id, o).status().code() == status_code::invalid_argument);
  o = {};
  o.min_peers = 0;
  CHECK(coordinator::create(id, o).status().code() == status_code::invalid_argument);
  o = {};
  o.listen = {"256.1.1.1", 0};
  CHECK(coordinator::create(id, o).status().code() == status_code::unavailable);
  // Defaults: 1 s heartbeats, a deadline of at most 5 s.
  CHECK(coordinator_options{}.failure_deadline <= 5s);
}

// ---- hostile connections --------------------------------------------------------------

namespace {

// A bare POSIX TCP client, so the test speaks to the coordinator without the library.
struct raw_socket {
  int fd = -1;
  explicit raw_socket(std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~raw_socket() { ::close(fd); }
  void write(std::span<const std::byte> b) const {
    REQUIRE(::send(fd, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size()));
  }
  // Reads exactly n bytes; false on EOF, error or timeout.
  bool read(std::byte* out, std::size_t n, std::chrono::milliseconds t = long_wait) const {
    std::size_t got = 0;
    while (got < n) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(t.count())) <= 0) return false;
      const auto r = ::recv(fd, out + got, n - got, 0);
      if (r <= 0) return false;
      got += static_cast<std::size_t>(r);
    }
    return true;
  }
  result<message> read_message() const {
    std::vector<std::byte> f(message_prefix_bytes);
    if (!read(f.data(), f.size())) return unavailable("closed");
    auto len = message_length(f);
    if (!len.ok()) return len.status();
    f.resize(*len);
    if (!read(f.data() + message_prefix_bytes, *len - message_prefix_bytes)) return unavailable("closed");
    return decode_message(f);
  }
  // True once the coordinator has closed the connection (EOF or reset), reading and
  // discarding anything it sent first (a reject message).
  bool closed_by_peer() const {
    std::byte buf[4096];
    const auto end = std::chrono::steady_clock::now() + long_wait;
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) < 0) return false;
      if (p.revents == 0) continue;
      if (::recv(fd, buf, sizeof buf, 0) <= 0) return true;
    }
    return false;
  }
};

hello_body hello_for(const nonce& mine, std::uint16_t port) {
  hello_body h;
  h.peer_challenge = mine;
  h.data_address.host = "127.0.0.1";
  h.data_address.port = port;
  return h;
}

}  // namespace

TEST_CASE("coordinator: garbage, unsigned, replayed and silent connections are rejected and logged") {
  cluster c(2);
  const auto v1 = c.start(2).front();
  const auto port = c.coord->address().port;
  const auto mallory = seeded(66);
  nonce mine;
  random_bytes(mine);
  auto works = [&] {
    for (auto& r : c.vote({0, 1})) {
      REQUIRE(r.ok());
      CHECK(*r == v1);
    }
  };
  std::string expect;

  SECTION("garbage bytes") {
    raw_socket s(port);
    std::vector<std::byte> junk(64, std::byte{0x5A});
    s.write(junk);
    CHECK(s.closed_by_peer());
    expect = "bad magic";
  }
  SECTION("a frame claiming more than 1 MiB") {
    raw_socket s(port);
    REQUIRE(s.read_message().ok());
    auto f = encode_message(heartbeat_body{1}, mallory, {}, 1).value();
    store_le<std::uint32_t>(f.data() + 8, 0x7FFFFFFFu);
    s.write(std::span(f).first(message_prefix_bytes));
    CHECK(s.closed_by_peer());
    expect = "1 MiB";
  }
  SECTION("a hello with a bad signature") {
    raw_socket s(port);
    auto ch = s.read_message();
    REQUIRE(ch.ok());
    CHECK(ch->sender == c.coord->id());
    auto f = encode_message(hello_for(mine, 9000), mallory, std::get<challenge_body>(ch->body).value, 1).value();
    f.back() ^= std::byte{1};
    s.write(f);
    CHECK(s.closed_by_peer());
    expect = "bad signature";
  }
  SECTION("an unsigned hello (all-zero signature)") {
    raw_socket s(port);
    auto ch = s.read_message();
    REQUIRE(ch.ok());
    auto f = encode_message(hello_for(mine, 9000), mallory, std::get<challenge_body>(ch->body).value, 1).value();
    std::fill(f.end() - 64, f.end(), std::byte{0});
    s.write(f);
    CHECK(s.closed_by_peer());
    expect = "bad signature";
  }
  SECTION("a hello signed for another connection's challenge (replay)") {
    raw_socket s(port);
    REQUIRE(s.read_message().ok());
    nonce other;
    random_bytes(other);
    s.write(encode_message(hello_for(mine, 9000), mallory, other, 1).value());
    CHECK(s.closed_by_peer());
    expect = "wrong challenge";
  }
  SECTION("a replayed message (stale counter) after a valid hello") {
    raw_socket s(port);
    auto ch = s.read_message();
    REQUIRE(ch.ok());
    const auto theirs = std::get<challenge_body>(ch->body).value;
    s.write(encode_message(hello_for(mine, 9000), mallory, theirs, 1).value());
    auto w = s.read_message();
    REQUIRE(w.ok());
    CHECK(w->type() == message_type::welcome);
    CHECK(w->challenge == mine);  // the coordinator signs our challenge
    const auto hbf = encode_message(heartbeat_body{0}, mallory, theirs, 2).value();
    s.write(hbf);
    s.write(hbf);  // the same bytes again
    CHECK(s.closed_by_peer());
    expect = "stale or out-of-order counter";
  }
  SECTION("a connection that never says hello") {
    raw_socket s(port);
    REQUIRE(s.read_message().ok());
    CHECK(s.closed_by_peer());
    expect = "no hello";
  }
  SECTION("half a hello, then nothing") {
    raw_socket s(port);
    auto ch = s.read_message();
    REQUIRE(ch.ok());
    auto f = encode_message(hello_for(mine, 9000), mallory, std::get<challenge_body>(ch->body).value, 1).value();
    s.write(std::span(f).first(f.size() / 2));
    CHECK(s.closed_by_peer());
    expect = "no hello";
  }
  CAPTURE(c.log.all());
  CHECK(eventually([&] { return c.log.count(expect) >= 1; }));
  CHECK(c.log.count("rejected") >= 1);
  // The members never noticed: same view, votes still answered.
  CHECK(c.coord->current_view() == v1);
  CHECK(c.coord->pending_count() == 0);
  works();
}
