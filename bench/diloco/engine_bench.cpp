// bench/diloco/engine_bench.cpp: the engine's own cost of one outer step (everything but
// the network): gather Δ = snapshot − params, the outer Nesterov step on the snapshot and
// the write-back, with a pass-through averager (one peer, nothing on the wire), beside
// the memcpy and triad baselines. Bytes counted per element:
//   gather   reads θ, snapshot; writes x          -> 12
//   Nesterov reads snapshot, x, b; writes snapshot, b -> 20
//   write-back reads snapshot; writes θ           ->  8      total 40
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "baseline.h"
#include "dtrain/diloco/engine.h"

namespace {

using namespace dtrain;

// One peer's "average": the data as is (the mean of one contribution).
class pass_through final : public net::averager {
 public:
  explicit pass_through(std::size_t n) : n_(n) {}
  std::string_view name() const noexcept override { return "pass_through"; }
  std::size_t count() const noexcept override { return n_; }
  bool exact_consensus() const noexcept override { return true; }
  status average(std::span<float>, std::uint64_t, std::span<float> residual) override {
    for (float& r : residual) r = 0.0f;
    return ok_status();
  }
  const net::average_report& last_report() const noexcept override { return report_; }

 private:
  std::size_t n_;
  net::average_report report_{1, 0, 1.0, 0, 0};
};

diloco::averager_factory pass_factory() {
  return [](std::size_t n, std::uint32_t) -> result<std::unique_ptr<net::averager>> {
    return std::unique_ptr<net::averager>(std::make_unique<pass_through>(n));
  };
}

// Validate-then-time: one sync on one peer with H = 1 equals Nesterov's first step,
// θ ← θ0 − lr·(1 + μ)·Δ with Δ = θ0 − θ.
bool engine_matches_formula() {
  std::vector<float> w{1.0f, -2.0f, 0.5f};
  const std::vector<float> w0 = w;
  diloco::diloco_options o;
  o.inner_steps = 1;
  auto e = diloco::diloco_engine::create({std::span<float>(w)}, pass_factory(), o);
  if (!e.ok()) return false;
  const float step[3] = {0.25f, -0.5f, 0.125f};
  for (int i = 0; i < 3; ++i) w[i] -= step[i];
  if (!(*e)->after_inner_step().ok()) return false;
  for (int i = 0; i < 3; ++i) {
    const double want = static_cast<double>(w0[i]) - 0.7 * 1.9 * static_cast<double>(step[i]);
    if (std::fabs(static_cast<double>(w[i]) - want) > 1e-6) return false;
  }
  return true;
}

void BM_engine_outer_step(benchmark::State& state) {
  if (!engine_matches_formula()) {
    state.SkipWithError("engine does not match the Nesterov formula");
    return;
  }
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto P = static_cast<std::uint32_t>(state.range(1));
  // 8 tensors of n/8 floats.
  std::vector<std::vector<float>> t(8, std::vector<float>(n / 8, 1.0f));
  std::vector<std::span<float>> params;
  for (auto& x : t) params.emplace_back(x);
  diloco::diloco_options o;
  o.inner_steps = 1;
  o.fragments = P;
  o.staggered = false;
  auto e = diloco::diloco_engine::create(params, pass_factory(), o);
  if (!e.ok()) {
    state.SkipWithError("engine create failed");
    return;
  }
  float nudge = 1e-3f;
  for (auto _ : state) {
    t[0][0] += nudge;  // a non-zero pseudo-gradient somewhere
    if (!(*e)->after_inner_step().ok()) {
      state.SkipWithError("after_inner_step failed");
      return;
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * (n / 8) * 8 * 40));
}

BENCHMARK(BM_engine_outer_step)->Args({1 << 20, 1})->Args({1 << 24, 1})->Args({1 << 24, 4})->Unit(benchmark::kMillisecond);
BENCHMARK(dtrain::bench::memcpy_baseline)->Arg(1 << 24)->Unit(benchmark::kMillisecond);
BENCHMARK(dtrain::bench::triad_baseline)->Arg(1 << 24)->Unit(benchmark::kMillisecond);

}  // namespace
