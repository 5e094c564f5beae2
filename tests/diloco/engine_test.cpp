// DiLoCo engine: option checks, reductions to known algorithms (bit-exact against
// independent references), torch outer-step vectors, joiners, error feedback, failure
// semantics and byte counters. K peers run as threads over net::inproc_fabric.
#include "dtrain/diloco/engine.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <vector>

#include "diloco_test_util.h"
#include "dtrain/core/rng.h"
#include "dtrain/net/allreduce_butterfly.h"
#include "dtrain/net/allreduce_ring.h"
#include "dtrain/optim/outer_sgd.h"

using namespace dtrain;
using namespace dtrain::diloco;
using namespace dtrain::diloco::test;

namespace {

void unflatten(const std::vector<float>& flat, tensors& w) {
  std::size_t k = 0;
  for (auto& t : w)
    for (float& v : t) v = flat[k++];
}

// Plain DiLoCo written out by hand: K replicas, every H steps the mean pseudo-gradient
// (rank order, float, divided by K) goes through optim::outer_sgd on the shared
// snapshot. `final_sync` adds one forced round at the end (sync_now()).
std::vector<tensors> reference_diloco(std::size_t K, std::uint32_t H, std::uint64_t steps, const optim::sgd_options& so,
                                      bool final_sync) {
  std::vector<tensors> w(K);
  for (std::uint32_t r = 0; r < K; ++r) w[r] = common_init(r);
  std::vector<float> snap = flatten(w[0]);
  auto opt = optim::outer_sgd::create(snap.size(), so);
  REQUIRE(opt.ok());
  auto round = [&] {
    std::vector<float> acc(snap.size(), 0.0f);
    for (std::uint32_t r = 0; r < K; ++r) {
      const auto f = flatten(w[r]);
      for (std::size_t i = 0; i < acc.size(); ++i) acc[i] = acc[i] + (snap[i] - f[i]);
    }
    for (float& a : acc) a = a / static_cast<float>(K);
    REQUIRE(opt->step(snap, acc).ok());
    for (auto& wr : w) unflatten(snap, wr);
  };
  for (std::uint64_t s = 1; s <= steps; ++s) {
    for (std::uint32_t r = 0; r < K; ++r) pull_step(w[r], r, s);
    if (s % H == 0) round();
  }
  if (final_sync) round();
  return w;
}

}  // namespace

TEST_CASE("diloco engine: create validates its options and factories") {
  tensors w = common_init(0);
  auto make = solo_factory();
  auto bad = [&](diloco_options o) {
    return diloco_engine::create(spans_of(w), make, o).status().code() == status_code::invalid_argument;
  };
  diloco_options o;
  o.inner_steps = 4;
  CHECK(diloco_engine::create(spans_of(w), make, o).ok());
  SECTION("fields") {
    auto t = o;
    t.inner_steps = 0;
    CHECK(bad(t));
    t = o;
    t.fragments = 0;
    CHECK(bad(t));
    t = o;
    t.fragments = 6;  // 5 tensors
    CHECK(bad(t));
    t = o;
    t.overlap_steps = 4;  // must be < H
    CHECK(bad(t));
    t = o;
    t.merge_alpha = 1.5f;
    CHECK(bad(t));
    t = o;
    t.merge_alpha = std::nanf("");
    CHECK(bad(t));
    t = o;
    t.delay = delay_mode::one_step;
    t.overlap_steps = 1;
    CHECK(bad(t));
    t = o;
    t.delay = delay_mode::eager;  // peers missing
    CHECK(bad(t));
    t.peers = 2;
    CHECK(!bad(t));
    t = o;
    t.ef_beta = -0.1f;
    CHECK(bad(t));
    t = o;
    t.noloco.enabled = true;
    t.noloco.mu = 2;
    CHECK(bad(t));
    t = o;
    t.base_channel = (1u << 24) - 1;  // one averager fits
    CHECK(!bad(t));
    t.fragments = 2;
    CHECK(bad(t));
  }
  SECTION("no tensors, bad factories") {
    CHECK(diloco_engine::create({}, make, o).status().code() == status_code::invalid_argument);
    averager_factory null_avg = [](std::size_t, std::uint32_t) -> result<std::unique_ptr<net::averager>> {
      return std::unique_ptr<net::averager>();
    };
    CHECK(diloco_engine::create(spans_of(w), null_avg, o).status().code() == status_code::invalid_argument);
    averager_factory wrong_size = [](std::size_t n, std::uint32_t) { return solo_averager::create(n + 1); };
    CHECK(diloco_engine::create(spans_of(w), wrong_size, o).status().code() == status_code::invalid_argument);
    averager_factory failing = [](std::size_t, std::uint32_t) -> result<std::unique_ptr<net::averager>> {
      return unavailable("no peers");
    };
    CHECK(diloco_engine::create(spans_of(w), failing, o).status().code() == status_code::unavailable);
    optimizer_factory bad_opt = sgd_factory({-1.0, 0, 0, 0, false, false});
    CHECK(diloco_engine::create(spans_of(w), make, o, bad_opt).status().code() == status_code::invalid_argument);
  }
  SECTION("factories see each fragment's size and channel") {
    std::vector<std::pair<std::size_t, std::uint32_t>> seen;
    averager_factory spy = [&](std::size_t n, std::uint32_t ch) {
      seen.emplace_back(n, ch);
      return solo_averager::create(n);
    };
    auto t = o;
    t.fragments = 3;
    t.base_channel = 10;
    auto e = diloco_engine::create(spans_of(w), spy, t);
    REQUIRE(e.ok());
    // strided, shapes {7, 0, 13, 1, 5}: {0, 3} = 8, {1, 4} = 5, {2} = 13 floats.
    CHECK(seen == std::vector<std::pair<std::size_t, std::uint32_t>>{{8, 10}, {5, 11}, {13, 12}});
    CHECK((*e)->fragment_tensors(0).size() == 2);
    CHECK((*e)->fragment_tensors(0)[1] == 3);
    CHECK((*e)->stats(2).elements == 13);
    CHECK((*e)->outer_optimizer(1)->size() == 5);
    CHECK(same_bits((*e)->snapshot(2), w[2]));
  }
}

TEST_CASE("diloco engine: plain DiLoCo and its Streaming forms equal a hand-written reference, bit for bit") {
  // Nesterov 0.7/0.9 applied by optim::outer_sgd to the rank-order mean pseudo-gradient,
  // and FedAvg (lr 1, momentum 0) on the same mean.
  const bool nesterov = GENERATE(true, false);
  const int cfg = GENERATE(0, 1, 2, 3);
  const bool final_sync = GENERATE(false, true);
  // Reference averager and butterfly (rank-order sums: bit-exact); ring (its own
  // chunked order: same within rounding, and bit-identical across peers).
  const int avg = GENERATE(0, 1, 2);
  CAPTURE(nesterov, cfg, final_sync, avg);
  const auto so = nesterov ? optim::sgd_options::diloco() : optim::sgd_options::fedavg();
  run_config c;
  c.K = 3;
  c.o.inner_steps = 3;
  c.steps = final_sync ? 8 : 9;
  c.sync_now_at_end = final_sync;
  c.opt = sgd_factory(so);
  c.init = common_init;
  c.inner = pull_step;
  if (cfg == 1 || cfg == 2) {  // Streaming fragments syncing together == one fragment
    c.o.fragments = 3;
    c.o.staggered = false;
    c.o.layout = cfg == 1 ? fragment_layout::strided : fragment_layout::contiguous;
  }
  if (cfg == 3) c.o.base_channel = 77;
  if (avg == 1) c.make_avg = make_collective<net::butterfly_allreduce>;
  if (avg == 2) c.make_avg = make_collective<net::ring_allreduce>;
  const auto ref = reference_diloco(c.K, c.o.inner_steps, c.steps, so, final_sync);
  const auto got = run_engine(c);
  const std::uint64_t rounds = c.steps / c.o.inner_steps + (final_sync ? 1 : 0);
  for (std::uint32_t r = 0; r < c.K; ++r) {
    CAPTURE(r);
    REQUIRE(all_ok(got[r]));
    if (avg < 2) {
      CHECK(same_bits(flatten(got[r].final_params), flatten(ref[r])));
    } else {
      const auto a = flatten(got[r].final_params), b = flatten(ref[r]);
      for (std::size_t i = 0; i < a.size(); ++i) CHECK(std::fabs(a[i] - b[i]) <= 1e-5);
      CHECK(same_bits(a, flatten(got[0].final_params)));
    }
    CHECK(got[r].totals.exchanges == rounds * c.o.fragments);
    CHECK(got[r].totals.outer_steps == rounds * c.o.fragments);
    CHECK(got[r].totals.inner_steps == c.steps);
  }
}

TEST_CASE("diloco engine: outer SGD lr 1 momentum 0 is parameter averaging") {
  // On a dyadic grid in [1, 2) every difference, sum and division by K = 4 is exact, so
  // FedAvg on pseudo-gradients must equal the plain mean of the parameters bit for bit.
  const int which = GENERATE(0, 1, 2);  // reference averager, ring_allreduce, butterfly_allreduce
  CAPTURE(which);
  const std::size_t K = 4;
  auto init = [](std::uint32_t) {
    counter_rng g(11);
    tensors w{std::vector<float>(6), std::vector<float>(10)};
    for (auto& t : w)
      for (float& v : t) v = 1.25f + static_cast<float>(g.next_below(256)) * 0x1p-10f;
    return w;
  };
  auto inner = [](tensors& w, std::uint32_t rank, std::uint64_t step) {
    counter_rng g(12 + rank, step);
    for (auto& t : w)
      for (float& v : t) v += (static_cast<float>(g.next_below(9)) - 4.0f) * 0x1p-12f;
  };
  run_config c;
  c.K = K;
  c.o.inner_steps = 2;
  c.steps = 6;
  c.opt = sgd_factory(optim::sgd_options::fedavg());
  c.init = init;
  c.inner = inner;
  if (which == 1) c.make_avg = make_collective<net::ring_allreduce>;
  if (which == 2) c.make_avg = make_collective<net::butterfly_allreduce>;
  // Expected: every H steps all replicas become the mean of the replicas.
  std::vector<tensors> w(K);
  for (std::uint32_t r = 0; r < K; ++r) w[r] = init(r);
  for (std::uint64_t s = 1; s <= c.steps; ++s) {
    for (std::uint32_t r = 0; r < K; ++r) inner(w[r], r, s);
    if (s % 2 == 0) {
      std::vector<float> sum(16, 0.0f);
      for (const auto& wr : w) {
        const auto f = flatten(wr);
        for (std::size_t i = 0; i < 16; ++i) sum[i] += f[i];
      }
      for (float& v : sum) v /= 4.0f;
      for (auto& wr : w) unflatten(sum, wr);
    }
  }
  const auto got = run_engine(c);
  for (std::uint32_t r = 0; r < K; ++r) {
    REQUIRE(all_ok(got[r]));
    CHECK(same_bits(flatten(got[r].final_params), flatten(w[r])));
  }
}

TEST_CASE("diloco engine: FedAvg on arbitrary values is the parameter mean to rounding") {
  run_config c;
  c.K = 3;
  c.o.inner_steps = 4;
  c.steps = 8;
  c.opt = sgd_factory(optim::sgd_options::fedavg());
  c.init = common_init;
  c.inner = pull_step;
  c.trace = true;
  const auto got = run_engine(c);
  for (std::uint32_t r = 0; r < c.K; ++r) REQUIRE(all_ok(got[r]));
  // The mean of the replicas just before the last sync.
  const std::size_t n = flatten(got[0].final_params).size();
  std::vector<double> mean(n, 0.0);
  for (std::uint32_t r = 0; r < c.K; ++r) {
    const auto f = flatten(got[r].before.back());
    for (std::size_t i = 0; i < n; ++i) mean[i] += f[i] / 3.0;
  }
  for (std::uint32_t r = 0; r < c.K; ++r) {
    const auto f = flatten(got[r].final_params);
    for (std::size_t i = 0; i < n; ++i) CHECK(std::fabs(f[i] - mean[i]) <= 4e-7 * (1.0 + std::fabs(mean[i])));
  }
}

TEST_CASE("diloco engine: K = 1, H = 1, outer SGD lr 1 is the inner optimizer alone") {
  // Parameters stay in [1, 2), so snapshot − params is exact (Sterbenz) and
  // snapshot − (snapshot − params) gives params back bit for bit.
  auto inner = [](tensors& w, std::uint64_t step) {
    const counter_rng tgt(3), noise(4, step);
    std::uint64_t k = 0;
    for (auto& t : w)
      for (float& v : t) {
        v = v - 0.25f * (v - (1.2f + 0.6f * tgt.uniform_at(k))) + 0.01f * (noise.uniform_at(k) - 0.5f);
        ++k;
      }
  };
  tensors alone{std::vector<float>(9, 1.5f), std::vector<float>(4, 1.25f)};
  tensors w = alone;
  auto e = diloco_engine::create(spans_of(w), solo_factory(), [] {
    diloco_options o;
    o.inner_steps = 1;
    return o;
  }(), sgd_factory(optim::sgd_options::fedavg()));
  REQUIRE(e.ok());
  for (std::uint64_t s = 1; s <= 40; ++s) {
    inner(alone, s);
    inner(w, s);
    REQUIRE((*e)->after_inner_step().ok());
    REQUIRE(same_bits(flatten(w), flatten(alone)));
  }
  CHECK((*e)->totals().outer_steps == 40);
}

TEST_CASE("diloco engine: outer Nesterov reproduces torch SGD vectors") {
  // reference notes §9: θ0 = 1, outer gradients 0.5, 0.3, −0.2, Nesterov lr 0.7 μ 0.9
  // → 0.335, −0.3475, −0.50675. The "inner step" sets θ = snapshot − g.
  tensors w{{1.0f}};
  diloco_options o;
  o.inner_steps = 1;
  auto e = diloco_engine::create(spans_of(w), solo_factory(), o);
  REQUIRE(e.ok());
  const float g[3] = {0.5f, 0.3f, -0.2f};
  const double want[3] = {0.335, -0.3475, -0.50675};
  for (int t = 0; t < 3; ++t) {
    w[0][0] = (*e)->snapshot(0)[0] - g[t];
    REQUIRE((*e)->after_inner_step().ok());
    CHECK(w[0][0] == Approx(want[t]).margin(1e-6));
    CHECK((*e)->snapshot(0)[0] == w[0][0]);
  }
}

TEST_CASE("diloco engine: a joiner contributes zero; the denominator counts it or not") {
  const bool excluded = GENERATE(false, true);
  CAPTURE(excluded);
  run_config c;
  c.K = 4;
  c.o.inner_steps = 2;
  c.o.joiner = excluded ? joiner_denominator::excluded : joiner_denominator::counted;
  c.steps = 4;
  c.opt = sgd_factory(optim::sgd_options::fedavg());
  c.init = common_init;
  c.inner = pull_step;
  c.trace = true;
  c.before_call = [&](diloco_engine& e, std::uint32_t rank, std::uint64_t step) {
    if (step != 2) return;
    if (rank == 3) e.mark_joiner();
    if (excluded) e.expect_joiners(1);
  };
  const auto got = run_engine(c);
  for (std::uint32_t r = 0; r < 4; ++r) REQUIRE(all_ok(got[r]));
  const auto snap0 = flatten(common_init(0));
  const std::size_t n = snap0.size();
  // Round 1 (step 2): rank 3 trained too, but its Δ must not enter.
  std::vector<float> S(n, 0.0f);
  std::vector<double> S3(n, 0.0);
  for (std::uint32_t r = 0; r < 3; ++r) {
    const auto f = flatten(got[r].before[1]);
    for (std::size_t i = 0; i < n; ++i) {
      S[i] = S[i] + (snap0[i] - f[i]);
      S3[i] += static_cast<double>(snap0[i]) - f[i];
    }
  }
  std::vector<float> snap1(n);
  for (std::size_t i = 0; i < n; ++i) {
    float mean = S[i] / 4.0f;
    if (excluded) mean = static_cast<float>(4.0 / 3.0) * mean;
    snap1[i] = snap0[i] + (-1.0f) * mean;
    // Independent closed form: the mean over 3 (excluded) or 4 (counted) contributors.
    const double want = snap0[i] - S3[i] / (excluded ? 3.0 : 4.0);
    CHECK(std::fabs(snap1[i] - want) <= 1e-6);
  }
  for (std::uint32_t r = 0; r < 4; ++r) CHECK(same_bits(flatten(got[r].after[1]), snap1));
  // Round 2 (step 4): everyone contributes, the joiner mark is used up.
  std::vector<float> S2(n, 0.0f);
  for (std::uint32_t r = 0; r < 4; ++r) {
    const auto f = flatten(got[r].before[3]);
    for (std::size_t i = 0; i < n; ++i) S2[i] = S2[i] + (snap1[i] - f[i]);
  }
  std::vector<float> snap2(n);
  for (std::size_t i = 0; i < n; ++i) snap2[i] = snap1[i] + (-1.0f) * (S2[i] / 4.0f);
  for (std::uint32_t r = 0; r < 4; ++r) CHECK(same_bits(flatten(got[r].final_params), snap2));
}

TEST_CASE("diloco engine: byte counters match the transport") {
  run_config c;
  c.K = 3;
  c.o.inner_steps = 2;
  c.o.fragments = 2;
  c.steps = 6;
  c.init = common_init;
  c.inner = pull_step;
  const auto got = run_engine(c);
  for (std::uint32_t r = 0; r < 3; ++r) {
    REQUIRE(all_ok(got[r]));
    CHECK(got[r].totals.exchanges == 6);  // 2 fragments × 3 rounds
    CHECK(got[r].totals.bytes_sent > 0);
    CHECK(got[r].totals.bytes_sent == got[r].transport_sent);
    CHECK(got[r].totals.bytes_received == got[r].totals.bytes_sent);  // symmetric all-to-all
  }
}
