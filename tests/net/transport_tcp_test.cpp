// The TCP transport against the transport contract: matching, striping over several
// streams, backlog and back-pressure, deadlines, lost peers, protocol errors.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <numeric>

#include "dtrain/core/rng.h"
#include "dtrain/net/allreduce_ring.h"
#include "dtrain/net/tcp/frame.h"
#include "net_test_util.h"
#include "tcp_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace std::chrono_literals;

namespace {

std::vector<std::byte> pattern(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> v(n);
  counter_rng rng(seed);
  for (auto& b : v) b = static_cast<std::byte>(rng.next_u32() & 0xFF);
  return v;
}

std::span<const std::byte> cbytes(const std::vector<std::byte>& v) { return {v.data(), v.size()}; }

}  // namespace

TEST_CASE("tcp: messages of every size arrive intact over 1 and 3 streams", "[net][tcp]") {
  const unsigned streams = GENERATE(1u, 3u);
  tcp::tcp_options o;
  o.streams = streams;
  o.stripe_bytes = 64 << 10;  // many stripes for the larger messages
  auto g = test::make_tcp_group(2, o);
  REQUIRE(g->error.empty());
  const std::vector<std::size_t> sizes = {0, 1, 7, 4096, 65536, 65537, (3u << 20) + 5};
  std::vector<std::string> failures(2);
  test::run_tcp_peers(*g, [&](rank_t r, transport& t) {
    const rank_t other = 1 - r;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      auto mine = pattern(sizes[i], 100 * r + i);
      auto want = pattern(sizes[i], 100 * other + i);
      std::vector<std::byte> got(sizes[i] + 3);
      auto so = t.post_send(other, make_tag(1, 0, static_cast<std::uint32_t>(i)), cbytes(mine));
      auto ro = t.post_recv(other, make_tag(1, 0, static_cast<std::uint32_t>(i)), got);
      if (!so.ok() || !ro.ok()) { failures[r] = "post failed"; return; }
      auto rs = t.wait(*ro, after(10s));
      auto ss = t.wait(*so, after(10s));
      if (!rs.ok() || !ss.ok()) { failures[r] = rs.status().to_string() + " / " + ss.status().to_string(); return; }
      if (*rs != sizes[i] || *ss != sizes[i] || std::memcmp(got.data(), want.data(), sizes[i]) != 0) {
        failures[r] = "size " + std::to_string(sizes[i]) + " corrupted";
        return;
      }
    }
  });
  CAPTURE(streams);
  CHECK(failures[0] == "");
  CHECK(failures[1] == "");
  const auto st = g->at(0).stats();
  const std::size_t total = std::accumulate(sizes.begin(), sizes.end(), std::size_t{0});
  CHECK(st.sent[1] == total);
  CHECK(st.received[1] == total);
}

TEST_CASE("tcp: same-tag messages match in posting order; unexpected messages wait in the backlog", "[net][tcp]") {
  tcp::tcp_options o;
  o.streams = 4;
  o.stripe_bytes = 4096;
  auto g = test::make_tcp_group(2, o);
  REQUIRE(g->error.empty());
  constexpr int kMessages = 20;
  // Rank 0 sends 20 messages under one tag (sizes vary so stripes interleave across
  // streams) before rank 1 posts any receive.
  std::vector<std::vector<std::byte>> msgs;
  for (int i = 0; i < kMessages; ++i) msgs.push_back(pattern(1000 + 3000 * (i % 5), i));
  std::vector<op> sends;
  for (auto& m : msgs) {
    auto so = g->at(0).post_send(1, make_tag(7, 0, 0), cbytes(m));
    REQUIRE(so.ok());
    sends.push_back(*so);
  }
  REQUIRE(wait_all(g->at(0), sends, after(10s)).ok());
  std::this_thread::sleep_for(50ms);  // let everything land in the backlog
  for (int i = 0; i < kMessages; ++i) {
    std::vector<std::byte> got(20000);
    auto n = recv(g->at(1), 0, make_tag(7, 0, 0), got, after(10s));
    REQUIRE(n.ok());
    CAPTURE(i);
    REQUIRE(*n == msgs[i].size());
    CHECK(std::memcmp(got.data(), msgs[i].data(), *n) == 0);
  }
}

TEST_CASE("tcp: a backlog over the cap stalls the sender, then drains in order", "[net][tcp]") {
  tcp::tcp_options o;
  o.unexpected_cap_bytes = 1 << 20;
  o.stripe_bytes = 256 << 10;
  o.socket_buffer_bytes = 256 << 10;
  auto g = test::make_tcp_group(2, o);
  REQUIRE(g->error.empty());
  std::vector<std::vector<std::byte>> msgs;
  for (int i = 0; i < 8; ++i) msgs.push_back(pattern(700 << 10, 50 + i));
  std::vector<op> sends;
  for (auto& m : msgs) {
    auto so = g->at(0).post_send(1, make_tag(3, 0, 0), cbytes(m));
    REQUIRE(so.ok());
    sends.push_back(*so);
  }
  std::this_thread::sleep_for(100ms);
  for (int i = 0; i < 8; ++i) {
    std::vector<std::byte> got(msgs[i].size());
    auto n = recv(g->at(1), 0, make_tag(3, 0, 0), got, after(10s));
    REQUIRE(n.ok());
    CAPTURE(i);
    CHECK(got == msgs[i]);
  }
  CHECK(wait_all(g->at(0), sends, after(10s)).ok());
}

TEST_CASE("tcp: deadlines, short buffers and cancelled sends leave the link usable", "[net][tcp]") {
  auto g = test::make_tcp_group(2);
  REQUIRE(g->error.empty());
  std::vector<std::byte> buf(16);
  SECTION("a receive nobody sends to times out") {
    auto r = recv(g->at(0), 1, make_tag(1, 1, 1), buf, after(100ms));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == status_code::deadline_exceeded);
  }
  SECTION("a message longer than the buffer is dropped with resource_exhausted") {
    auto big = pattern(100, 1);
    REQUIRE(send(g->at(1), 0, make_tag(1, 1, 2), cbytes(big), after(5s)).ok());
    auto r = recv(g->at(0), 1, make_tag(1, 1, 2), buf, after(5s));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == status_code::resource_exhausted);
  }
  // Afterwards the link still carries messages both ways.
  auto small = pattern(16, 9);
  REQUIRE(send(g->at(1), 0, make_tag(2, 0, 0), cbytes(small), after(5s)).ok());
  auto r = recv(g->at(0), 1, make_tag(2, 0, 0), buf, after(5s));
  REQUIRE(r.ok());
  CHECK(buf == small);
  CHECK(static_cast<tcp_transport&>(g->at(0)).peer_alive(1));
}

TEST_CASE("tcp: a crashed peer breaks the group for every survivor at once", "[net][tcp]") {
  auto g = test::make_tcp_group(3);
  REQUIRE(g->error.empty());
  std::vector<std::byte> buf(64);
  // Rank 1 waits on rank 0, which is alive: it still learns of rank 2's loss (peer_lost).
  auto r0 = g->at(0).post_recv(2, make_tag(1, 0, 0), buf);
  auto r1 = g->at(1).post_recv(0, make_tag(1, 0, 0), buf);
  REQUIRE(r0.ok());
  REQUIRE(r1.ok());
  static_cast<tcp_transport&>(g->at(2)).drop_connections();
  auto res0 = g->at(0).wait(*r0, after(5s));
  auto res1 = g->at(1).wait(*r1, after(5s));
  CHECK(res0.status().code() == status_code::aborted);
  CHECK(res1.status().code() == status_code::aborted);
  CHECK_THAT(res1.status().message(), Catch::Contains("rank 2"));
  CHECK(g->at(0).post_send(1, make_tag(5, 0, 0), buf).status().code() == status_code::aborted);
}

TEST_CASE("tcp: a peer that leaves gracefully fails only operations with it", "[net][tcp]") {
  tcp::tcp_options o;
  o.streams = 2;
  auto g = test::make_tcp_group(3, o);
  REQUIRE(g->error.empty());
  std::vector<std::byte> buf(64);
  // Data sent just before the goodbye still arrives.
  auto last = pattern(64, 11);
  REQUIRE(send(g->at(2), 0, make_tag(1, 0, 0), cbytes(last), after(5s)).ok());
  auto pending = g->at(1).post_recv(2, make_tag(1, 0, 9), buf);
  REQUIRE(pending.ok());
  g->transports[2].reset();  // the destructor leaves with a goodbye
  REQUIRE(recv(g->at(0), 2, make_tag(1, 0, 0), buf, after(5s)).ok());
  CHECK(buf == last);
  CHECK(g->at(1).wait(*pending, after(5s)).status().code() == status_code::aborted);
  auto msg = pattern(64, 3);
  REQUIRE(send(g->at(0), 1, make_tag(5, 0, 0), cbytes(msg), after(5s)).ok());
  REQUIRE(recv(g->at(1), 0, make_tag(5, 0, 0), buf, after(5s)).ok());
  CHECK(buf == msg);
}

TEST_CASE("tcp: without fail_group_on_peer_loss only the lost peer's operations fail", "[net][tcp]") {
  tcp::tcp_options o;
  o.fail_group_on_peer_loss = false;
  auto g = test::make_tcp_group(3, o);
  REQUIRE(g->error.empty());
  std::vector<std::byte> buf(64);
  auto r0 = g->at(0).post_recv(2, make_tag(1, 0, 0), buf);
  REQUIRE(r0.ok());
  static_cast<tcp_transport&>(g->at(2)).drop_connections();
  CHECK(g->at(0).wait(*r0, after(5s)).status().code() == status_code::aborted);
  auto again = g->at(1).post_recv(2, make_tag(1, 0, 1), buf);
  if (again.ok())
    CHECK(g->at(1).wait(*again, after(5s)).status().code() == status_code::aborted);
  else
    CHECK(again.status().code() == status_code::aborted);
  auto msg = pattern(64, 3);
  REQUIRE(send(g->at(0), 1, make_tag(5, 0, 0), cbytes(msg), after(5s)).ok());
  REQUIRE(recv(g->at(1), 0, make_tag(5, 0, 0), buf, after(5s)).ok());
  CHECK(buf == msg);
}

TEST_CASE("tcp: abort() fails pending operations until reset()", "[net][tcp]") {
  auto g = test::make_tcp_group(2);
  REQUIRE(g->error.empty());
  std::vector<std::byte> buf(8);
  auto ro = g->at(0).post_recv(1, make_tag(1, 0, 0), buf);
  REQUIRE(ro.ok());
  g->at(0).abort();
  CHECK(g->at(0).wait(*ro, after(5s)).status().code() == status_code::aborted);
  CHECK(g->at(0).post_recv(1, make_tag(1, 0, 0), buf).status().code() == status_code::aborted);
  g->at(0).reset();
  auto msg = pattern(8, 4);
  REQUIRE(send(g->at(1), 0, make_tag(1, 1, 0), cbytes(msg), after(5s)).ok());
  REQUIRE(recv(g->at(0), 1, make_tag(1, 1, 0), buf, after(5s)).ok());
  CHECK(buf == msg);
}

TEST_CASE("tcp: ring all-reduce over TCP is exact and bit-identical", "[net][tcp]") {
  const std::size_t n = GENERATE(2u, 3u, 4u);
  const std::string codec = GENERATE(as<std::string>{}, "identity", "fp16", "minmax:bits=8", "fp4");
  tcp::tcp_options o;
  o.streams = 2;
  o.stripe_bytes = 16 << 10;
  auto g = test::make_tcp_group(n, o);
  REQUIRE(g->error.empty());
  const std::size_t count = codec == "fp16" ? 4001 : 50'003;  // fp16 overflows above 65504
  std::vector<std::vector<float>> data(n);
  std::vector<std::string> errors(n);
  test::run_tcp_peers(*g, [&](rank_t r, transport& t) {
    collective_options co;
    co.codec = codec;
    auto ar = ring_allreduce::create(t, count, co);
    if (!ar.ok()) { errors[r] = ar.status().to_string(); return; }
    data[r] = test::exact_sum_input(n, r, count);
    auto st = (*ar)->average(data[r], 0);
    if (!st.ok()) errors[r] = st.to_string();
  });
  CAPTURE(n, codec);
  for (auto& e : errors) CHECK(e == "");
  for (std::size_t r = 1; r < n; ++r) CHECK(std::memcmp(data[r].data(), data[0].data(), count * 4) == 0);
  if (codec == "identity")
    for (std::size_t i = 0; i < count; i += 997) CHECK(data[0][i] == test::exact_sum_mean(n, i));
}

TEST_CASE("tcp: bad handshakes and corrupt frames are rejected without harm", "[net][tcp]") {
  auto g = test::make_tcp_group(2);
  REQUIRE(g->error.empty());
  const auto addr = g->addresses[0];
  auto raw_connect = [&] {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(addr.port);
    ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    return fd;
  };
  SECTION("garbage instead of a hello") {
    int fd = raw_connect();
    const char junk[88] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    REQUIRE(::write(fd, junk, sizeof junk) == static_cast<ssize_t>(sizeof junk));
    char c;
    CHECK(::read(fd, &c, 1) == 0);  // closed by the listener
    ::close(fd);
  }
  SECTION("a hello for another session is parked, never joined") {
    int fd = raw_connect();
    std::array<std::byte, 88> f{};
    tcp::hello h{999, 1, 0, 2, 0, 1, 0};
    tcp::encode_hello(h, std::span<std::byte, 32>(f.data() + 56, 32));
    tcp::frame_header fh;
    fh.type = tcp::frame_type::hello;
    fh.stripe_len = 32;
    tcp::encode_header(fh, std::span<std::byte, 56>(f.data(), 56));
    fh.checksum = tcp::frame_checksum(std::span<const std::byte, 56>(f.data(), 56), std::span<const std::byte>(f.data() + 56, 32));
    tcp::encode_header(fh, std::span<std::byte, 56>(f.data(), 56));
    REQUIRE(::write(fd, f.data(), f.size()) == 88);
    ::close(fd);
  }
  // The real peers are unaffected.
  auto msg = pattern(32, 5);
  std::vector<std::byte> buf(32);
  REQUIRE(send(g->at(1), 0, make_tag(9, 0, 0), cbytes(msg), after(5s)).ok());
  REQUIRE(recv(g->at(0), 1, make_tag(9, 0, 0), buf, after(5s)).ok());
  CHECK(buf == msg);
}

TEST_CASE("tcp: IPv6 loopback works where the host has it", "[net][tcp]") {
  auto probe = tcp::tcp_context::create(tcp::address{"::1", 0});
  if (!probe.ok()) {
    WARN("no IPv6 loopback here: " << probe.status().to_string());
    return;
  }
  probe->reset();
  auto g = test::make_tcp_group(2, {}, 7, "::1");
  REQUIRE(g->error.empty());
  CHECK(g->addresses[0].is_ipv6_literal());
  auto msg = pattern(1000, 6);
  std::vector<std::byte> buf(1000);
  REQUIRE(send(g->at(0), 1, make_tag(1, 0, 0), cbytes(msg), after(5s)).ok());
  REQUIRE(recv(g->at(1), 0, make_tag(1, 0, 0), buf, after(5s)).ok());
  CHECK(buf == msg);
}
