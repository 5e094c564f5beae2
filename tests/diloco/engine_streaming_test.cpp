// DiLoCo engine variants: Streaming fragments on staggered schedules, overlap with
// α-merge, one-step-delayed and eager outer steps, and the NoLoCo outer rule, each
// against a hand-written reference of its formula.
#include "dtrain/diloco/engine.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "diloco_test_util.h"
#include "dtrain/core/rng.h"
#include "dtrain/net/noloco_pairing.h"
#include "dtrain/optim/outer_sgd.h"

using namespace dtrain;
using namespace dtrain::diloco;
using namespace dtrain::diloco::test;

namespace {

// The streaming tests' inner step: targets and noise apart from the other tests'.
void inner_pull(tensors& w, std::uint32_t rank, std::uint64_t step) { seeded_pull_step(w, rank, step, 177); }

std::vector<float> mean_in_rank_order(const std::vector<std::vector<float>>& xs) {
  std::vector<float> acc(xs[0].size(), 0.0f);
  for (const auto& x : xs)
    for (std::size_t i = 0; i < acc.size(); ++i) acc[i] = acc[i] + x[i];
  for (float& a : acc) a = a / static_cast<float>(xs.size());
  return acc;
}

void unflatten(const std::vector<float>& flat, tensors& w) {
  std::size_t k = 0;
  for (auto& t : w)
    for (float& v : t) v = flat[k++];
}

}  // namespace

TEST_CASE("diloco streaming: strided fragments sync at their staggered steps") {
  // 5 tensors, P = 2 strided: fragment 0 = {0, 2, 4} (t_0 = 0), fragment 1 = {1, 3}
  // (t_1 = 2); H = 4. FedAvg, so a synced tensor is the replicas' mean.
  const std::vector<std::size_t> shapes{3, 4, 2, 5, 1};
  run_config c;
  c.K = 2;
  c.o.inner_steps = 4;
  c.o.fragments = 2;
  c.steps = 10;
  c.opt = sgd_factory(optim::sgd_options::fedavg());
  c.init = [&](std::uint32_t) { return init_shapes(shapes, 9); };
  c.inner = inner_pull;
  c.trace = true;
  const auto got = run_engine(c);
  REQUIRE(all_ok(got[0]));
  REQUIRE(all_ok(got[1]));
  const std::vector<std::vector<std::uint64_t>> want{{0, 0}, {0, 1}, {0, 1}, {1, 1}, {1, 1},
                                                     {1, 2}, {1, 2}, {2, 2}, {2, 2}, {2, 3}};
  CHECK(got[0].exchanges == want);
  CHECK(got[1].exchanges == want);
  // After step 2 fragment 1's tensors are the mean of both replicas; fragment 0's are
  // untouched (and differ between the replicas).
  for (std::size_t t = 0; t < shapes.size(); ++t) {
    CAPTURE(t);
    const bool in_frag1 = t % 2 == 1;
    for (std::uint32_t r = 0; r < 2; ++r) {
      if (in_frag1) {
        // FedAvg over 2 from the common snapshot: snapshot − (Δ0 + Δ1)/2.
        const auto snap = init_shapes(shapes, 9)[t];
        for (std::size_t i = 0; i < shapes[t]; ++i) {
          const float d0 = snap[i] - got[0].before[1][t][i], d1 = snap[i] - got[1].before[1][t][i];
          CHECK(got[r].after[1][t][i] == snap[i] + (-1.0f) * ((0.0f + d0 + d1) / 2.0f));
        }
      } else {
        CHECK(same_bits(got[r].after[1][t], got[r].before[1][t]));
      }
    }
    if (!in_frag1) CHECK(!same_bits(got[0].after[1][t], got[1].after[1][t]));
  }
}

TEST_CASE("diloco streaming: contiguous layout and its fragments' tensors") {
  tensors w = init_shapes({3, 4, 2, 5, 1}, 1);
  diloco_options o;
  o.inner_steps = 6;
  o.fragments = 2;
  o.layout = fragment_layout::contiguous;
  auto e = diloco_engine::create(spans_of(w), [](std::size_t n, std::uint32_t) { return solo_averager::create(n); }, o);
  REQUIRE(e.ok());
  CHECK(std::vector<std::size_t>((*e)->fragment_tensors(0).begin(), (*e)->fragment_tensors(0).end()) ==
        std::vector<std::size_t>{0, 1, 2});
  CHECK(std::vector<std::size_t>((*e)->fragment_tensors(1).begin(), (*e)->fragment_tensors(1).end()) ==
        std::vector<std::size_t>{3, 4});
  CHECK((*e)->stats(0).elements == 9);
  CHECK((*e)->stats(1).offset == 3);
}

TEST_CASE("diloco streaming: overlap merges τ steps later as α·local + (1−α)·global") {
  const std::uint32_t tau = GENERATE(1u, 2u, 3u);
  const float alpha = GENERATE(0.0f, 0.5f, 0.25f);
  CAPTURE(tau, alpha);
  const std::vector<std::size_t> shapes{6, 3};
  run_config c;
  c.K = 2;
  c.o.inner_steps = 4;
  c.o.overlap_steps = tau;
  c.o.merge_alpha = alpha;
  c.steps = 8 + tau;  // two launches (steps 4, 8), two merges (4 + τ, 8 + τ)
  c.init = [&](std::uint32_t) { return init_shapes(shapes, 21); };
  c.inner = inner_pull;
  c.trace = true;
  const auto got = run_engine(c);
  REQUIRE(all_ok(got[0]));
  REQUIRE(all_ok(got[1]));
  // Reference: launch at s = 4: Δ_r = snapshot − params; merge at 4 + τ with θ_g =
  // Nesterov(snapshot, mean Δ); params ← α·params + (1−α)·θ_g; every other step the
  // engine leaves the params alone.
  auto opt = optim::outer_sgd::create(9, optim::sgd_options::diloco());
  REQUIRE(opt.ok());
  std::vector<float> snap = flatten(init_shapes(shapes, 21));
  std::vector<std::vector<float>> pending;
  for (std::uint64_t s = 1; s <= c.steps; ++s) {
    CAPTURE(s);
    const std::size_t i = s - 1;
    const bool merge = s == 4 + tau || s == 8 + tau;
    const bool launch = s % 4 == 0;
    for (std::uint32_t r = 0; r < 2; ++r) {
      const auto b = flatten(got[r].before[i]);
      const auto a = flatten(got[r].after[i]);
      if (!merge) {
        CHECK(same_bits(a, b));
        continue;
      }
      (void)r;
    }
    if (merge) {
      const auto mean = mean_in_rank_order(pending);
      REQUIRE(opt->step(snap, mean).ok());
      for (std::uint32_t r = 0; r < 2; ++r) {
        const auto b = flatten(got[r].before[i]);
        std::vector<float> want(b.size());
        for (std::size_t k = 0; k < b.size(); ++k) want[k] = alpha == 0.0f ? snap[k] : alpha * b[k] + (1.0f - alpha) * snap[k];
        CHECK(same_bits(flatten(got[r].after[i]), want));
      }
    }
    if (launch) {
      pending.clear();
      for (std::uint32_t r = 0; r < 2; ++r) {
        const auto b = flatten(got[r].before[i]);
        std::vector<float> d(b.size());
        for (std::size_t k = 0; k < b.size(); ++k) d[k] = snap[k] - b[k];
        pending.push_back(d);
      }
    }
  }
  CHECK(same_bits(got[0].final_snapshots[0], snap));
  CHECK(got[0].totals.exchanges == 2);
}

TEST_CASE("diloco streaming: staggered overlapping fragments keep peers in step") {
  // P = 3, H = 6, τ = 2, α = 0.5, 20 steps, then sync_now(): every peer must end with
  // bit-identical parameters (exact-consensus averager, same call order everywhere).
  run_config c;
  c.K = 3;
  c.o.inner_steps = 6;
  c.o.fragments = 3;
  c.o.overlap_steps = 2;
  c.o.merge_alpha = 0.5f;
  c.steps = 20;
  c.sync_now_at_end = true;
  c.init = [](std::uint32_t) { return init_shapes({4, 4, 4, 4, 4, 4, 3}, 2); };
  c.inner = inner_pull;
  const auto got = run_engine(c);
  for (std::uint32_t r = 0; r < 3; ++r) {
    REQUIRE(all_ok(got[r]));
    CHECK(same_bits(flatten(got[r].final_params), flatten(got[0].final_params)));
    // fragments at offsets 0, 2, 4 over 20 steps: 3 + 4 + 3 launches, + 3 for sync_now
    CHECK(got[r].totals.exchanges == 13);
  }
}

namespace {

// One-step-delayed and eager DiLoCo written out by hand, one fragment.
std::vector<tensors> reference_delayed(std::size_t K, std::uint32_t H, std::uint64_t steps, bool eager,
                                       const optim::sgd_options& so, const std::vector<std::size_t>& shapes,
                                       bool drain) {
  std::vector<tensors> w(K, init_shapes(shapes, 31));
  const std::size_t n = flatten(w[0]).size();
  std::vector<std::vector<float>> snap(K, flatten(w[0]));
  std::vector<optim::outer_sgd> opt;
  for (std::size_t r = 0; r < K; ++r) opt.push_back(optim::outer_sgd::create(n, so).value());
  bool have = false;
  std::vector<float> avg;                   // Δ̄^(t−1)
  std::vector<std::vector<float>> prev(K);  // Δ_r^(t−1)
  const float M = static_cast<float>(K);
  auto sync = [&](bool fresh) {
    std::vector<std::vector<float>> d(K, std::vector<float>(n, 0.0f));
    for (std::size_t r = 0; r < K; ++r) {
      const auto f = flatten(w[r]);
      if (fresh)
        for (std::size_t i = 0; i < n; ++i) d[r][i] = snap[r][i] - f[i];
      if (eager) {
        std::vector<float> g(n);
        for (std::size_t i = 0; i < n; ++i) g[i] = have ? (avg[i] - prev[r][i] / M) + d[r][i] / M : d[r][i] / M;
        REQUIRE(opt[r].step(snap[r], g).ok());
      } else if (have) {
        REQUIRE(opt[r].step(snap[r], avg).ok());
      }
      unflatten(snap[r], w[r]);
    }
    have = fresh;
    if (fresh) {
      avg = mean_in_rank_order(d);
      prev = d;
    }
  };
  for (std::uint64_t s = 1; s <= steps; ++s) {
    for (std::uint32_t r = 0; r < K; ++r) inner_pull(w[r], r, s);
    if (s % H == 0) sync(true);
  }
  if (drain) {
    sync(true);
    sync(false);
  }
  return w;
}

}  // namespace

TEST_CASE("diloco streaming: one-step delay and eager updates match their formulas") {
  const bool eager = GENERATE(false, true);
  const bool drain = GENERATE(false, true);
  const bool nesterov = GENERATE(true, false);
  CAPTURE(eager, drain, nesterov);
  const auto so = nesterov ? optim::sgd_options::diloco() : optim::sgd_options::fedavg();
  const std::vector<std::size_t> shapes{5, 8};
  run_config c;
  c.K = 3;
  c.o.inner_steps = 3;
  c.o.delay = eager ? delay_mode::eager : delay_mode::one_step;
  c.o.peers = 3;
  c.steps = 12;
  c.sync_now_at_end = drain;
  c.opt = sgd_factory(so);
  c.init = [&](std::uint32_t) { return init_shapes(shapes, 31); };
  c.inner = inner_pull;
  const auto ref = reference_delayed(3, 3, 12, eager, so, shapes, drain);
  const auto got = run_engine(c);
  for (std::uint32_t r = 0; r < 3; ++r) {
    CAPTURE(r);
    REQUIRE(all_ok(got[r]));
    CHECK(same_bits(flatten(got[r].final_params), flatten(ref[r])));
  }
  if (!eager && drain)  // one_step ends in consensus after the drain
    CHECK(same_bits(flatten(got[1].final_params), flatten(got[0].final_params)));
  if (eager && drain && !nesterov) {
    // FedAvg is linear: each peer's fresh-minus-stale swaps telescope, so after the
    // drain every peer holds θ0 − Σ_t Δ̄^(t), up to rounding.
    const auto a = flatten(got[0].final_params);
    for (std::uint32_t r = 1; r < 3; ++r) {
      const auto b = flatten(got[r].final_params);
      for (std::size_t i = 0; i < a.size(); ++i) CHECK(std::fabs(a[i] - b[i]) <= 2e-6);
    }
    CHECK(!same_bits(flatten(got[1].final_params), flatten(got[0].final_params)));
  }
}

namespace {

// NoLoCo by hand: per peer φ (slow), θ (local), m; every H steps, within the round's
// groups: Δ̄ = mean(φ − θ), φ̄ = mean(φ) (member rank order), then
// m ← (μ·m + (−η)·Δ̄) + γ·(φ̄ − φ); φ ← φ + m; θ ← φ.
std::vector<tensors> reference_noloco(std::size_t K, std::uint32_t H, std::uint64_t steps, const noloco_options& no,
                                      const std::function<tensors(std::uint32_t)>& init,
                                      const std::function<std::vector<std::vector<std::uint32_t>>(std::uint64_t)>& groups) {
  std::vector<tensors> w(K);
  std::vector<std::vector<float>> phi(K), m(K);
  for (std::uint32_t r = 0; r < K; ++r) {
    w[r] = init(r);
    phi[r] = flatten(w[r]);
    m[r].assign(phi[r].size(), 0.0f);
  }
  const std::size_t n = phi[0].size();
  const float mu = static_cast<float>(no.mu), neg_eta = static_cast<float>(-no.eta), gamma = static_cast<float>(no.gamma);
  std::uint64_t round = 0;
  for (std::uint64_t s = 1; s <= steps; ++s) {
    for (std::uint32_t r = 0; r < K; ++r) inner_pull(w[r], r, s);
    if (s % H != 0) continue;
    std::vector<std::vector<float>> dbar(K), pbar(K);
    for (const auto& g : groups(round)) {
      std::vector<std::vector<float>> ds, ps;
      for (auto r : g) {
        const auto f = flatten(w[r]);
        std::vector<float> d(n);
        for (std::size_t i = 0; i < n; ++i) d[i] = phi[r][i] - f[i];
        ds.push_back(d);
        ps.push_back(phi[r]);
      }
      const auto md = mean_in_rank_order(ds), mp = mean_in_rank_order(ps);
      for (auto r : g) {
        dbar[r] = md;
        pbar[r] = mp;
      }
    }
    for (std::uint32_t r = 0; r < K; ++r) {
      for (std::size_t i = 0; i < n; ++i) {
        const float mm = (mu * m[r][i] + neg_eta * dbar[r][i]) + gamma * (pbar[r][i] - phi[r][i]);
        m[r][i] = mm;
        phi[r][i] = phi[r][i] + mm;
      }
      unflatten(phi[r], w[r]);
    }
    ++round;
  }
  return w;
}

}  // namespace

TEST_CASE("diloco streaming: NoLoCo outer rule") {
  noloco_options no;
  no.enabled = true;
  no.eta = 0.7;
  no.mu = 0.5;
  no.gamma = 0.3;
  // Different starting points per peer, so the pull toward the partner matters.
  auto init = [](std::uint32_t r) { return init_shapes({6, 5}, 40 + r); };
  SECTION("two peers, reference averager (the pair is everyone)") {
    run_config c;
    c.K = 2;
    c.o.inner_steps = 2;
    c.o.noloco = no;
    c.steps = 8;
    c.init = init;
    c.inner = inner_pull;
    const auto ref = reference_noloco(2, 2, 8, no, init, [](std::uint64_t) {
      return std::vector<std::vector<std::uint32_t>>{{0, 1}};
    });
    const auto got = run_engine(c);
    for (std::uint32_t r = 0; r < 2; ++r) {
      REQUIRE(all_ok(got[r]));
      CHECK(same_bits(flatten(got[r].final_params), flatten(ref[r])));
      CHECK(got[r].totals.exchanges == 4);
    }
  }
  SECTION("four peers over noloco_pairing: a new partner every round") {
    const std::uint64_t seed = 5;
    run_config c;
    c.K = 4;
    c.o.inner_steps = 2;
    c.o.noloco = no;
    c.steps = 10;
    c.init = init;
    c.inner = inner_pull;
    c.make_avg = [&](net::transport& t, std::uint32_t, std::size_t n, std::uint32_t ch) -> result<std::unique_ptr<net::averager>> {
      net::collective_options co;
      co.channel = ch;
      auto a = net::noloco_pairing::create(t, n, co, seed);
      if (!a.ok()) return std::move(a).status();
      return std::unique_ptr<net::averager>(std::move(a).value());
    };
    const auto ref = reference_noloco(4, 2, 10, no, init, [&](std::uint64_t round) {
      std::vector<std::vector<std::uint32_t>> gs;
      for (const auto& g : net::noloco_groups(4, seed, round)) gs.emplace_back(g.ranks().begin(), g.ranks().end());
      return gs;
    });
    const auto got = run_engine(c);
    for (std::uint32_t r = 0; r < 4; ++r) {
      CAPTURE(r);
      REQUIRE(all_ok(got[r]));
      CHECK(same_bits(flatten(got[r].final_params), flatten(ref[r])));
    }
    CHECK(!same_bits(flatten(got[0].final_params), flatten(got[1].final_params)));
  }
  SECTION("excluded joiners need exact consensus") {
    tensors w = init(0);
    diloco_options o;
    o.noloco = no;
    o.joiner = joiner_denominator::excluded;
    net::inproc_fabric f(1);
    auto make = [&](std::size_t n, std::uint32_t ch) -> result<std::unique_ptr<net::averager>> {
      net::collective_options co;
      co.channel = ch;
      auto a = net::noloco_pairing::create(f.endpoint(0), n, co, 1);
      if (!a.ok()) return std::move(a).status();
      return std::unique_ptr<net::averager>(std::move(a).value());
    };
    CHECK(diloco_engine::create(spans_of(w), make, o).status().code() == status_code::invalid_argument);
  }
}
