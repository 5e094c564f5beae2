// bench/topology/consensus_bench.cpp: per topology and n, the rounds to reach
// epsilon-consensus (||x_t - xbar|| <= 1e-3 ||x_0 - xbar||, simulated on one random
// vector), the contraction rho and gap, open connections and the bytes each node sends
// on the way for a 1M-float (4 MiB) vector; plus the time of spectral_gap().
//
// The timed loop is the simulation itself (O(edges) per round); the counters are the
// result. Validate first: a run that fails to reach epsilon, or (static, doubly
// stochastic W) needs more rounds than the rho bound ceil(ln eps / ln rho), is reported
// as an error instead of a number. No memcpy/triad baseline here: nothing in this file
// moves bulk data; bytes are computed, not timed.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/topology/generators.h"
#include "dtrain/topology/mixing.h"
#include "dtrain/topology/schedule.h"
#include "dtrain/topology/spectral.h"

namespace {

using namespace dtrain;
using namespace dtrain::topology;

constexpr double eps = 1e-3;
constexpr double vector_bytes = 4.0 * (1 << 20);  // 1M floats
constexpr std::uint64_t max_rounds = 1000000;

enum class topo { ring, torus, exponential, one_peer, hypercube, expander4, expander8, small_world, complete };

// The schedule a topology uses: uniform weights on regular graphs, Metropolis-Hastings on
// the (non-regular) small world, the one-peer schedule as defined.
result<schedule> make(topo t, std::size_t n) {
  const auto uniform = [](result<graph> g) -> result<schedule> {
    if (!g.ok()) return g.status();
    auto w = uniform_weights(*g);
    if (!w.ok()) return w.status();
    return static_schedule(std::move(*w));
  };
  switch (t) {
    case topo::ring: return uniform(bidirectional_ring(n));
    case topo::torus: return uniform(torus(n));
    case topo::exponential: return uniform(exponential(n));
    case topo::one_peer: return one_peer_exponential(n);
    case topo::hypercube: return uniform(hypercube(n));
    case topo::expander4: return uniform(random_regular(n, 4, 1));
    case topo::expander8: return uniform(random_regular(n, 8, 1));
    case topo::small_world: {
      auto g = small_world(n, 4, 0.1, 1);
      if (!g.ok()) return g.status();
      auto w = metropolis_hastings(*g);
      if (!w.ok()) return w.status();
      return static_schedule(std::move(*w));
    }
    case topo::complete: return uniform(complete(n));
  }
  return invalid_argument("unknown topology");
}

void consensus(benchmark::State& state, topo t) {
  const auto n = static_cast<std::size_t>(state.range(0));
  auto s = make(t, n);
  if (!s.ok()) {
    state.SkipWithError(s.status().to_string().c_str());
    return;
  }
  counter_rng rng(42);
  std::vector<double> x0(n);
  for (auto& v : x0) v = static_cast<double>(rng.next_normal());

  // Contraction per round: rho of W, or the geometric mean over one period.
  auto period_rho = contraction_over(*s, s->period());
  if (!period_rho.ok()) {
    state.SkipWithError(period_rho.status().to_string().c_str());
    return;
  }
  const double rho = std::pow(*period_rho, 1.0 / static_cast<double>(s->period()));

  result<consensus_run> run = consensus_run{};
  for (auto _ : state) {
    run = rounds_to_consensus(*s, x0, eps, max_rounds);
    benchmark::DoNotOptimize(run);
  }
  if (!run.ok() || !run->reached) {
    state.SkipWithError("did not reach epsilon-consensus");
    return;
  }
  bool doubly = true;
  for (const auto& w : s->rounds) doubly = doubly && is_doubly_stochastic(w, 1e-9).ok();
  const double bound = rho > 0.0 ? std::ceil(std::log(eps) / std::log(rho)) : 1.0;
  if (s->period() == 1 && doubly && static_cast<double>(run->rounds) > bound) {
    state.SkipWithError("needed more rounds than the rho bound");
    return;
  }

  // Bytes node i sends: its out-degree in each round's communication graph, per round run.
  std::vector<double> sent(n, 0.0);
  std::size_t max_degree = 0;
  for (std::uint64_t r = 0; r < std::min<std::uint64_t>(run->rounds, s->period()); ++r) {
    const std::uint64_t times = (run->rounds - r + s->period() - 1) / s->period();  // rounds using W_r
    auto g = support(s->at(r));
    if (!g.ok()) {
      state.SkipWithError("support failed");
      return;
    }
    max_degree = std::max(max_degree, g->max_out_degree());
    for (std::size_t i = 0; i < n; ++i) {
      sent[i] += static_cast<double>(g->out[i].size()) * static_cast<double>(times) * vector_bytes;
    }
  }
  double mean = 0.0;
  for (const double v : sent) mean += v;
  mean /= static_cast<double>(n);

  state.counters["rounds"] = static_cast<double>(run->rounds);
  state.counters["rho"] = rho;
  state.counters["gap"] = 1.0 - rho;
  state.counters["rho_bound_rounds"] = bound;
  state.counters["max_degree"] = static_cast<double>(max_degree);
  state.counters["MB_sent_max"] = *std::max_element(sent.begin(), sent.end()) / 1e6;
  state.counters["MB_sent_mean"] = mean / 1e6;
}

void spectral_gap_time(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  auto w = uniform_weights(*exponential(n));
  // Validate: n a power of two, static exponential: rho = (tau - 1)/(tau + 1) at the
  // alternating eigenvector (the largest non-trivial |eigenvalue| for these n).
  const double tau = static_cast<double>(ceil_log2(n));
  auto gap = spectral_gap(*w);
  if (!gap.ok() || std::fabs(*gap - (1.0 - (tau - 1.0) / (tau + 1.0))) > 1e-9) {
    state.SkipWithError("spectral_gap does not match the closed form");
    return;
  }
  for (auto _ : state) {
    auto g = spectral_gap(*w);
    benchmark::DoNotOptimize(g);
  }
  state.counters["gap"] = *gap;
}

#define DTRAIN_CONSENSUS(name) \
  BENCHMARK_CAPTURE(consensus, name, topo::name)->Arg(16)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond)

DTRAIN_CONSENSUS(ring);
DTRAIN_CONSENSUS(torus);
DTRAIN_CONSENSUS(exponential);
DTRAIN_CONSENSUS(one_peer);
DTRAIN_CONSENSUS(hypercube);
DTRAIN_CONSENSUS(expander4);
DTRAIN_CONSENSUS(expander8);
DTRAIN_CONSENSUS(small_world);
DTRAIN_CONSENSUS(complete);
BENCHMARK(spectral_gap_time)->Arg(16)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond);

}  // namespace
