// push_sum: SGP-style push-sum on directed and irregular graphs, on real threads over the
// in-process fabric: convergence to the (weighted) mean, preservation of sum x and sum w
// (exact on integer data with dyadic weights), mass kept under lossy codecs, non-finite
// handling and failures.
#include "dtrain/net/push_sum.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/net/transport_inproc.h"
#include "dtrain/topology/generators.h"
#include "net_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace std::chrono_literals;
using test::run_peers;
using test::require_all_ok;

namespace {

using vecs = std::vector<std::vector<float>>;

topology::schedule push_schedule(result<topology::graph> g) {
  REQUIRE(g.ok());
  auto w = topology::push_sum_weights(*g);
  REQUIRE(w.ok());
  return topology::static_schedule(std::move(*w));
}

// An irregular, strongly connected directed graph: 0->1, 0->2, 1->2, 2->0, 2->3, 3->0.
// Its push-sum weights are column- but not row-stochastic, so only the de-biasing by w
// recovers the mean.
result<topology::graph> irregular4() {
  const std::vector<std::pair<std::uint32_t, std::uint32_t>> e = {{0, 1}, {0, 2}, {1, 2}, {2, 0}, {2, 3}, {3, 0}};
  return topology::from_edges(4, e);
}

struct history {
  std::vector<status> st;
  std::vector<std::vector<double>> w;  // [round][rank], round 0 = after init
  std::vector<vecs> num;               // [round][rank] numerators
  vecs z;                              // final estimates
  std::vector<average_report> rep;
};

history run_steps(const topology::schedule& s, const vecs& x, const std::vector<double>& weight,
                  std::size_t rounds, collective_options o = {}) {
  const std::size_t n = x.size(), count = x[0].size();
  history h;
  h.st.resize(n);
  h.w.assign(rounds + 1, std::vector<double>(n));
  h.num.assign(rounds + 1, vecs(n, std::vector<float>(count)));
  h.z.assign(n, std::vector<float>(count));
  h.rep.resize(n);
  inproc_fabric f(n);
  run_peers(f, [&](rank_t r, transport& t) {
    auto p = push_sum::create(t, count, o, s);
    if (!p.ok()) {
      h.st[r] = p.status();
      return;
    }
    h.st[r] = (*p)->init(x[r], weight[r]);
    for (std::size_t k = 0; k <= rounds && h.st[r].ok(); ++k) {
      if (k > 0) h.st[r] = (*p)->step(k - 1);
      if (!h.st[r].ok()) break;
      h.w[k][r] = (*p)->weight();
      (*p)->numerator(h.num[k][r]);
    }
    (*p)->estimate(h.z[r]);
    h.rep[r] = (*p)->last_report();
  });
  return h;
}

vecs random_vectors(std::size_t n, std::size_t count, std::uint64_t seed) {
  counter_rng rng(seed);
  vecs x(n, std::vector<float>(count));
  for (auto& v : x)
    for (float& e : v) e = rng.next_normal();
  return x;
}

}  // namespace

TEST_CASE("push_sum: converges to the mean on directed and irregular graphs", "[net][push_sum]") {
  struct topo {
    const char* name;
    topology::schedule s;
    std::size_t rounds;
  };
  std::vector<topo> topos;
  topos.push_back({"directed ring 6", push_schedule(topology::ring(6)), 120});
  topos.push_back({"directed exponential 8", push_schedule(topology::exponential(8)), 30});
  topos.push_back({"directed exponential 6", push_schedule(topology::exponential(6)), 40});
  topos.push_back({"irregular directed 4", push_schedule(irregular4()), 80});
  for (auto& tp : topos) {
    CAPTURE(tp.name);
    const std::size_t n = tp.s.n(), count = 9;
    const vecs x = random_vectors(n, count, n);
    std::vector<double> mean(count, 0.0);
    for (const auto& v : x)
      for (std::size_t k = 0; k < count; ++k) mean[k] += v[k] / static_cast<double>(n);
    const history h = run_steps(tp.s, x, std::vector<double>(n, 1.0), tp.rounds);
    require_all_ok(h.st);
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t k = 0; k < count; ++k) CHECK(h.z[r][k] == Approx(mean[k]).margin(1e-4));
    // sum w and sum x are preserved every round.
    for (std::size_t t = 0; t <= tp.rounds; t += 10) {
      double sw = 0;
      for (double w : h.w[t]) sw += w;
      CHECK(sw == Approx(static_cast<double>(n)).epsilon(1e-12));
      for (std::size_t k = 0; k < count; ++k) {
        double sx = 0;
        for (std::size_t r = 0; r < n; ++r) sx += h.num[t][r][k];
        CHECK(sx == Approx(mean[k] * static_cast<double>(n)).margin(1e-4));
      }
    }
  }
  SECTION("the weights really are not row stochastic on the irregular graph") {
    auto w = topology::push_sum_weights(*irregular4());
    REQUIRE(w.ok());
    CHECK_FALSE(topology::is_row_stochastic(*w).ok());
    const history h = run_steps(topology::static_schedule(*w), random_vectors(4, 2, 1), {1, 1, 1, 1}, 3);
    require_all_ok(h.st);
    CHECK(h.w[3][0] != 1.0);  // masses drift apart; z = x / w corrects for it
  }
}

TEST_CASE("push_sum: exact on integer data with dyadic weights", "[net][push_sum]") {
  SECTION("one-peer exponential: the exact mean in log2 n rounds") {
    const std::size_t n = GENERATE(2, 4, 8, 16);
    CAPTURE(n);
    counter_rng rng(5, n);
    vecs x(n, std::vector<float>(6));
    std::vector<double> mean(6, 0.0);
    for (auto& v : x)
      for (std::size_t k = 0; k < 6; ++k) {
        v[k] = static_cast<float>(static_cast<int>(rng.next_below(2001)) - 1000);
        mean[k] += v[k] / static_cast<double>(n);
      }
    const std::size_t tau = topology::ceil_log2(n);
    const history h = run_steps(topology::one_peer_exponential(n), x, std::vector<double>(n, 1.0), tau);
    require_all_ok(h.st);
    for (std::size_t r = 0; r < n; ++r) {
      CHECK(h.w[tau][r] == 1.0);
      for (std::size_t k = 0; k < 6; ++k) REQUIRE(h.z[r][k] == static_cast<float>(mean[k]));
    }
  }
  SECTION("directed ring: sum x and sum w exactly preserved") {
    const std::size_t n = 5, rounds = 6;
    counter_rng rng(8);
    vecs x(n, std::vector<float>(4));
    for (auto& v : x)
      for (float& e : v) e = static_cast<float>(static_cast<int>(rng.next_below(512)));
    const history h = run_steps(push_schedule(topology::ring(n)), x, std::vector<double>(n, 1.0), rounds);
    require_all_ok(h.st);
    for (std::size_t t = 0; t <= rounds; ++t) {
      double sw = 0;
      for (double w : h.w[t]) sw += w;
      CHECK(sw == static_cast<double>(n));
      for (std::size_t k = 0; k < 4; ++k) {
        double s0 = 0, st = 0;
        for (std::size_t r = 0; r < n; ++r) {
          s0 += x[r][k];
          st += h.num[t][r][k];
        }
        CHECK(st == s0);
      }
    }
  }
}

TEST_CASE("push_sum: weighted averages through the averager interface", "[net][push_sum]") {
  const std::size_t n = 8, count = 5;
  const vecs x = random_vectors(n, count, 21);
  const auto run = [&](const topology::schedule& s, std::size_t rpc, const std::vector<float>& weights) {
    push_sum_options po;
    po.rounds_per_call = rpc;
    return test::average_on_peers(
        n,
        [&](rank_t r, transport& t) {
          collective_options o;
          o.weight = weights[r];
          return push_sum::create(t, count, o, s, po);
        },
        x, /*want_residual=*/true);
  };
  const auto weighted_mean = [&](const std::vector<float>& weights) {
    std::vector<double> m(count, 0.0);
    double ws = 0;
    for (std::size_t r = 0; r < n; ++r) ws += weights[r];
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t k = 0; k < count; ++k) m[k] += weights[r] * static_cast<double>(x[r][k]) / ws;
    return m;
  };
  SECTION("weights r + 1, exponential graph, 40 rounds per call") {
    std::vector<float> w(n);
    for (std::size_t r = 0; r < n; ++r) w[r] = static_cast<float>(r + 1);
    const auto out = run(push_schedule(topology::exponential(n)), 40, w);
    const auto m = weighted_mean(w);
    for (std::size_t r = 0; r < n; ++r) {
      REQUIRE(out[r].st.ok());
      for (std::size_t k = 0; k < count; ++k) CHECK(out[r].data[k] == Approx(m[k]).margin(1e-5));
      CHECK(out[r].residual == std::vector<float>(count, 0.0f));  // the codec error stays in the mass
      CHECK(out[r].report.weight_sum == Approx(36.0 / 8.0));  // sum of weights spread evenly
    }
  }
  SECTION("one-peer exponential, log2 n rounds per call: the weighted mean") {
    const std::vector<float> w = {1, 2, 4, 8, 1, 2, 4, 8};
    const auto out = run(topology::one_peer_exponential(n), 3, w);
    const auto m = weighted_mean(w);
    for (std::size_t r = 0; r < n; ++r) {
      REQUIRE(out[r].st.ok());
      for (std::size_t k = 0; k < count; ++k) CHECK(out[r].data[k] == Approx(m[k]).margin(1e-6));
    }
  }
  SECTION("weight 0 makes a listener") {
    const std::vector<float> w = {0, 1, 0, 1, 0, 1, 0, 1};
    const auto out = run(push_schedule(topology::complete(n)), 1, w);
    const auto m = weighted_mean(w);
    for (std::size_t r = 0; r < n; ++r) {
      REQUIRE(out[r].st.ok());
      for (std::size_t k = 0; k < count; ++k) CHECK(out[r].data[k] == Approx(m[k]).margin(1e-6));
    }
  }
  SECTION("every weight 0: every node keeps its data") {
    const auto out = run(push_schedule(topology::complete(n)), 1, std::vector<float>(n, 0.0f));
    for (std::size_t r = 0; r < n; ++r) {
      REQUIRE(out[r].st.ok());
      CHECK(out[r].data == x[r]);
      CHECK(out[r].report.weight_sum == 0.0);
    }
  }
}

TEST_CASE("push_sum: a lossy codec loses no mass", "[net][push_sum]") {
  const std::size_t n = 6, count = 64, rounds = 40;
  const vecs x = random_vectors(n, count, 4);
  collective_options o;
  o.codec = GENERATE(std::string("fp16"), std::string("minmax:bits=8"));
  CAPTURE(o.codec);
  const auto s = push_schedule(topology::ring(n));
  const history h = run_steps(s, x, std::vector<double>(n, 1.0), rounds, o);
  require_all_ok(h.st);
  double d0 = 0, dt = 0;
  for (std::size_t k = 0; k < count; ++k) {
    double s0 = 0, st = 0;
    for (std::size_t r = 0; r < n; ++r) {
      s0 += x[r][k];
      st += h.num[rounds][r][k];
    }
    CHECK(st == Approx(s0).margin(1e-4));
    const double m = s0 / static_cast<double>(n);
    for (std::size_t r = 0; r < n; ++r) {
      d0 += (x[r][k] - m) * (x[r][k] - m);
      dt += (h.z[r][k] - m) * (h.z[r][k] - m);
    }
  }
  CHECK(std::sqrt(dt) < 0.05 * std::sqrt(d0));
}

TEST_CASE("push_sum: a share the codec overflows stays at home", "[net][push_sum]") {
  // fp16 turns 1e5 into Inf: the receivers drop that payload, and the sender must keep
  // the whole share instead of adding an infinite correction to itself.
  const std::size_t n = 4, count = 16, rounds = 3;
  vecs x = random_vectors(n, count, 9);
  x[0][5] = 1e5f;
  collective_options o;
  o.codec = "fp16";
  const auto s = push_schedule(topology::ring(n));
  const history h = run_steps(s, x, std::vector<double>(n, 1.0), rounds, o);
  require_all_ok(h.st);
  for (std::size_t k = 0; k < count; ++k) {
    double s0 = 0, st = 0;
    for (std::size_t r = 0; r < n; ++r) {
      s0 += x[r][k];
      st += h.num[rounds][r][k];
      CHECK(std::isfinite(h.z[r][k]));
    }
    CAPTURE(k);
    CHECK(st == Approx(s0).epsilon(1e-5).margin(1e-3));
  }
}

TEST_CASE("push_sum: non-finite input", "[net][push_sum]") {
  const std::size_t n = 4, count = 3;
  vecs x(n, std::vector<float>(count));
  for (std::size_t r = 0; r < n; ++r) std::fill(x[r].begin(), x[r].end(), static_cast<float>(r));
  x[2][1] = std::numeric_limits<float>::quiet_NaN();
  const auto s = push_schedule(topology::complete(n));
  SECTION("reject_nonfinite: the node drops its mass and rejoins with what it receives") {
    const history h = run_steps(s, x, std::vector<double>(n, 1.0), 2);
    require_all_ok(h.st);
    for (std::size_t r = 0; r < n; ++r) {
      CAPTURE(r);
      for (float v : h.z[r]) CHECK(v == Approx((0.0 + 1.0 + 3.0) / 3.0).epsilon(1e-6));
    }
    CHECK(h.w[0][2] == 0.0);
    double sw = 0;
    for (double w : h.w[2]) sw += w;
    CHECK(sw == Approx(3.0));
    CHECK(h.rep[2].dropped == 0);  // step 2 reports only its own round
  }
  SECTION("reject_nonfinite through the averager: residual = the dropped input") {
    const auto out = test::average_on_peers(
        n, [&](rank_t, transport& t) { return push_sum::create(t, count, {}, s); }, x, true);
    for (std::size_t r = 0; r < n; ++r) {
      CAPTURE(r);
      REQUIRE(out[r].st.ok());
      for (float v : out[r].data) CHECK(v == Approx(4.0 / 3.0).epsilon(1e-6));
      if (r != 2) CHECK(out[r].residual == std::vector<float>(count, 0.0f));
    }
    CHECK(out[2].residual[0] == 2.0f);
    CHECK(std::isnan(out[2].residual[1]));
    CHECK(out[2].report.dropped == 1);
  }
  SECTION("reject_nonfinite off: init refuses, the averager fails its neighbours with aborted") {
    collective_options o;
    o.robust.reject_nonfinite = false;
    inproc_fabric f(n);
    std::vector<status> init_st(n);
    run_peers(f, [&](rank_t r, transport& t) {
      auto p = push_sum::create(t, count, o, s);
      init_st[r] = p.ok() ? (*p)->init(x[r], 1.0) : p.status();
    });
    CHECK(init_st[2].code() == status_code::invalid_argument);
    CHECK(init_st[0].ok());
    const auto out = test::average_on_peers(
        n, [&](rank_t, transport& t) { return push_sum::create(t, count, o, s); }, x);
    CHECK(out[2].st.code() == status_code::invalid_argument);
    for (rank_t r : {0u, 1u, 3u}) {
      CAPTURE(r, out[r].st.to_string());
      CHECK(out[r].st.code() == status_code::aborted);
      CHECK(out[r].data == x[r]);
    }
  }
}

TEST_CASE("push_sum: failures leave the state unchanged", "[net][push_sum]") {
  const std::size_t n = 4, count = 6;
  const auto s = push_schedule(topology::ring(n));
  inproc_fabric f(n);
  f.kill(3);
  std::vector<status> st(n);
  std::vector<std::vector<float>> z(n, std::vector<float>(count));
  std::vector<double> w(n);
  run_peers(f, [&](rank_t r, transport& t) {
    collective_options o;
    o.timeout = 20000ms;
    auto p = push_sum::create(t, count, o, s);
    if (!p.ok()) {
      st[r] = p.status();
      return;
    }
    std::vector<float> v(count, static_cast<float>(r));
    (*p)->init(v, 2.0).ignore();
    st[r] = (*p)->step(0);
    (*p)->estimate(z[r]);
    w[r] = (*p)->weight();
  });
  // Directed ring: 3 receives from 2 and sends to 0.
  for (rank_t r : {0u, 2u, 3u}) {
    CAPTURE(r, st[r].to_string());
    CHECK(st[r].code() == status_code::aborted);
    CHECK(z[r] == std::vector<float>(count, static_cast<float>(r)));
    CHECK(w[r] == 2.0);
  }
  CHECK(st[1].ok());  // 1 only talks to 0 and 2
}

TEST_CASE("push_sum: create() and init() validate their arguments", "[net][push_sum]") {
  inproc_fabric f(4);
  transport& t = f.endpoint(0);
  const auto good = push_schedule(topology::ring(4));
  collective_options o;
  CHECK(push_sum::create(t, 4, o, good).ok());
  CHECK(push_sum::create(t, 4, o, push_schedule(topology::ring(5))).status().code() ==
        status_code::invalid_argument);
  {
    auto row_only = topology::uniform_weights(*irregular4());  // row, not column, stochastic
    REQUIRE(row_only.ok());
    CHECK(push_sum::create(t, 4, o, topology::static_schedule(*row_only)).status().code() ==
          status_code::invalid_argument);
  }
  push_sum_options po;
  po.rounds_per_call = 0;
  CHECK(push_sum::create(t, 4, o, good, po).status().code() == status_code::invalid_argument);
  o.robust.clip_to_median_norm = true;
  CHECK(push_sum::create(t, 4, o, good).status().code() == status_code::invalid_argument);
  o = {};
  o.robust.trim_fraction = 0.1;
  CHECK(push_sum::create(t, 4, o, good).status().code() == status_code::invalid_argument);
  o = {};
  o.weight = -1.0f;
  CHECK(push_sum::create(t, 4, o, good).status().code() == status_code::invalid_argument);
  o = {};
  auto p = push_sum::create(t, 4, o, good);
  REQUIRE(p.ok());
  CHECK((*p)->name() == "push_sum");
  CHECK_FALSE((*p)->exact_consensus());
  CHECK((*p)->weight() == 0.0);
  std::vector<float> v(4, 1.0f), bad(3);
  CHECK((*p)->init(bad, 1.0).code() == status_code::invalid_argument);
  CHECK((*p)->init(v, -1.0).code() == status_code::invalid_argument);
  CHECK((*p)->init(v, std::numeric_limits<double>::infinity()).code() == status_code::invalid_argument);
  CHECK((*p)->average(bad, 0).code() == status_code::invalid_argument);
  REQUIRE((*p)->init(v, 3.0).ok());
  CHECK((*p)->weight() == 3.0);
  std::vector<float> num(4);
  (*p)->numerator(num);
  CHECK(num == std::vector<float>(4, 3.0f));
}

TEST_CASE("push_sum: counts 0 and 1", "[net][push_sum]") {
  const std::size_t count = GENERATE(0, 1);
  const std::size_t n = 3;
  vecs x(n, std::vector<float>(count));
  for (std::size_t r = 0; r < n; ++r)
    for (float& e : x[r]) e = static_cast<float>(3 * r);
  const auto out = test::average_on_peers(
      n, [&](rank_t, transport& t) { return push_sum::create(t, count, {}, push_schedule(topology::complete(n))); },
      x);
  for (std::size_t r = 0; r < n; ++r) {
    REQUIRE(out[r].st.ok());
    for (float v : out[r].data) CHECK(v == Approx(3.0f).epsilon(1e-6));
  }
}
