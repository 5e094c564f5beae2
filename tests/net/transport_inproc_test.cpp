// In-process transport: matching, ordering, deadlines, abort, kill and byte counters.
#include "dtrain/net/transport_inproc.h"

#include <catch2/catch.hpp>

#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

using namespace dtrain;
using namespace dtrain::net;
using namespace std::chrono_literals;

namespace {
std::span<const std::byte> cbytes(const std::vector<int>& v) { return std::as_bytes(std::span(v)); }
std::span<std::byte> bytes_of(std::vector<int>& v) { return std::as_writable_bytes(std::span(v)); }
}  // namespace

TEST_CASE("inproc: send before and after the matching receive") {
  inproc_fabric f(2);
  auto& a = f.endpoint(0);
  auto& b = f.endpoint(1);
  std::vector<int> msg(1000);
  std::iota(msg.begin(), msg.end(), 7);
  std::vector<int> got(1000, -1);

  SECTION("send first") {
    auto s = a.post_send(1, 5, cbytes(msg));
    REQUIRE(s.ok());
    auto r = recv(b, 0, 5, bytes_of(got), after(1000ms));
    REQUIRE(r.ok());
    CHECK(*r == msg.size() * sizeof(int));
    REQUIRE(a.wait(*s, after(1000ms)).ok());
  }
  SECTION("receive first") {
    auto r = b.post_recv(0, 5, bytes_of(got));
    REQUIRE(r.ok());
    REQUIRE(send(a, 1, 5, cbytes(msg), after(1000ms)).ok());
    auto n = b.wait(*r, after(1000ms));
    REQUIRE(n.ok());
  }
  CHECK(got == msg);
  CHECK(a.stats().sent[1] == msg.size() * sizeof(int));
  CHECK(b.stats().received[0] == msg.size() * sizeof(int));
  CHECK(a.stats().total_received() == 0);
}

TEST_CASE("inproc: tags keep messages apart and one tag keeps posting order") {
  inproc_fabric f(2);
  auto& a = f.endpoint(0);
  auto& b = f.endpoint(1);
  std::vector<int> m1{1}, m2{2}, m3{3};
  auto s1 = a.post_send(1, 1, cbytes(m1));
  auto s2 = a.post_send(1, 2, cbytes(m2));
  auto s3 = a.post_send(1, 1, cbytes(m3));
  REQUIRE((s1.ok() && s2.ok() && s3.ok()));
  std::vector<int> g(1, 0);
  REQUIRE(recv(b, 0, 2, bytes_of(g), after(1s)).ok());
  CHECK(g[0] == 2);
  REQUIRE(recv(b, 0, 1, bytes_of(g), after(1s)).ok());
  CHECK(g[0] == 1);
  REQUIRE(recv(b, 0, 1, bytes_of(g), after(1s)).ok());
  CHECK(g[0] == 3);
  std::vector<op> ops{*s1, *s2, *s3};
  CHECK(wait_all(a, ops, after(1s)).ok());
}

TEST_CASE("inproc: errors are typed") {
  inproc_fabric f(3);
  auto& a = f.endpoint(0);
  std::vector<int> buf(4);

  SECTION("bad peers") {
    CHECK(a.post_send(0, 1, cbytes(buf)).status().code() == status_code::invalid_argument);
    CHECK(a.post_recv(3, 1, bytes_of(buf)).status().code() == status_code::invalid_argument);
  }
  SECTION("deadline: an unmatched receive times out and is retired") {
    auto r = a.post_recv(1, 9, bytes_of(buf));
    REQUIRE(r.ok());
    auto n = a.wait(*r, after(20ms));
    CHECK(n.status().code() == status_code::deadline_exceeded);
    CHECK(a.wait(*r, after(20ms)).status().code() == status_code::invalid_argument);
    // A later send under that tag is not swallowed by the cancelled receive.
    std::vector<int> m{42, 43, 44, 45};
    auto s = f.endpoint(1).post_send(0, 9, cbytes(m));
    REQUIRE(s.ok());
    REQUIRE(recv(a, 1, 9, bytes_of(buf), after(1s)).ok());
    CHECK(buf == m);
    CHECK(f.endpoint(1).wait(*s, after(1s)).ok());
  }
  SECTION("a message longer than the buffer") {
    std::vector<int> big(5, 1);
    auto s = f.endpoint(1).post_send(0, 2, cbytes(big));
    REQUIRE(s.ok());
    CHECK(recv(a, 1, 2, bytes_of(buf), after(1s)).status().code() == status_code::resource_exhausted);
    CHECK(f.endpoint(1).wait(*s, after(1s)).ok());
  }
  SECTION("abort fails pending and later operations until reset") {
    auto r = a.post_recv(2, 1, bytes_of(buf));
    REQUIRE(r.ok());
    std::thread t([&] { a.abort(); });
    CHECK(a.wait(*r, no_deadline).status().code() == status_code::aborted);
    t.join();
    CHECK(a.post_recv(2, 1, bytes_of(buf)).status().code() == status_code::aborted);
    a.reset();
    auto r2 = a.post_recv(2, 1, bytes_of(buf));
    REQUIRE(r2.ok());
    std::vector<int> m{1, 2, 3, 4};
    REQUIRE(send(f.endpoint(2), 0, 1, cbytes(m), after(1s)).ok());
    CHECK(a.wait(*r2, after(1s)).ok());
    CHECK(buf == m);
  }
  SECTION("a killed peer fails every waiter with aborted, then revives") {
    auto r = a.post_recv(1, 1, bytes_of(buf));
    REQUIRE(r.ok());
    auto s = f.endpoint(2).post_send(1, 1, cbytes(buf));
    REQUIRE(s.ok());
    std::thread t([&] {
      std::this_thread::sleep_for(10ms);
      f.kill(1);
    });
    auto n = a.wait(*r, no_deadline);
    CHECK(n.status().code() == status_code::aborted);
    CHECK(n.status().message().find("peer 1 gone") != std::string::npos);
    CHECK(f.endpoint(2).wait(*s, after(1s)).status().code() == status_code::aborted);
    t.join();
    CHECK_FALSE(f.alive(1));
    CHECK(a.post_send(1, 1, cbytes(buf)).status().code() == status_code::aborted);
    f.revive(1);
    auto s2 = a.post_send(1, 1, cbytes(buf));
    REQUIRE(s2.ok());
    std::vector<int> g(4);
    REQUIRE(recv(f.endpoint(1), 0, 1, bytes_of(g), after(1s)).ok());
    CHECK(a.wait(*s2, after(1s)).ok());
  }
}

TEST_CASE("inproc: many threads exchange in a ring without deadlock") {
  const std::size_t n = 6;
  inproc_fabric f(n);
  std::vector<std::vector<int>> got(n, std::vector<int>(257));
  std::vector<std::thread> ts;
  std::vector<int> ok(n, 0);
  for (rank_t r = 0; r < n; ++r) {
    ts.emplace_back([&, r] {
      auto& t = f.endpoint(r);
      std::vector<int> mine(257, static_cast<int>(r));
      for (std::uint32_t round = 0; round < 50; ++round) {
        const auto tag = make_tag(3, round, 0);
        auto s = t.post_send((r + 1) % n, tag, cbytes(mine));
        auto rv = t.post_recv((r + n - 1) % n, tag, bytes_of(got[r]));
        if (!s.ok() || !rv.ok()) return;
        std::vector<op> ops{*s, *rv};
        if (!wait_all(t, ops, after(5s)).ok()) return;
      }
      ok[r] = 1;
    });
  }
  for (auto& t : ts) t.join();
  for (rank_t r = 0; r < n; ++r) {
    CHECK(ok[r] == 1);
    CHECK(got[r][256] == static_cast<int>((r + n - 1) % n));
    CHECK(f.endpoint(r).stats().sent[(r + 1) % n] == 50 * 257 * sizeof(int));
  }
}

TEST_CASE("make_tag packs channel, sequence and step") {
  CHECK(make_tag(1, 0, 0) == (tag_t{1} << 40));
  CHECK(make_tag(0, 1, 0) == (tag_t{1} << 16));
  CHECK(make_tag(0, 0, 1) == 1);
  CHECK(make_tag(0, 1u << 24, 0) == 0);  // sequence wraps mod 2^24
  CHECK(make_tag(2, 3, 4) != make_tag(2, 4, 3));
}
