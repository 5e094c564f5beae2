// The user-space link shaper: its release-time arithmetic (rate, latency, jitter, loss,
// order), and messages through a shaped TCP link arriving intact and in order.
#include <catch2/catch.hpp>

#include <cstring>

#include "dtrain/net/tcp/shaper.h"
#include "tcp_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace std::chrono;
using namespace std::chrono_literals;

namespace {
using tp = steady_clock::time_point;
double ms_between(tp a, tp b) { return duration<double, std::milli>(b - a).count(); }
}  // namespace

TEST_CASE("shaper: the rate queues bytes behind each other", "[net][tcp][shaper]") {
  tcp::shaper_options o;
  o.rate_bytes_per_s = 1e6;  // 1 MB/s: 1000 bytes take 1 ms
  tcp::link_shaper s(o);
  const tp t0 = steady_clock::now();
  CHECK(ms_between(t0, s.release(t0, 1000)) == Approx(1.0).margin(1e-6));
  CHECK(ms_between(t0, s.release(t0, 1000)) == Approx(2.0).margin(1e-6));  // behind the first
  // After the link drained, a new stripe starts from its own hand-over time.
  const tp later = t0 + 10ms;
  CHECK(ms_between(later, s.release(later, 500)) == Approx(0.5).margin(1e-6));
}

TEST_CASE("shaper: latency and jitter delay, loss adds a retransmission, order is kept", "[net][tcp][shaper]") {
  const tp t0 = steady_clock::now();
  SECTION("latency only") {
    tcp::shaper_options o;
    o.latency = 5ms;
    tcp::link_shaper s(o);
    CHECK(ms_between(t0, s.release(t0, 1 << 20)) == Approx(5.0).margin(1e-6));
  }
  SECTION("jitter stays within its bound and never reorders") {
    tcp::shaper_options o;
    o.latency = 10ms;
    o.jitter = 4ms;
    o.seed = 7;
    tcp::link_shaper s(o);
    tp prev = t0;
    double lo = 1e9, hi = -1e9;
    for (int i = 0; i < 1000; ++i) {
      const tp at = t0 + microseconds(100 * i);
      const tp r = s.release(at, 100);
      const double delay = ms_between(at, r);
      CHECK(r >= prev);
      prev = r;
      lo = std::min(lo, delay);
      hi = std::max(hi, delay);
    }
    CHECK(lo >= 6.0 - 1e-6);
    CHECK(hi <= 14.0 + 4.0);  // a stripe held behind an earlier, later-released one waits for it
    CHECK(hi > lo);           // the jitter does vary
  }
  SECTION("loss 1 adds the penalty to every stripe") {
    tcp::shaper_options o;
    o.loss = 1.0;
    o.loss_penalty = 200ms;
    tcp::link_shaper s(o);
    CHECK(ms_between(t0, s.release(t0, 10)) == Approx(200.0).margin(1e-6));
  }
  SECTION("disabled options say so") {
    CHECK_FALSE(tcp::shaper_options{}.enabled());
    tcp::shaper_options o;
    o.loss = 0.1;
    CHECK(o.enabled());
  }
}

TEST_CASE("shaper: a shaped TCP link delivers every message intact and in order", "[net][tcp][shaper]") {
  tcp::tcp_options o;
  o.streams = 2;
  o.stripe_bytes = 4096;
  o.shaper.rate_bytes_per_s = 50e6;
  o.shaper.latency = 200us;
  o.shaper.jitter = 150us;
  o.shaper.loss = 0.05;
  o.shaper.loss_penalty = 2ms;
  auto g = test::make_tcp_group(2, o);
  REQUIRE(g->error.empty());
  std::vector<std::vector<std::byte>> msgs;
  for (int i = 0; i < 12; ++i) {
    std::vector<std::byte> m(1000 + 2500 * static_cast<std::size_t>(i % 4));
    for (std::size_t k = 0; k < m.size(); ++k) m[k] = static_cast<std::byte>((k * 31 + static_cast<std::size_t>(i)) & 0xFF);
    msgs.push_back(std::move(m));
  }
  std::vector<op> sends;
  for (auto& m : msgs) {
    auto s = g->at(0).post_send(1, make_tag(4, 0, 0), m);
    REQUIRE(s.ok());
    sends.push_back(*s);
  }
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    std::vector<std::byte> got(msgs[i].size());
    auto n = recv(g->at(1), 0, make_tag(4, 0, 0), got, after(10s));
    REQUIRE(n.ok());
    CAPTURE(i);
    CHECK(got == msgs[i]);
  }
  CHECK(wait_all(g->at(0), sends, after(10s)).ok());
}
