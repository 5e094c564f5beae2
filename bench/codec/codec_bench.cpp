// Codec throughput: encode and decode GB/s (input floats' bytes per second) for every
// codec at 1M, 16M and 64M floats, beside a memcpy baseline in the same binary, on one
// thread and on two (each thread codes its own buffer). Each benchmark first verifies a
// round trip, then times. Run bench/report.py for the table with ratios.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "baseline.h"
#include "dtrain/codec/registry.h"
#include "dtrain/core/rng.h"

namespace {

using dtrain::codec::codec;

const char* const specs[] = {
    "identity",
    "fp16",
    "bf16",
    "minmax:bits=8",
    "minmax:bits=4",
    "minmax:bits=2",
    "minmax:bits=1",
    "minmax:bits=8,rounding=stochastic",
    "blockwise:bits=8,block=256",
    "blockwise:bits=4,block=256",
    "uniform8",
    "quantile8",
    "fp4:block=128",
    "topk:chunk=4096,k=64,values=fp16",
    "topk:chunk=4096,k=64,values=q2",
    "randomk:chunk=4096,k=64",
    "sign",
    "dct_topk:chunk=64,k=8,values=fp16",
    "dct_topk:chunk=64,k=8,values=sign",
    "powersgd",  // shape filled in per size: rows x cols = n
};

const std::int64_t sizes[] = {1 << 20, 1 << 24, 1 << 26};

std::string spec_for(const std::string& spec, std::int64_t n) {
  if (spec != "powersgd") return spec;
  const std::int64_t rows = std::int64_t{1} << (std::ilogb(static_cast<double>(n)) / 2);
  return "powersgd:rows=" + std::to_string(rows) + ",cols=" + std::to_string(n / rows) + ",rank=4";
}

std::vector<float> make_input(std::size_t n, std::uint64_t seed) {
  // Pseudo-gradient-like data: a smooth component plus noise, generated fast from bits.
  dtrain::counter_rng rng(seed);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float u = static_cast<float>(rng.at(i) >> 8) * 0x1p-24f - 0.5f;
    x[i] = 0.01f * u + 0.001f * static_cast<float>((i % 977)) / 977.0f;
  }
  return x;
}

struct fixture {
  std::unique_ptr<codec> c;
  std::vector<float> x, y;
  std::vector<std::byte> buf;
  std::size_t bytes = 0;
  std::string error;
};

fixture setup(const std::string& spec, std::size_t n, std::uint64_t seed) {
  fixture f;
  auto c = dtrain::codec::make_codec(spec);
  if (!c.ok()) {
    f.error = c.status().to_string();
    return f;
  }
  f.c = std::move(c).value();
  f.x = make_input(n, seed);
  f.y.assign(n, 0.0f);
  f.buf.resize(f.c->max_encoded_bytes(n));
  auto w = f.c->encode(f.x, f.buf);
  if (!w.ok()) {
    f.error = w.status().to_string();
    return f;
  }
  f.bytes = *w;
  // Validate before timing: the payload decodes, to finite values.
  auto st = f.c->decode(std::span(f.buf).first(f.bytes), f.y);
  if (!st.ok()) f.error = st.to_string();
  for (float v : f.y)
    if (!std::isfinite(v)) f.error = "decoded a non-finite value";
  return f;
}

void bm_encode(benchmark::State& state, std::string spec) {
  const auto n = static_cast<std::size_t>(state.range(0));
  fixture f = setup(spec_for(spec, state.range(0)), n, 1 + static_cast<std::uint64_t>(state.thread_index()));
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  for (auto _ : state) {
    auto w = f.c->encode(f.x, f.buf);
    benchmark::DoNotOptimize(w);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * sizeof(float)));
  // Averaged, not summed, over threads: every thread codes the same kind of buffer.
  state.counters["ratio"] = benchmark::Counter(static_cast<double>(n * sizeof(float)) / static_cast<double>(f.bytes),
                                               benchmark::Counter::kAvgThreads);
}

void bm_decode(benchmark::State& state, std::string spec) {
  const auto n = static_cast<std::size_t>(state.range(0));
  fixture f = setup(spec_for(spec, state.range(0)), n, 1 + static_cast<std::uint64_t>(state.thread_index()));
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  const auto payload = std::span(f.buf).first(f.bytes);
  for (auto _ : state) {
    auto st = f.c->decode(payload, f.y);
    benchmark::DoNotOptimize(st);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * sizeof(float)));
  // Averaged, not summed, over threads: every thread codes the same kind of buffer.
  state.counters["ratio"] = benchmark::Counter(static_cast<double>(n * sizeof(float)) / static_cast<double>(f.bytes),
                                               benchmark::Counter::kAvgThreads);
}

int register_all() {
  for (std::int64_t n : sizes) {
    for (int threads : {1, 2}) {
      benchmark::RegisterBenchmark("BM_memcpy", dtrain::bench::memcpy_baseline)
          ->Arg(n)->Threads(threads)->UseRealTime()->Unit(benchmark::kMillisecond);
      for (const char* s : specs) {
        const std::string spec = s;
        benchmark::RegisterBenchmark(("BM_encode/" + spec).c_str(), bm_encode, spec)
            ->Arg(n)->Threads(threads)->UseRealTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("BM_decode/" + spec).c_str(), bm_decode, spec)
            ->Arg(n)->Threads(threads)->UseRealTime()->Unit(benchmark::kMillisecond);
      }
    }
  }
  return 0;
}

const int registered = register_all();

}  // namespace
