// Global averages in process: ring, butterfly and sparse all-gather with n peer threads on
// an inproc_fabric, 1M and 16M floats, beside a memcpy baseline in the same binary.
// Counters as nccl-tests defines them (decimal GB/s): algbw = 4 count / t, busbw =
// algbw * 2 (n - 1) / n; wire_MB is the mean payload a peer sends per call. Every
// configuration is verified first (all ok, peers bit-identical, error vs the exact mean
// within the codec's bound), then timed. Results: docs/collectives.md.
#include <benchmark/benchmark.h>

#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "baseline.h"
#include "dtrain/core/rng.h"
#include "dtrain/net/allreduce_butterfly.h"
#include "dtrain/net/allreduce_ring.h"
#include "dtrain/net/sparse_allgather.h"
#include "dtrain/net/transport_inproc.h"

namespace {

using namespace dtrain;
using namespace dtrain::net;

enum class algo { ring, butterfly, sparse };

struct config {
  algo a;
  const char* codec;
  double rms_tol;  // verification bound on the RMS error vs the exact mean (data RMS ~0.6)
};

// n persistent peer threads. Each call of run() lets every peer run average() once and
// waits for all of them.
class peer_group {
 public:
  peer_group(const config& c, std::size_t n, std::size_t count)
      : fabric_(n), start_(static_cast<std::ptrdiff_t>(n + 1)), done_(static_cast<std::ptrdiff_t>(n + 1)),
        data_(n), status_(n), avg_(n) {
    collective_options o;
    o.codec = c.codec;
    o.timeout = std::chrono::milliseconds(600000);
    for (std::size_t r = 0; r < n; ++r) {
      transport& t = fabric_.endpoint(static_cast<rank_t>(r));
      if (c.a == algo::ring) {
        auto x = ring_allreduce::create(t, count, o);
        if (x.ok()) avg_[r] = std::move(x).value();
      } else if (c.a == algo::butterfly) {
        auto x = butterfly_allreduce::create(t, count, o);
        if (x.ok()) avg_[r] = std::move(x).value();
      } else {
        auto x = sparse_allgather::create(t, count, o);
        if (x.ok()) avg_[r] = std::move(x).value();
      }
      if (!avg_[r]) {
        ok_ = false;
        return;
      }
    }
    // Peers that roughly agree, as pseudo-gradients do: base + 0.25 noise, uniform.
    counter_rng b(42, 1000);
    std::vector<float> base(count);
    for (std::size_t i = 0; i < count; ++i) base[i] = 2.0f * b.uniform_at(i) - 1.0f;
    for (std::size_t r = 0; r < n; ++r) {
      counter_rng g(42, r);
      data_[r].resize(count);
      for (std::size_t i = 0; i < count; ++i) data_[r][i] = base[i] + 0.25f * (2.0f * g.uniform_at(i) - 1.0f);
    }
    for (std::size_t r = 0; r < n; ++r)
      threads_.emplace_back([this, r] {
        for (;;) {
          start_.arrive_and_wait();
          if (stop_) return;
          status_[r] = avg_[r]->average(data_[r], round_);
          done_.arrive_and_wait();
        }
      });
  }
  ~peer_group() {
    if (threads_.empty()) return;
    stop_ = true;
    start_.arrive_and_wait();
    for (auto& t : threads_) t.join();
  }

  bool ok() const { return ok_; }
  void run() {
    start_.arrive_and_wait();
    done_.arrive_and_wait();
    ++round_;
  }

  // Runs once and checks the result; returns an error message or "".
  std::string verify(double rms_tol) {
    const std::size_t n = data_.size(), count = data_[0].size();
    std::vector<double> mean(count, 0.0);
    for (const auto& d : data_)
      for (std::size_t i = 0; i < count; ++i) mean[i] += static_cast<double>(d[i]) / static_cast<double>(n);
    run();
    for (std::size_t r = 0; r < n; ++r)
      if (!status_[r].ok()) return "peer " + std::to_string(r) + ": " + status_[r].to_string();
    for (std::size_t r = 1; r < n; ++r)
      if (std::memcmp(data_[r].data(), data_[0].data(), count * sizeof(float)) != 0)
        return "peers 0 and " + std::to_string(r) + " differ";
    double e = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const double d = static_cast<double>(data_[0][i]) - mean[i];
      e += d * d;
    }
    e = std::sqrt(e / static_cast<double>(count));
    if (!(e <= rms_tol)) return "RMS error " + std::to_string(e) + " above " + std::to_string(rms_tol);
    return "";
  }
  double wire_bytes() const {
    double s = 0;
    for (const auto& a : avg_) s += static_cast<double>(a->last_report().bytes_sent);
    return s / static_cast<double>(avg_.size());
  }

 private:
  inproc_fabric fabric_;
  std::barrier<> start_, done_;
  std::vector<std::vector<float>> data_;
  std::vector<status> status_;
  std::vector<std::unique_ptr<averager>> avg_;
  std::vector<std::thread> threads_;
  std::uint64_t round_ = 0;
  bool stop_ = false;
  bool ok_ = true;
};

void bm_average(benchmark::State& state, config c) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto count = static_cast<std::size_t>(state.range(1));
  peer_group g(c, n, count);
  if (!g.ok()) {
    state.SkipWithError("create failed");
    return;
  }
  if (auto e = g.verify(c.rms_tol); !e.empty()) {
    state.SkipWithError(e.c_str());
    return;
  }
  for (auto _ : state) g.run();
  const double bytes = 4.0 * static_cast<double>(count) * static_cast<double>(state.iterations());
  state.counters["algbw_GBps"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
  state.counters["busbw_GBps"] = benchmark::Counter(
      bytes / 1e9 * 2.0 * static_cast<double>(n - 1) / static_cast<double>(n), benchmark::Counter::kIsRate);
  state.counters["wire_MB"] = g.wire_bytes() / 1e6;
}

const config configs[] = {
    {algo::ring, "identity", 1e-6},          {algo::ring, "fp16", 1e-3},
    {algo::ring, "minmax:bits=8", 3e-2},     {algo::ring, "fp4:block=128", 0.4},
    {algo::butterfly, "identity", 1e-6},     {algo::butterfly, "fp16", 1e-3},
    {algo::butterfly, "minmax:bits=8", 3e-2}, {algo::butterfly, "topk:chunk=4096,k=64,values=fp16", 1.0},
    {algo::sparse, "topk:chunk=4096,k=64,values=fp16", 1.0},
};

const char* algo_name(algo a) {
  return a == algo::ring ? "ring" : (a == algo::butterfly ? "butterfly" : "sparse_allgather");
}

[[maybe_unused]] const bool registered = [] {
  for (const config& c : configs) {
    const std::string name = std::string("BM_average/") + algo_name(c.a) + "/" + c.codec;
    for (std::int64_t n : {2, 4}) {
      benchmark::RegisterBenchmark(name.c_str(), bm_average, c)
          ->Args({n, 1 << 20})
          ->ArgNames({"n", "count"})
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.3);
      benchmark::RegisterBenchmark(name.c_str(), bm_average, c)
          ->Args({n, 1 << 24})
          ->ArgNames({"n", "count"})
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(3);
    }
  }
  return true;
}();

}  // namespace

BENCHMARK(dtrain::bench::memcpy_baseline)->Arg(1 << 20)->Arg(1 << 24)->UseRealTime();
