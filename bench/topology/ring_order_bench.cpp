// bench/topology/ring_order_bench.cpp: time of best_ring_order() on random bandwidth
// matrices (uniform in [0, 10) GB/s, asymmetric), exact (n <= 10) and heuristic, with
// the bottleneck found beside the identity ring's and the simple upper bound (the
// narrowest "widest out-link" / "widest in-link" of any node).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/topology/ring_order.h"

namespace {

using namespace dtrain;
using namespace dtrain::topology;

void ring_order_time(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  counter_rng rng(7, n);
  std::vector<double> b(n * n);
  for (auto& v : b) v = static_cast<double>(rng.next_uniform()) * 10e9;
  double upper = 1e300;
  for (std::size_t i = 0; i < n; ++i) {
    double out_w = 0.0, in_w = 0.0;
    for (std::size_t j = 0; j < n; ++j) {
      if (j == i) continue;
      out_w = std::max(out_w, b[i * n + j]);
      in_w = std::max(in_w, b[j * n + i]);
    }
    upper = std::min({upper, out_w, in_w});
  }
  std::vector<std::uint32_t> id(n);
  std::iota(id.begin(), id.end(), 0u);
  const ring_order identity = evaluate_ring(b, n, id);

  result<ring_order> r = ring_order{};
  for (auto _ : state) {
    r = best_ring_order(b, n);
    benchmark::DoNotOptimize(r);
  }
  // Validate: a real ring, no worse than the identity, not above the upper bound.
  if (!r.ok() || r->bottleneck < identity.bottleneck || r->bottleneck > upper ||
      evaluate_ring(b, n, r->order).bottleneck != r->bottleneck) {
    state.SkipWithError("ring order failed validation");
    return;
  }
  state.counters["exact"] = r->exact ? 1.0 : 0.0;
  state.counters["bottleneck_GBps"] = r->bottleneck / 1e9;
  state.counters["identity_GBps"] = identity.bottleneck / 1e9;
  state.counters["upper_bound_GBps"] = upper / 1e9;
}

BENCHMARK(ring_order_time)->Arg(8)->Arg(10)->Arg(16)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond);

}  // namespace
