// bench/net/consensus_bench.cpp: gossip to epsilon-consensus with neighbor_average on 16
// peers (threads over the in-process fabric), one 64k-float vector each, per topology and
// wire codec (identity, fp16, 8-bit min-max). Counters per run:
//   rounds        rounds until ||x_t - xbar_t|| <= 1e-3 ||x_0 - xbar_0|| (the disagreement,
//                 over all peers and coordinates), or max_rounds
//   reached       1 when the target was met
//   ratio         the final ||x_t - xbar_t|| / ||x_0 - xbar_0|| (the floor a lossy codec
//                 stalls at when it never reaches 1e-3)
//   rho, predict  the contraction rho(W) of the static W (topology/spectral.h) and
//                 ceil(ln 1e-3 / ln rho), the rounds the spectral bound predicts
//   MiB_node_mean, MiB_node_max   bytes sent per node over the run (transport counters)
//   KiB_round_max                 the largest per-node bytes per round
//   drift         |xbar_t - xbar_0| / ||x_0 - xbar_0|| (0 up to rounding for doubly
//                 stochastic W and the identity codec; the fp16 error otherwise)
//   ms_round      the slowest peer's time inside average(), per round
// Validate first: a run whose identity-codec drift exceeds 1e-5 is reported as an error.
// Table and machine: docs/collectives.md ("Benchmarks: gossip to ε-consensus").
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/net/neighbor_average.h"
#include "dtrain/net/transport_inproc.h"
#include "dtrain/topology/generators.h"
#include "dtrain/topology/spectral.h"

namespace {

using namespace dtrain;
using namespace dtrain::net;

constexpr std::size_t kPeers = 16;
constexpr std::size_t kCount = 65536;
constexpr double kEps = 1e-3;
constexpr std::size_t kMaxRounds = 400;

struct topo {
  const char* name;
  std::function<result<topology::schedule>()> make;
};

result<topology::schedule> weighted(result<topology::graph> g, bool metropolis) {
  if (!g.ok()) return g.status();
  auto w = metropolis ? topology::metropolis_hastings(*g) : topology::uniform_weights(*g);
  if (!w.ok()) return w.status();
  return topology::static_schedule(std::move(*w));
}

// Undirected graphs take Metropolis-Hastings weights (doubly stochastic on any graph; equal
// to uniform 1/(d+1) on regular ones); the directed exponential graph is regular, so its
// uniform weights are doubly stochastic too.
const std::vector<topo>& topologies() {
  static const std::vector<topo> t = {
      {"ring", [] { return weighted(topology::bidirectional_ring(kPeers), true); }},
      {"torus4x4", [] { return weighted(topology::torus(kPeers), true); }},
      {"exponential", [] { return weighted(topology::exponential(kPeers), false); }},
      {"one_peer_exp", []() -> result<topology::schedule> { return topology::one_peer_exponential(kPeers); }},
      {"expander_d4", [] { return weighted(topology::random_regular(kPeers, 4, 1), true); }},
      {"small_world_k4", [] { return weighted(topology::small_world(kPeers, 4, 0.2, 1), true); }},
      {"hypercube", [] { return weighted(topology::hypercube(kPeers), true); }},
      {"complete", [] { return weighted(topology::complete(kPeers), false); }},
  };
  return t;
}

struct outcome {
  std::size_t rounds = 0;
  bool reached = false;
  double ratio = 1;  // final disagreement / initial
  double drift = 0;
  std::vector<std::uint64_t> sent;
  double max_seconds_in_average = 0;
  status error;
};

outcome run_to_consensus(const topology::schedule& s, const std::string& codec) {
  const std::size_t n = s.n();
  std::vector<std::vector<float>> x(n, std::vector<float>(kCount));
  for (std::size_t r = 0; r < n; ++r) {
    counter_rng rng(2024, r);
    for (float& v : x[r]) v = rng.next_normal();
  }
  std::vector<double> mean0(kCount, 0.0), mean(kCount);
  const auto means = [&](std::vector<double>& m) {
    std::fill(m.begin(), m.end(), 0.0);
    for (const auto& v : x)
      for (std::size_t k = 0; k < kCount; ++k) m[k] += static_cast<double>(v[k]);
    for (double& e : m) e /= static_cast<double>(n);
  };
  const auto disagreement = [&](const std::vector<double>& m) {
    double d = 0;
    for (const auto& v : x)
      for (std::size_t k = 0; k < kCount; ++k) {
        const double e = static_cast<double>(v[k]) - m[k];
        d += e * e;
      }
    return std::sqrt(d);
  };
  means(mean0);
  const double d0 = disagreement(mean0);

  outcome out;
  std::atomic<bool> stop{false};
  auto on_round = [&]() noexcept {
    ++out.rounds;
    means(mean);
    out.ratio = disagreement(mean) / d0;
    if (out.ratio <= kEps) out.reached = true;
    if (out.reached || out.rounds >= kMaxRounds) stop.store(true);
  };
  std::barrier sync(static_cast<std::ptrdiff_t>(n), on_round);
  inproc_fabric f(n);
  std::vector<status> st(n);
  std::vector<double> seconds(n, 0.0);
  std::vector<std::thread> threads;
  for (std::size_t r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      collective_options o;
      o.codec = codec;
      auto a = neighbor_average::create(f.endpoint(static_cast<rank_t>(r)), kCount, o, s);
      if (!a.ok()) st[r] = a.status();
      for (std::uint64_t t = 0;; ++t) {
        if (a.ok() && st[r].ok()) {
          const auto t0 = std::chrono::steady_clock::now();
          st[r] = (*a)->average(x[r], t);
          seconds[r] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          if (!st[r].ok()) stop.store(true);
        }
        sync.arrive_and_wait();
        if (stop.load()) break;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (std::size_t r = 0; r < n; ++r) {
    if (!st[r].ok() && out.error.ok()) out.error = st[r];
    out.sent.push_back(f.endpoint(static_cast<rank_t>(r)).stats().total_sent());
    out.max_seconds_in_average = std::max(out.max_seconds_in_average, seconds[r]);
  }
  means(mean);
  double drift = 0;
  for (std::size_t k = 0; k < kCount; ++k) drift += (mean[k] - mean0[k]) * (mean[k] - mean0[k]);
  out.drift = std::sqrt(drift * static_cast<double>(n)) / d0;
  return out;
}

void consensus(benchmark::State& state, std::size_t topo_index, const std::string& codec) {
  const topo& tp = topologies()[topo_index];
  auto s = tp.make();
  if (!s.ok()) {
    state.SkipWithError(s.status().to_string().c_str());
    return;
  }
  outcome out;
  for (auto _ : state) out = run_to_consensus(*s, codec);
  if (!out.error.ok()) {
    state.SkipWithError(out.error.to_string().c_str());
    return;
  }
  if (codec == "identity" && out.drift > 1e-5) {
    state.SkipWithError("identity codec moved the mean: the mixing is not doubly stochastic");
    return;
  }
  double rho = 0;
  if (s->period() == 1) {
    auto c = topology::contraction(s->at(0));
    if (c.ok()) rho = *c;
  }
  std::uint64_t total = 0, most = 0;
  for (auto b : out.sent) {
    total += b;
    most = std::max(most, b);
  }
  const double rounds = static_cast<double>(out.rounds);
  state.counters["rounds"] = rounds;
  state.counters["reached"] = out.reached ? 1 : 0;
  state.counters["ratio"] = out.ratio;
  state.counters["rho"] = rho;
  state.counters["predict"] = rho > 0 && rho < 1 ? std::ceil(std::log(kEps) / std::log(rho)) : 0;
  state.counters["MiB_node_mean"] = static_cast<double>(total) / static_cast<double>(out.sent.size()) / 1048576.0;
  state.counters["MiB_node_max"] = static_cast<double>(most) / 1048576.0;
  state.counters["KiB_round_max"] = static_cast<double>(most) / 1024.0 / std::max(1.0, rounds);
  state.counters["drift"] = out.drift;
  state.counters["ms_round"] = 1e3 * out.max_seconds_in_average / std::max(1.0, rounds);
}

const bool registered = [] {
  for (std::size_t i = 0; i < topologies().size(); ++i) {
    for (const std::string codec : {"identity", "fp16", "minmax:bits=8"}) {
      const std::string name = std::string("consensus/") + topologies()[i].name + "/" + codec;
      benchmark::RegisterBenchmark(name.c_str(), consensus, i, codec)
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
  return true;
}();

}  // namespace
