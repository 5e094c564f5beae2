// dtrain_gloo_allreduce: the Gloo baseline for the TCP all-reduce benchmark (issue 4 §8).
// One process per rank; fp32 sum all-reduce over a size sweep, verified exactly, with rank 0
// printing an nccl-tests-style table (docs/net_bench_method.md). Not Google Benchmark:
// ranks are separate processes that meet through a Gloo FileStore.
//
// Gloo (github.com/facebookincubator/gloo, Debian libgloo-dev 0.0~git20220518) throws on
// I/O errors and timeouts; this driver is a leaf program, so main() catches and exits 1.

#include <gloo/allreduce.h>
#include <gloo/allreduce_halving_doubling.h>
#include <gloo/allreduce_ring_chunked.h>
#include <gloo/barrier.h>
#include <gloo/config.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>

#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sweep.h"

namespace {

using dtrain_bench::parse_bytes;
using dtrain_bench::parse_int;

struct options {
  int rank = -1;
  int size = -1;
  std::string store;
  std::string prefix = "dtrain_gloo";
  std::string iface_addr = "127.0.0.1";
  std::size_t min_bytes = 4;
  std::size_t max_bytes = std::size_t{256} << 20;
  std::size_t factor = 4;
  int iters = 7;
  int warmup = 1;
  int timeout_s = 300;
  std::string algo = "ring";
};

void usage(std::FILE* f) {
  std::fprintf(f,
      "usage: dtrain_gloo_allreduce --rank R --size N --store DIR [options]\n"
      "  --iface-addr IP     address to bind and advertise (default 127.0.0.1)\n"
      "  --prefix STR        rendezvous key prefix inside DIR (default dtrain_gloo)\n"
      "  --min-bytes B       first size, suffix K/M/G allowed (default 4)\n"
      "  --max-bytes B       last size (default 256M)\n"
      "  --factor F          size multiplier, >= 2 (default 4)\n"
      "  --iters I           timed iterations per size (default 7)\n"
      "  --warmup W          untimed iterations per size (default 1)\n"
      "  --timeout S         Gloo per-operation and rendezvous timeout, seconds (default 300)\n"
      "  --algo A            ring (gloo::allreduce RING, default) | ring_chunked\n"
      "                      (AllreduceRingChunked) | halving_doubling\n"
      "                      (AllreduceHalvingDoubling)\n"
      "Rank 0 prints: size(B) count(elts) type time(us) algbw(GB/s) busbw(GB/s) #wrong,\n"
      "plus one CSV line per size; time = median over iterations of the slowest rank.\n");
}

// Returns false (after printing why) on any malformed or missing argument.
bool parse_args(int argc, char** argv, options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view key = argv[i];
    if (key == "-h" || key == "--help") {
      usage(stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "missing value for %s\n", argv[i]);
      return false;
    }
    const std::string_view val = argv[++i];
    bool ok = true;
    if (key == "--rank") ok = parse_int(val, 0, 1 << 16, o.rank);
    else if (key == "--size") ok = parse_int(val, 1, 1 << 16, o.size);
    else if (key == "--store") o.store = val;
    else if (key == "--prefix") o.prefix = val;
    else if (key == "--iface-addr") o.iface_addr = val;
    else if (key == "--iters") ok = parse_int(val, 1, 1000000, o.iters);
    else if (key == "--warmup") ok = parse_int(val, 0, 1000000, o.warmup);
    else if (key == "--timeout") ok = parse_int(val, 1, 86400, o.timeout_s);
    else if (key == "--algo") {
      o.algo = val;
      ok = o.algo == "ring" || o.algo == "ring_chunked" || o.algo == "halving_doubling";
    } else if (key == "--min-bytes" || key == "--max-bytes" || key == "--factor") {
      const auto b = parse_bytes(val);
      ok = b.has_value();
      if (ok) (key == "--min-bytes" ? o.min_bytes : key == "--max-bytes" ? o.max_bytes : o.factor) = *b;
    } else {
      std::fprintf(stderr, "unknown option %s\n", argv[i - 1]);
      return false;
    }
    if (!ok) {
      std::fprintf(stderr, "bad value for %s: %s\n", argv[i - 1], argv[i]);
      return false;
    }
  }
  if (!dtrain_bench::check_common_args(o.rank, o.size, o.store, o.factor, o.min_bytes, o.max_bytes)) return false;
  // The legacy algorithms take the element count as int.
  if (o.max_bytes / 4 > static_cast<std::size_t>(INT_MAX)) {
    std::fprintf(stderr, "--max-bytes too large (at most 2^31-1 elements)\n");
    return false;
  }
  return true;
}

// Per-iteration facts reduced over ranks in one small all-reduce: a single 32-byte element,
// so no algorithm can split it across segments.
struct iter_stat {
  double max_time_s;  // reduced by max
  double wrong;       // reduced by sum (exact below 2^53)
  double cpu_s;       // reduced by sum
  double wall_s;      // reduced by max
};

void reduce_stat(void* out, const void* a, const void* b, std::size_t n) {
  auto* o = static_cast<iter_stat*>(out);
  const auto* x = static_cast<const iter_stat*>(a);
  const auto* y = static_cast<const iter_stat*>(b);
  for (std::size_t i = 0; i < n; ++i) {
    iter_stat r;
    r.max_time_s = std::max(x[i].max_time_s, y[i].max_time_s);
    r.wrong = x[i].wrong + y[i].wrong;
    r.cpu_s = x[i].cpu_s + y[i].cpu_s;
    r.wall_s = std::max(x[i].wall_s, y[i].wall_s);
    o[i] = r;
  }
}

// Process CPU time (all threads, user + sys): Gloo's TCP loop thread does the socket work.
double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// One all-reduce algorithm bound to one buffer; the legacy classes register their pair
// buffers in the constructor, so construction happens once per size, outside the timing.
class runner {
 public:
  runner(const std::shared_ptr<gloo::Context>& ctx, const std::string& algo, float* data,
         std::size_t count)
      : opts_(ctx) {
    if (algo == "ring") {
      opts_.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
      opts_.setOutput(data, count);  // in place: no input given, output is the input
      opts_.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, std::size_t)>(
          &gloo::sum<float>));
      opts_.setTag(1);
      use_options_ = true;
    } else if (algo == "ring_chunked") {
      legacy_ = std::make_unique<gloo::AllreduceRingChunked<float>>(
          ctx, std::vector<float*>{data}, static_cast<int>(count));
    } else {
      legacy_ = std::make_unique<gloo::AllreduceHalvingDoubling<float>>(
          ctx, std::vector<float*>{data}, static_cast<int>(count));
    }
  }
  void run() {
    if (use_options_) gloo::allreduce(opts_);
    else legacy_->run();
  }

 private:
  gloo::AllreduceOptions opts_;
  std::unique_ptr<gloo::Algorithm> legacy_;
  bool use_options_ = false;
};

int run_sweep(const options& o) {
  gloo::transport::tcp::attr attr;
  attr.hostname = o.iface_addr;
  attr.ai_family = AF_UNSPEC;
  auto dev = gloo::transport::tcp::CreateDevice(attr);

  gloo::rendezvous::FileStore file_store(o.store);
  gloo::rendezvous::PrefixStore store(o.prefix, file_store);
  auto ctx = std::make_shared<gloo::rendezvous::Context>(o.rank, o.size);
  ctx->setTimeout(std::chrono::seconds(o.timeout_s));
  ctx->connectFullMesh(store, dev);

  const std::vector<std::size_t> sizes =
      dtrain_bench::sweep_sizes(o.min_bytes, o.max_bytes, o.factor);
  const std::size_t max_count = sizes.back() / 4;

  // pristine: this rank's input, copied into work before every iteration (in-place op).
  std::vector<float> pristine(max_count), work(max_count), expect(max_count);
  for (std::size_t i = 0; i < max_count; ++i) {
    pristine[i] = dtrain_bench::input_value(o.rank, i);
    expect[i] = dtrain_bench::expected_sum(o.size, i);
  }

  gloo::BarrierOptions barrier_opts(ctx);
  barrier_opts.setTag(2);
  iter_stat stat{};
  gloo::AllreduceOptions stat_opts(ctx);
  stat_opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
  stat_opts.setOutput(&stat, 1);  // one 32-byte element: never split into segments
  stat_opts.setReduceFunction(reduce_stat);
  stat_opts.setTag(3);

  if (o.rank == 0) {
    std::printf("# dtrain_gloo_allreduce: Gloo %d.%d.%d TCP, algo=%s, nranks=%d, iters=%d, "
                "warmup=%d, iface-addr=%s\n",
                GLOO_VERSION_MAJOR, GLOO_VERSION_MINOR, GLOO_VERSION_PATCH, o.algo.c_str(),
                o.size, o.iters, o.warmup, o.iface_addr.c_str());
    std::printf("# time = median over iterations of max over ranks; GB/s = 1e9 B/s; "
                "#wrong = exact mismatches over all ranks and iterations\n");
    dtrain_bench::print_table_header(stdout);
    std::fflush(stdout);
  }

  std::vector<double> times;
  times.reserve(static_cast<std::size_t>(o.iters));
  for (const std::size_t bytes : sizes) {
    const std::size_t count = bytes / 4;
    runner op(ctx, o.algo, work.data(), count);
    times.clear();
    dtrain_bench::sweep_row row;
    row.bytes = bytes;
    double cpu_total = 0, wall_total = 0, wrong_total = 0;
    for (int it = 0; it < o.warmup + o.iters; ++it) {
      std::memcpy(work.data(), pristine.data(), bytes);
      gloo::barrier(barrier_opts);
      const double cpu0 = process_cpu_s();
      const auto t0 = std::chrono::steady_clock::now();
      op.run();
      const auto t1 = std::chrono::steady_clock::now();
      const double cpu1 = process_cpu_s();
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < count; ++i) wrong += work[i] != expect[i] ? 1u : 0u;
      const double dt = std::chrono::duration<double>(t1 - t0).count();
      stat = iter_stat{dt, static_cast<double>(wrong), cpu1 - cpu0, dt};
      gloo::allreduce(stat_opts);
      wrong_total += stat.wrong;
      if (it < o.warmup) continue;
      times.push_back(stat.max_time_s);
      cpu_total += stat.cpu_s;
      wall_total += stat.wall_s;
    }
    row.min_s = *std::min_element(times.begin(), times.end());
    row.max_s = *std::max_element(times.begin(), times.end());
    row.time_s = dtrain_bench::median(times);
    row.cpu_cores = wall_total > 0 ? cpu_total / wall_total : 0;
    row.wrong = static_cast<std::uint64_t>(wrong_total);
    if (o.rank == 0) dtrain_bench::print_row(stdout, row, o.size, "gloo", o.algo.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (!parse_args(argc, argv, o)) {
    usage(stderr);
    return 2;
  }
  try {
    return run_sweep(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: gloo error: %s\n", o.rank, e.what());
    return 1;
  }
}
