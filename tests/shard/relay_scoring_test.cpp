// Relay scoring: the EMAs (alpha 0.3; a failure is a 0-bandwidth sample), the optimistic
// prior for untried relays, the weighted choice (untried first, down and avoided relays
// never, frequencies proportional to the weights, the 1% floor), and hedge thresholds.
#include "dtrain/shard/relay_scoring.h"

#include <catch2/catch.hpp>

#include <vector>

using namespace dtrain::shard;

TEST_CASE("relay_scoreboard: success and bandwidth EMAs") {
  relay_scoreboard b({"a", "b"});
  CHECK(b[0].success_ema == 1.0);
  CHECK(b[0].bandwidth_ema == 0.0);
  b.on_success(0, 1000, 1.0);  // the first sample sets the bandwidth
  CHECK(b[0].bandwidth_ema == Approx(1000.0));
  CHECK(b[0].success_ema == Approx(1.0));
  b.on_success(0, 2000, 1.0);
  CHECK(b[0].bandwidth_ema == Approx(0.7 * 1000 + 0.3 * 2000));
  b.on_failure(0);  // 0 bandwidth, not the timeout
  CHECK(b[0].bandwidth_ema == Approx(0.7 * (0.7 * 1000 + 0.3 * 2000)));
  CHECK(b[0].success_ema == Approx(0.7));
  CHECK(b[0].requests == 3);
  CHECK(b[0].failures == 1);
  CHECK(b[0].bytes == 3000);
  b.on_bad_chunk(0);
  CHECK(b[0].bad_chunks == 1);
  CHECK(b[0].failures == 2);
  CHECK(b[0].success_ema == Approx(0.49));
  b.on_suspect(1);
  CHECK(b[1].bad_chunks == 0);
  CHECK(b[1].success_ema == Approx(0.7));
  b.add_bad_chunk(1);
  CHECK(b[1].bad_chunks == 1);
  CHECK(b[1].failures == 1);
}

TEST_CASE("relay_scoreboard: a first failure scores 0 bandwidth") {
  relay_scoreboard b({"a"});
  b.on_failure(0);
  CHECK(b[0].bandwidth_ema == 0.0);
  CHECK(b.weight(0) == 0.0);
}

TEST_CASE("relay_scoreboard: untried relays get the best weight as prior and are picked first") {
  relay_scoreboard b({"a", "b", "c"}, 7);
  CHECK(b.weight(0) == 1.0);  // nothing measured: prior 1
  b.on_start(0);
  b.on_success(0, 100, 1.0);
  b.on_start(1);
  b.on_success(1, 400, 1.0);
  CHECK(b.weight(2) == Approx(400.0));
  // c was never started: it is picked before any weighted choice.
  CHECK(b.pick({}) == std::optional<std::size_t>(2));
  const std::vector<std::size_t> avoid_c{2};
  b.on_start(2);
  for (int i = 0; i < 50; ++i) {
    auto r = b.pick(avoid_c);
    REQUIRE(r);
    CHECK(*r != 2);
  }
}

TEST_CASE("relay_scoreboard: down relays are never picked; none left gives nullopt") {
  relay_scoreboard b({"a", "b"});
  b.mark_down(0);
  CHECK(b.up_count() == 1);
  for (int i = 0; i < 20; ++i) CHECK(b.pick({}) == std::optional<std::size_t>(1));
  const std::vector<std::size_t> avoid{1};
  CHECK_FALSE(b.pick(avoid).has_value());
  b.mark_down(1);
  CHECK_FALSE(b.pick({}).has_value());
}

TEST_CASE("relay_scoreboard: weighted choice follows success x bandwidth, floored at 1%") {
  relay_scoreboard b({"fast", "slow", "dead-ish"}, 42);
  for (std::size_t r = 0; r < 3; ++r) b.on_start(r);
  b.on_success(0, 3000, 1.0);
  b.on_success(1, 1000, 1.0);
  b.on_failure(2);  // weight 0, floored to 1% of 3000 = 30
  std::vector<int> n(3, 0);
  for (int i = 0; i < 40000; ++i) ++n[*b.pick({})];
  CAPTURE(n[0], n[1], n[2]);
  const double ratio = static_cast<double>(n[0]) / n[1];
  CHECK(ratio > 2.5);
  CHECK(ratio < 3.5);
  CHECK(n[2] > 0);
  CHECK(n[2] < n[1] / 10);
}

TEST_CASE("request_timer: hedge thresholds") {
  request_timer t;
  CHECK(t.hedge_after(1000, 2.0, 0.2) == Approx(2.0));  // no history: 10 x min
  t.record(1100, 0.5);  // all three in the class [1024, 2047]
  t.record(1200, 0.7);
  t.record(1500, 0.9);
  CHECK(t.median_seconds(2000) == Approx(0.7));
  CHECK(t.hedge_after(2000, 2.0, 0.2) == Approx(1.4));
  CHECK(t.hedge_after(2000, 2.0, 5.0) == Approx(5.0));  // the floor
  // Another size class: scaled from the median time per byte (0.7/1200 s/B).
  CHECK_FALSE(t.median_seconds(100000).has_value());
  CHECK(t.hedge_after(100000, 2.0, 0.0) == Approx(2.0 * (0.7 / 1200) * 100000));
}
