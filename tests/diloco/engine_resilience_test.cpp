// DiLoCo engine resilience: error feedback with lossy codecs (telescoping), joiners'
// residuals, failed exchanges that must change nothing, retries and averager swaps.
#include "dtrain/diloco/engine.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <vector>

#include "diloco_test_util.h"
#include "dtrain/optim/outer_sgd.h"

using namespace dtrain;
using namespace dtrain::diloco;
using namespace dtrain::diloco::test;

TEST_CASE("diloco engine: error feedback telescopes with a lossy codec") {
  const std::string codec = GENERATE(as<std::string>{}, "minmax:bits=2", "topk:chunk=16,k=3,values=f32");
  CAPTURE(codec);
  SECTION("one peer: x = β·e + Δ exactly, e = x − decoded, Σ sent + e_T = Σ Δ") {
    const bool ef = GENERATE(true, false);
    CAPTURE(ef);
    auto log = std::make_shared<solo_log>();
    tensors w{std::vector<float>(20), std::vector<float>(11)};
    for (auto& t : w)
      for (std::size_t i = 0; i < t.size(); ++i) t[i] = 0.1f * static_cast<float>(i % 7);
    diloco_options o;
    o.inner_steps = 1;
    o.error_feedback = ef;
    auto e = diloco_engine::create(spans_of(w), solo_factory(codec, {}, log), o);
    REQUIRE(e.ok());
    const std::size_t n = 31;
    std::vector<double> sum_delta(n, 0.0), sum_sent(n, 0.0);
    double scale = 0;
    for (std::uint64_t s = 1; s <= 12; ++s) {
      pull_step(w, 0, s);
      const auto snap = std::vector<float>((*e)->snapshot(0).begin(), (*e)->snapshot(0).end());
      const auto e_prev = std::vector<float>((*e)->residual(0).begin(), (*e)->residual(0).end());
      const auto p = flatten(w);
      REQUIRE((*e)->after_inner_step().ok());
      const auto& x = log->inputs.back();
      const auto& d = log->outputs.back();
      for (std::size_t i = 0; i < n; ++i) {
        const float delta = snap[i] - p[i];
        const float want_x = ef ? 1.0f * e_prev[i] + delta : delta;
        REQUIRE(x[i] == want_x);  // GRACE convention, bit for bit
        if (ef) REQUIRE((*e)->residual(0)[i] == x[i] - d[i]);
        sum_delta[i] += delta;
        sum_sent[i] += d[i];
        scale = std::max(scale, std::fabs(static_cast<double>(x[i])));
      }
    }
    double worst = 0, residual_norm = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double e_t = ef ? (*e)->residual(0)[i] : 0.0;
      worst = std::max(worst, std::fabs(sum_sent[i] + e_t - sum_delta[i]));
      residual_norm += e_t * e_t;
    }
    const double tol = 12 * 4 * 6e-8 * scale;
    if (ef) {
      CHECK(worst <= tol);
      CHECK(residual_norm > 0);  // the codec was lossy
    } else {
      CHECK(worst > 100 * tol);  // without EF the loss of the codec stays lost
      CHECK((*e)->residual(0).empty());
    }
  }
  SECTION("three peers: per peer, Σ own decoded contribution + e_T = Σ Δ") {
    const auto logs = solo_logs(3);
    run_config c;
    c.K = 3;
    c.o.inner_steps = 2;
    c.o.error_feedback = true;
    c.steps = 10;
    c.init = common_init;
    c.inner = pull_step;
    c.trace = true;
    c.make_avg = [&](net::transport& t, std::uint32_t r, std::size_t n, std::uint32_t ch) {
      return reference_averager::create(t, n, ch, 1.0f, codec, {}, logs[r]);
    };
    const auto got = run_engine(c);
    const auto init = flatten(common_init(0));
    for (std::uint32_t r = 0; r < 3; ++r) {
      CAPTURE(r);
      REQUIRE(all_ok(got[r]));
      REQUIRE(logs[r]->outputs.size() == 5);
      // Δ_t = snapshot − params before the sync; the snapshot is what the previous sync
      // wrote back (α = 0).
      std::vector<double> lhs(init.size(), 0.0), rhs(init.size(), 0.0);
      std::vector<float> snap = init;
      double scale = 0;
      for (std::size_t t = 0; t < 5; ++t) {
        const auto before = flatten(got[r].before[2 * t + 1]);
        for (std::size_t i = 0; i < init.size(); ++i) {
          rhs[i] += static_cast<double>(snap[i] - before[i]);
          lhs[i] += logs[r]->outputs[t][i];
          scale = std::max(scale, std::fabs(static_cast<double>(logs[r]->inputs[t][i])));
        }
        snap = flatten(got[r].after[2 * t + 1]);
      }
      double worst = 0;
      for (std::size_t i = 0; i < init.size(); ++i)
        worst = std::max(worst, std::fabs(lhs[i] + got[r].final_residuals[0][i] - rhs[i]));
      CHECK(worst <= 5 * 4 * 6e-8 * scale);
    }
  }
}

TEST_CASE("diloco engine: a failed exchange changes nothing and training goes on") {
  // The averager fails round 1; error feedback with a lossy codec is on so that the
  // residual is part of the state that must not move.
  const int mode = GENERATE(0, 1, 2, 3);  // none τ=0, none τ=2, one_step, eager
  CAPTURE(mode);
  auto log = std::make_shared<solo_log>();
  tensors w = common_init(0);
  diloco_options o;
  o.inner_steps = mode == 1 ? 4 : 2;
  o.overlap_steps = mode == 1 ? 2 : 0;
  o.merge_alpha = mode == 1 ? 0.5f : 0.0f;
  o.delay = mode == 2 ? delay_mode::one_step : mode == 3 ? delay_mode::eager : delay_mode::none;
  o.peers = 1;
  o.error_feedback = true;
  auto e = diloco_engine::create(spans_of(w), solo_factory("minmax:bits=3", {1}, log), o);
  REQUIRE(e.ok());
  diloco_engine& eng = **e;
  // The step whose call consumes round 1: its sync (τ = 0), its merge (τ = 2), or the
  // next sync (delay modes).
  const std::uint64_t fail_step = mode == 0 ? 4 : mode == 1 ? 10 : 6;
  for (std::uint64_t s = 1; s < fail_step; ++s) {
    pull_step(w, 0, s);
    REQUIRE(eng.after_inner_step().ok());
  }
  pull_step(w, 0, fail_step);
  const auto params = flatten(w);
  const auto snap = std::vector<float>(eng.snapshot(0).begin(), eng.snapshot(0).end());
  const auto res = std::vector<float>(eng.residual(0).begin(), eng.residual(0).end());
  std::vector<std::byte> opt_state(eng.outer_optimizer(0)->state_bytes());
  REQUIRE(eng.outer_optimizer(0)->save_state(opt_state).ok());
  const auto outer_before = eng.stats(0).outer_steps;

  const status st = eng.after_inner_step();
  CHECK(st.code() == status_code::aborted);
  CHECK(same_bits(flatten(w), params));
  CHECK(same_bits(eng.snapshot(0), snap));
  CHECK(same_bits(eng.residual(0), res));
  std::vector<std::byte> opt_after(eng.outer_optimizer(0)->state_bytes());
  REQUIRE(eng.outer_optimizer(0)->save_state(opt_after).ok());
  CHECK(opt_after == opt_state);
  CHECK(eng.stats(0).failures == 1);
  CHECK(eng.stats(0).outer_steps == outer_before);
  CHECK(!eng.in_flight(0));

  // Training continues; the next exchange is round 2 and succeeds.
  for (std::uint64_t s = fail_step + 1; s <= fail_step + 2 * o.inner_steps; ++s) {
    pull_step(w, 0, s);
    REQUIRE(eng.after_inner_step().ok());
  }
  REQUIRE(eng.sync_now().ok());
  REQUIRE(log->rounds.size() >= 3);
  CHECK(log->rounds[0] == 0);
  CHECK(log->rounds[1] == 1);
  CHECK(log->rounds[2] == 2);
  CHECK(eng.stats(0).failures == 1);
  CHECK(eng.stats(0).exchanges == log->rounds.size() - 1);
}

TEST_CASE("diloco engine: sync_fragment retries a failed round at once") {
  tensors w = common_init(0);
  diloco_options o;
  o.inner_steps = 2;
  auto log = std::make_shared<solo_log>();
  auto e = diloco_engine::create(spans_of(w), solo_factory("identity", {0}, log), o,
                                 sgd_factory(optim::sgd_options::fedavg()));
  REQUIRE(e.ok());
  pull_step(w, 0, 1);
  REQUIRE((*e)->after_inner_step().ok());
  pull_step(w, 0, 2);
  const auto p = flatten(w);
  CHECK((*e)->after_inner_step().code() == status_code::aborted);
  REQUIRE((*e)->sync_fragment(0).ok());
  // One peer, identity codec, FedAvg in [−1, 1]: the retried round lands on the params.
  for (std::size_t i = 0; i < p.size(); ++i) CHECK(flatten(w)[i] == Approx(p[i]).margin(1e-6));
  CHECK(same_bits((*e)->snapshot(0), flatten(w)));
  CHECK(log->rounds == std::vector<std::uint64_t>{0, 1});
}

TEST_CASE("diloco engine: reset_averagers swaps the averagers between rounds") {
  tensors w = common_init(0);
  diloco_options o;
  o.inner_steps = 2;
  o.overlap_steps = 1;
  auto log1 = std::make_shared<solo_log>();
  auto log2 = std::make_shared<solo_log>();
  auto e = diloco_engine::create(spans_of(w), solo_factory("identity", {}, log1), o);
  REQUIRE(e.ok());
  pull_step(w, 0, 1);
  REQUIRE((*e)->after_inner_step().ok());
  pull_step(w, 0, 2);
  REQUIRE((*e)->after_inner_step().ok());  // launched, merges at step 3
  CHECK((*e)->in_flight(0));
  CHECK((*e)->reset_averagers(solo_factory("identity", {}, log2)).code() == status_code::failed_precondition);
  pull_step(w, 0, 3);
  REQUIRE((*e)->after_inner_step().ok());
  CHECK(!(*e)->in_flight(0));
  REQUIRE((*e)->reset_averagers(solo_factory("identity", {}, log2)).ok());
  REQUIRE((*e)->sync_now().ok());
  CHECK(log1->rounds == std::vector<std::uint64_t>{0});
  CHECK(log2->rounds == std::vector<std::uint64_t>{1});
}

TEST_CASE("diloco engine: a joiner's zero contribution keeps its residual, in every delay mode") {
  const int mode = GENERATE(0, 1, 2);  // none, one_step, eager
  CAPTURE(mode);
  const auto logs = solo_logs(3);
  run_config c;
  c.K = 3;
  c.o.inner_steps = 2;
  c.o.error_feedback = true;
  c.o.delay = mode == 1 ? delay_mode::one_step : mode == 2 ? delay_mode::eager : delay_mode::none;
  c.o.peers = 3;
  // Round 1 (launched at step 2) is normal; rank 2 joins (zero) in round 2, launched at
  // step 4, whose residual is taken at step 4 (none) or step 6 (delay modes).
  c.steps = mode == 0 ? 4 : 6;
  c.init = common_init;
  c.inner = pull_step;
  c.before_call = [](diloco_engine& e, std::uint32_t rank, std::uint64_t step) {
    if (rank == 2 && step == 4) e.mark_joiner();
  };
  c.make_avg = [&](net::transport& t, std::uint32_t r, std::size_t n, std::uint32_t ch) {
    return reference_averager::create(t, n, ch, 1.0f, "minmax:bits=3", {}, logs[r]);
  };
  const auto got = run_engine(c);
  for (std::uint32_t r = 0; r < 3; ++r) REQUIRE(all_ok(got[r]));
  REQUIRE(logs[2]->inputs.size() >= 2);
  for (float v : logs[2]->inputs[1]) CHECK(v == 0.0f);
  bool nonzero = false;
  for (float v : logs[1]->inputs[1]) nonzero = nonzero || v != 0.0f;
  CHECK(nonzero);
  // The joiner's residual is still the one round 1 left: x_1 − decoded(x_1).
  const auto& x1 = logs[2]->inputs[0];
  const auto& d1 = logs[2]->outputs[0];
  std::vector<float> e1(x1.size());
  for (std::size_t i = 0; i < e1.size(); ++i) e1[i] = x1[i] - d1[i];
  CHECK(same_bits(got[2].final_residuals[0], e1));
  // A non-joiner's residual moved on to round 2's.
  const auto& x2 = logs[1]->inputs[1];
  const auto& d2 = logs[1]->outputs[1];
  std::vector<float> e2(x2.size());
  for (std::size_t i = 0; i < e2.size(); ++i) e2[i] = x2[i] - d2[i];
  CHECK(same_bits(got[1].final_residuals[0], e2));
}
