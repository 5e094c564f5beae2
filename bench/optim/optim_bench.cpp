// bench/optim/optim_bench.cpp: outer-optimizer step throughput beside the triad and
// memcpy baselines. Bytes counted are those the update kernel must move per element:
//   Nesterov SGD  reads θ, g, b; writes θ, b            -> 20 bytes
//   Adam / AdamW  reads θ, g, m, v; writes θ, m, v      -> 28 bytes
// The NaN/Inf check on g before the update (a second read of g, 4 bytes) is not counted.
// Threaded variants use real time, so bytes_per_second is the aggregate over threads;
// the triad baseline runs with the same thread counts for the ratio.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "baseline.h"
#include "dtrain/optim/outer_adam.h"
#include "dtrain/optim/outer_sgd.h"

namespace {

using namespace dtrain::optim;

std::vector<float> filled(std::size_t n, float base) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = base + static_cast<float>(i % 97) * 1e-3f;
  return v;
}

// Validate-then-time: one Nesterov step on a few elements against the formula.
bool nesterov_matches_formula() {
  auto opt = outer_sgd::create(3, sgd_options::diloco());
  if (!opt.ok()) return false;
  std::vector<float> theta{1.0f, -2.0f, 0.5f}, g{0.5f, 0.25f, -1.0f};
  if (!opt->step(theta, g).ok() || !opt->step(theta, g).ok()) return false;
  for (std::size_t i = 0; i < 3; ++i) {
    // Two equal gradients: b1 = g, b2 = 1.9g; θ2 = θ0 − 0.7(g + 0.9g) − 0.7(g + 0.9·1.9g).
    const double gi = static_cast<double>(g[i]);
    const double want = (i == 0 ? 1.0 : i == 1 ? -2.0 : 0.5) - 0.7 * (1.9 * gi) - 0.7 * (2.71 * gi);
    if (std::fabs(static_cast<double>(theta[i]) - want) > 1e-5) return false;
  }
  return true;
}

template <class Make>
void run_step(benchmark::State& state, std::size_t n, Make make, std::size_t bytes_per_elem) {
  auto opt = make(n);
  if (!opt.ok()) {
    state.SkipWithError("optimizer construction failed");
    return;
  }
  std::vector<float> theta = filled(n, 1.0f), g = filled(n, 1e-3f);
  if (!opt->step(theta, g).ok()) {  // leave the first-step path: time the steady state
    state.SkipWithError("step failed");
    return;
  }
  for (auto _ : state) {
    dtrain::status st = opt->step(theta, g);
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(theta.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * bytes_per_elem));
}

void nesterov_step(benchmark::State& state) {
  if (!nesterov_matches_formula()) {
    state.SkipWithError("Nesterov step does not match its formula");
    return;
  }
  run_step(state, static_cast<std::size_t>(state.range(0)),
           [](std::size_t n) { return outer_sgd::create(n, sgd_options::diloco()); }, 20);
}

// Each thread steps its own slice with its own optimizer (the intended way to go parallel).
void nesterov_step_sliced(benchmark::State& state) {
  const auto total = static_cast<std::size_t>(state.range(0));
  const auto slice = total / static_cast<std::size_t>(state.threads());
  run_step(state, slice, [](std::size_t n) { return outer_sgd::create(n, sgd_options::diloco()); }, 20);
}

void adam_step(benchmark::State& state) {
  run_step(state, static_cast<std::size_t>(state.range(0)),
           [](std::size_t n) { return outer_adam::create(n, adam_options{}); }, 28);
}

void adamw_step(benchmark::State& state) {
  run_step(state, static_cast<std::size_t>(state.range(0)),
           [](std::size_t n) { return outer_adam::create(n, adam_options::adamw(1e-3, 0.1)); }, 28);
}

constexpr std::int64_t k1m = 1 << 20, k16m = 16 << 20, k64m = 64 << 20;

}  // namespace

BENCHMARK(dtrain::bench::triad_baseline)->Arg(k1m)->Arg(k16m)->Arg(k64m)->Unit(benchmark::kMillisecond);
BENCHMARK(dtrain::bench::triad_baseline)->Arg(k16m)->Arg(k64m)->Threads(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(dtrain::bench::memcpy_baseline)->Arg(k1m)->Arg(k16m)->Arg(k64m)->Unit(benchmark::kMillisecond);
BENCHMARK(nesterov_step)->Arg(k1m)->Arg(k16m)->Arg(k64m)->Unit(benchmark::kMillisecond);
BENCHMARK(nesterov_step_sliced)->Arg(k16m)->Arg(k64m)->Threads(1)->Threads(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(adam_step)->Arg(k1m)->Arg(k16m)->Arg(k64m)->Unit(benchmark::kMillisecond);
BENCHMARK(adamw_step)->Arg(k1m)->Arg(k16m)->Arg(k64m)->Unit(benchmark::kMillisecond);
