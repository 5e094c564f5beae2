// Shared-state sync in process: a 64 MiB state (16 tensors of 4 MiB) on n peer threads,
// one peer outdated in every tensor (it pulls all 64 MiB from the n - 1 holders), and the
// same with every peer in sync (hashing and manifests only), beside memcpy of the same
// bytes. Counters: GB/s of state per sync (decimal). Every configuration is verified
// first (all ok, every peer's bytes equal the holders'). Results: docs/shared_state.md.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "baseline.h"
#include "dtrain/core/rng.h"
#include "dtrain/net/shared_state.h"
#include "dtrain/net/transport_inproc.h"

namespace {

using namespace dtrain;
using namespace dtrain::net;

constexpr std::size_t kTensors = 16;
constexpr std::size_t kTensorBytes = 4u << 20;

struct group {
  explicit group(std::size_t n) : mem(n), states(n) {
    counter_rng g(7, 1);
    std::vector<std::byte> base(kTensorBytes * kTensors);
    for (auto& b : base) b = static_cast<std::byte>(g.next_u32());
    for (std::size_t r = 0; r < n; ++r) {
      mem[r] = base;
      for (std::size_t i = 0; i < kTensors; ++i)
        states[r]
            .add("t" + std::to_string(100 + i), std::span(mem[r]).subspan(i * kTensorBytes, kTensorBytes))
            .ignore();
    }
  }
  // Makes the last peer differ in every tensor.
  void dirty() {
    auto& m = mem.back();
    for (std::size_t i = 0; i < kTensors; ++i) m[i * kTensorBytes + 17] ^= std::byte{1};
  }
  bool sync(std::uint32_t seq) {
    const std::size_t n = mem.size();
    inproc_fabric f(n);
    std::vector<std::uint8_t> ok(n, 0);
    std::vector<std::thread> th;
    for (std::size_t r = 0; r < n; ++r)
      th.emplace_back([&, r] {
        sync_options o;
        auto x = sync_shared_state(f.endpoint(static_cast<rank_t>(r)), states[r], o, seq);
        ok[r] = x.ok() ? 1 : 0;
      });
    for (auto& t : th) t.join();
    for (auto v : ok)
      if (!v) return false;
    return true;
  }
  bool equal() const {
    for (const auto& m : mem)
      if (m != mem[0]) return false;
    return true;
  }
  std::vector<std::vector<std::byte>> mem;
  std::vector<shared_state> states;
};

void BM_sync(benchmark::State& state, bool outdated) {
  const auto n = static_cast<std::size_t>(state.range(0));
  group g(n);
  if (outdated) g.dirty();
  if (!g.sync(0) || !g.equal()) {
    state.SkipWithError("verification failed");
    return;
  }
  std::uint32_t seq = 1;
  for (auto _ : state) {
    if (outdated) {
      state.PauseTiming();
      g.dirty();
      state.ResumeTiming();
    }
    if (!g.sync(seq++)) {
      state.SkipWithError("sync failed");
      return;
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kTensors * kTensorBytes));
}

void BM_memcpy_state(benchmark::State& state) {
  std::vector<std::byte> a(kTensors * kTensorBytes, std::byte{1}), b(a.size());
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), a.size());
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * a.size()));
}

}  // namespace

BENCHMARK_CAPTURE(BM_sync, one_outdated, true)->Arg(2)->Arg(4)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_sync, in_sync, false)->Arg(2)->Arg(4)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_memcpy_state)->Unit(benchmark::kMillisecond);
