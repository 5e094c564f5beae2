// dtrain_tcp_allreduce: dtrain's ring all-reduce over the TCP transport, driven exactly like
// the Gloo baseline (gloo_allreduce.cpp): one process per rank, the same size sweep, inputs,
// barrier / slowest-rank / median timing and nccl-tests-style table (docs/net_bench_method.md,
// results in docs/net_bench.md). dtrain's ring returns the mean, so the exact check compares
// with fl(sum / N); lossy codecs are checked for bit-identity across ranks and a codec bound.

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dtrain/core/hash.h"
#include "dtrain/net/allreduce_ring.h"
#include "dtrain/net/tcp/rendezvous.h"
#include "dtrain/net/transport_tcp.h"
#include "sweep.h"

namespace {

using namespace dtrain;
using namespace dtrain::net;
using dtrain_bench::parse_bytes;
using dtrain_bench::parse_int;

struct options {
  int rank = -1;
  int size = -1;
  std::string store;
  std::string prefix = "dtrain_tcp";
  std::string iface_addr = "127.0.0.1";
  std::size_t min_bytes = 4;
  std::size_t max_bytes = std::size_t{256} << 20;
  std::size_t factor = 4;
  int iters = 7;
  int warmup = 1;
  int timeout_s = 300;
  std::string codec = "identity";
  unsigned streams = 1;
  std::size_t stripe_bytes = std::size_t{1} << 20;
  std::size_t sockbuf = std::size_t{4} << 20;
  std::size_t segment_floats = std::size_t{1} << 20;
};

void usage(std::FILE* f) {
  std::fprintf(f,
      "usage: dtrain_tcp_allreduce --rank R --size N --store DIR [options]\n"
      "  --iface-addr IP     address to bind and advertise (default 127.0.0.1)\n"
      "  --prefix STR        rendezvous file prefix inside DIR (default dtrain_tcp)\n"
      "  --min-bytes B       first size, suffix K/M/G allowed (default 4)\n"
      "  --max-bytes B       last size (default 256M)\n"
      "  --factor F          size multiplier, >= 2 (default 4)\n"
      "  --iters I           timed iterations per size (default 7)\n"
      "  --warmup W          untimed iterations per size (default 1)\n"
      "  --timeout S         per-operation, rendezvous and connect timeout, seconds (300)\n"
      "  --algo ring         accepted for symmetry with the Gloo driver (only ring)\n"
      "  --codec SPEC        identity (default) | minmax:bits=Q | fp4[:block=B] | fp16 | bf16\n"
      "  --streams S         TCP connections per peer pair (tcp_options::streams, default 1)\n"
      "  --stripe-bytes B    tcp_options::stripe_bytes (default 1M)\n"
      "  --sockbuf B         SO_SNDBUF/SO_RCVBUF, 0 = kernel autotuning (default 4M)\n"
      "  --segment-floats F  ring_options::max_segment_floats (default 1M)\n"
      "Rank 0 prints: size(B) count(elts) type time(us) algbw(GB/s) busbw(GB/s) #wrong,\n"
      "plus one CSV line per size; time = median over iterations of the slowest rank;\n"
      "bandwidths are fp32-equivalent (bytes of the fp32 input / time) whatever the codec.\n");
}

// The checks a codec gets: exact (identity) or bit-identity plus an error bound.
enum class check_kind { exact, bounded };

struct codec_check {
  check_kind kind = check_kind::exact;
  unsigned minmax_bits = 0;  // minmax only
  bool fp4 = false;
  double half_ulp = 0;       // fp16 / bf16: relative rounding error 2^-(p+1)
};

// Returns false for a codec this driver does not know how to check.
bool classify_codec(const std::string& spec, codec_check& c) {
  const std::string name = spec.substr(0, spec.find(':'));
  if (name == "identity") {
    c.kind = check_kind::exact;
    return true;
  }
  c.kind = check_kind::bounded;
  if (name == "minmax") {
    c.minmax_bits = 8;  // the registry's default
    const auto at = spec.find("bits=");
    if (at != std::string::npos) c.minmax_bits = static_cast<unsigned>(std::atoi(spec.c_str() + at + 5));
    return c.minmax_bits >= 1 && c.minmax_bits <= 8;
  }
  if (name == "fp4") {
    c.fp4 = true;
    return true;
  }
  if (name == "fp16") {
    c.half_ulp = 1.0 / 2048;  // 11-bit significand
    return true;
  }
  if (name == "bf16") {
    c.half_ulp = 1.0 / 256;  // 8-bit significand
    return true;
  }
  return false;
}

// A generous bound on |y - exact mean| for the ring with a lossy codec, N ranks, inputs in
// [0, M] (docs/net_bench.md, "Checks"). The ring encodes partial sums of 1..N-1
// contributions (range <= (s+1)·M) once each and the owner's mean once; each encode errs by
// at most half a quantization step (minmax), 1/3 relative (fp4) or half an ulp (fp16/bf16).
// First-order totals are M·(N+1)/(4L), ((4/3)^N − 1)·M and ~(N+1)·u·M; the bound takes 4×
// the first two's slack for minmax and the compounded worst case for fp4, so only a broken
// result (wrong chunk, garbage, NaN) exceeds it. Not a consensus path: plain double maths.
double error_bound(const codec_check& c, int n, double max_input) {
  if (c.minmax_bits != 0) {
    const double levels = static_cast<double>((1u << c.minmax_bits) - 1u);
    return (n + 1) * max_input / levels;
  }
  if (c.fp4) {
    double growth = 1.0;
    for (int i = 0; i < n; ++i) growth *= 4.0 / 3.0;
    return (growth - 1.0) * max_input + n * max_input / 128.0;
  }
  return 4.0 * (n + 1) * c.half_ulp * max_input;
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
    int streams = 0;
    if (key == "--rank") ok = parse_int(val, 0, 1 << 16, o.rank);
    else if (key == "--size") ok = parse_int(val, 1, 1 << 16, o.size);
    else if (key == "--store") o.store = val;
    else if (key == "--prefix") o.prefix = val;
    else if (key == "--iface-addr") o.iface_addr = val;
    else if (key == "--iters") ok = parse_int(val, 1, 1000000, o.iters);
    else if (key == "--warmup") ok = parse_int(val, 0, 1000000, o.warmup);
    else if (key == "--timeout") ok = parse_int(val, 1, 86400, o.timeout_s);
    else if (key == "--algo") ok = val == "ring";
    else if (key == "--codec") o.codec = val;
    else if (key == "--streams") {
      ok = parse_int(val, 1, 64, streams);
      if (ok) o.streams = static_cast<unsigned>(streams);
    } else if (key == "--min-bytes" || key == "--max-bytes" || key == "--factor" || key == "--stripe-bytes" ||
               key == "--sockbuf" || key == "--segment-floats") {
      const auto b = parse_bytes(val);
      ok = b.has_value();
      if (ok) {
        if (key == "--min-bytes") o.min_bytes = *b;
        else if (key == "--max-bytes") o.max_bytes = *b;
        else if (key == "--factor") o.factor = *b;
        else if (key == "--stripe-bytes") o.stripe_bytes = *b;
        else if (key == "--sockbuf") o.sockbuf = *b;
        else o.segment_floats = *b;
      }
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
  if (o.stripe_bytes < 4096 || o.stripe_bytes > (std::size_t{1} << 31) || o.sockbuf > (std::size_t{1} << 30) ||
      o.segment_floats == 0) {
    std::fprintf(stderr, "need --stripe-bytes in [4096, 2G], --sockbuf <= 1G, --segment-floats >= 1\n");
    return false;
  }
  return true;
}

double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// The driver's own control messages (barrier, per-iteration statistics, result
// comparison) run on a tag channel the rings never use, with their own sequence numbers.
class control {
 public:
  explicit control(transport& t) : t_(t), ops_(2 * t.size()) {}

  // Every rank sends `mine` to every other rank and receives theirs into all[r·len ...];
  // all.subspan(rank·len) is filled with mine. Doubles as the barrier (no rank returns
  // before every rank has entered). Errors: the transport's.
  status all_gather(std::span<const std::byte> mine, std::span<std::byte> all, deadline d) {
    const std::size_t n = t_.size(), me = t_.rank(), len = mine.size();
    std::memcpy(all.data() + me * len, mine.data(), len);
    const tag_t tag = make_tag(kChannel, seq_++, 0);
    std::size_t k = 0;
    for (std::size_t p = 0; p < n; ++p) {
      if (p == me) continue;
      auto o = t_.post_recv(static_cast<rank_t>(p), tag, all.subspan(p * len, len));
      if (!o.ok()) return finish(k, o.status(), d);
      ops_[k++] = *o;
    }
    for (std::size_t p = 0; p < n; ++p) {
      if (p == me) continue;
      auto o = t_.post_send(static_cast<rank_t>(p), tag, mine);
      if (!o.ok()) return finish(k, o.status(), d);
      ops_[k++] = *o;
    }
    return finish(k, ok_status(), d);
  }

  status barrier(deadline d) {
    const std::byte one{1};
    std::vector<std::byte>& all = scratch_;
    all.resize(t_.size());
    return all_gather(std::span(&one, 1), all, d);
  }

  // Rank 0 sends `data` to every rank; the others receive it into `out`. Errors: the
  // transport's; data_loss when the message is not data.size() bytes.
  status broadcast_from_0(std::span<const std::byte> data, std::span<std::byte> out, deadline d) {
    const tag_t tag = make_tag(kChannel, seq_++, 1);
    if (t_.rank() == 0) {
      std::size_t k = 0;
      for (std::size_t p = 1; p < t_.size(); ++p) {
        auto o = t_.post_send(static_cast<rank_t>(p), tag, data);
        if (!o.ok()) return finish(k, o.status(), d);
        ops_[k++] = *o;
      }
      return finish(k, ok_status(), d);
    }
    auto got = recv(t_, 0, tag, out, d);
    if (!got.ok()) return got.status();
    if (*got != out.size()) return data_loss("broadcast: short message");
    return ok_status();
  }

 private:
  static constexpr std::uint32_t kChannel = 0xFFFFF0;
  status finish(std::size_t k, status first, deadline d) {
    status st = wait_all(t_, std::span<const op>(ops_.data(), k), d);
    return first.ok() ? st : first;
  }
  transport& t_;
  std::vector<op> ops_;
  std::vector<std::byte> scratch_;
  std::uint32_t seq_ = 0;
};

// What each rank reports after one iteration; all-gathered, then reduced identically on
// every rank (max time, sums of the rest).
struct iter_stat {
  double time_s;
  double cpu_s;
  double max_abs_err;
  double sum_sq_err;
  std::uint64_t wrong;   // identity: inexact elements; lossy: elements over the bound
  std::uint64_t hash;    // xxh3 of the result bytes
};

int fail(int rank, const std::string& what, const status& st) {
  std::fprintf(stderr, "rank %d: %s: %s\n", rank, what.c_str(), st.to_string().c_str());
  return 1;
}

std::string algo_label(const options& o) {
  std::string s = "ring+" + o.codec;
  std::replace(s.begin(), s.end(), ',', ';');  // keep the CSV line's fields intact
  if (o.streams != 1) s += "+s" + std::to_string(o.streams);
  if (o.stripe_bytes != (std::size_t{1} << 20)) s += "+stripe" + std::to_string(o.stripe_bytes >> 10) + "K";
  if (o.sockbuf != (std::size_t{4} << 20)) s += "+sockbuf" + std::to_string(o.sockbuf >> 10) + "K";
  if (o.segment_floats != (std::size_t{1} << 20)) s += "+seg" + std::to_string(o.segment_floats);
  return s;
}

int run_sweep(const options& o, const codec_check& check) {
  const auto timeout = std::chrono::seconds(o.timeout_s);
  tcp::tcp_options to;
  to.streams = o.streams;
  to.stripe_bytes = static_cast<std::uint32_t>(o.stripe_bytes);
  to.socket_buffer_bytes = static_cast<int>(o.sockbuf);
  auto ctx = tcp::tcp_context::create(tcp::address{o.iface_addr, 0}, to);
  if (!ctx.ok()) return fail(o.rank, "tcp_context", ctx.status());
  const auto me = static_cast<rank_t>(o.rank);
  const auto n = static_cast<std::size_t>(o.size);
  auto addrs = tcp::file_rendezvous(o.store, o.prefix, me, n, (*ctx)->advertised_address(), after(timeout));
  if (!addrs.ok()) return fail(o.rank, "rendezvous", addrs.status());
  const std::uint64_t session = xxh3_64(std::as_bytes(std::span(o.prefix.data(), o.prefix.size())));
  auto tr = tcp_transport::create(**ctx, session, me, *addrs, after(timeout));
  if (!tr.ok()) return fail(o.rank, "connect", tr.status());
  tcp_transport& t = **tr;
  control ctl(t);

  const std::vector<std::size_t> sizes = dtrain_bench::sweep_sizes(o.min_bytes, o.max_bytes, o.factor);
  const std::size_t max_count = sizes.back() / 4;

  // pristine: this rank's input (restored before every iteration); expect: fl(sum / N),
  // what the ring returns with the identity codec since every sum is exact in fp32.
  std::vector<float> pristine(max_count), work(max_count), expect(max_count), other;
  const float nf = static_cast<float>(o.size);
  for (std::size_t i = 0; i < max_count; ++i) {
    pristine[i] = dtrain_bench::input_value(o.rank, i);
    expect[i] = dtrain_bench::expected_sum(o.size, i) / nf;
  }
  const double max_input = 12.0 + (o.size - 1);  // input_value's range is [0, 12 + N − 1]
  const double bound = check.kind == check_kind::exact ? 0.0 : error_bound(check, o.size, max_input);
  std::vector<iter_stat> all(n);
  std::vector<std::uint64_t> diffs(n);

  if (o.rank == 0) {
    std::printf("# dtrain_tcp_allreduce: dtrain ring over TCP, codec=%s, nranks=%d, iters=%d, warmup=%d, "
                "iface-addr=%s, streams=%u, stripe=%zu, sockbuf=%zu, segment_floats=%zu\n",
                o.codec.c_str(), o.size, o.iters, o.warmup, o.iface_addr.c_str(), o.streams, o.stripe_bytes,
                o.sockbuf, o.segment_floats);
    std::printf("# time = median over iterations of max over ranks; GB/s = 1e9 B/s of fp32 input; #wrong = %s\n",
                check.kind == check_kind::exact
                    ? "elements != fl(exact sum / N), over all ranks and iterations"
                    : "elements differing from rank 0's result + elements with |err| > bound, all ranks/iters");
    if (check.kind == check_kind::bounded) std::printf("# error bound |y - mean| <= %.4g\n", bound);
    dtrain_bench::print_table_header(stdout);
    std::fflush(stdout);
  }

  const std::string label = algo_label(o);
  std::vector<double> times;
  times.reserve(static_cast<std::size_t>(o.iters));
  std::uint32_t channel = 0;
  for (const std::size_t bytes : sizes) {
    const std::size_t count = bytes / 4;
    collective_options co;
    co.codec = o.codec;
    co.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
    co.channel = channel++;
    ring_options ro;
    ro.max_segment_floats = o.segment_floats;
    auto ring = ring_allreduce::create(t, count, co, ro);
    if (!ring.ok()) return fail(o.rank, "ring create", ring.status());
    const std::span<float> data(work.data(), count);
    times.clear();
    dtrain_bench::sweep_row row;
    row.bytes = bytes;
    double cpu_total = 0, wall_total = 0, max_err = 0, sq_err = 0;
    std::uint64_t wrong_total = 0;
    for (int it = 0; it < o.warmup + o.iters; ++it) {
      std::memcpy(work.data(), pristine.data(), bytes);
      if (auto st = ctl.barrier(after(timeout)); !st.ok()) return fail(o.rank, "barrier", st);
      const double cpu0 = process_cpu_s();
      const auto t0 = std::chrono::steady_clock::now();
      const status st = (*ring)->average(data, static_cast<std::uint64_t>(it));
      const auto t1 = std::chrono::steady_clock::now();
      const double cpu1 = process_cpu_s();
      if (!st.ok()) return fail(o.rank, "average (" + std::to_string(bytes) + " B)", st);

      iter_stat mine{};
      mine.time_s = std::chrono::duration<double>(t1 - t0).count();
      mine.cpu_s = cpu1 - cpu0;
      for (std::size_t i = 0; i < count; ++i) {
        if (check.kind == check_kind::exact) {
          mine.wrong += data[i] != expect[i] ? 1u : 0u;
        } else {
          const double e = std::fabs(static_cast<double>(data[i]) - static_cast<double>(expect[i]));
          // !(e <= bound) also counts NaN.
          mine.wrong += !(e <= bound) ? 1u : 0u;
          mine.max_abs_err = std::max(mine.max_abs_err, e);
          mine.sum_sq_err += e * e;
        }
      }
      mine.hash = check.kind == check_kind::exact ? 0 : xxh3_64(std::as_bytes(std::span<const float>(data)));
      if (auto s = ctl.all_gather(std::as_bytes(std::span(&mine, 1)), std::as_writable_bytes(std::span(all)),
                                  after(timeout));
          !s.ok())
        return fail(o.rank, "stat exchange", s);

      double max_t = 0, cpu = 0;
      bool same = true;
      for (const iter_stat& s : all) {
        max_t = std::max(max_t, s.time_s);
        cpu += s.cpu_s;
        wrong_total += s.wrong;
        max_err = std::max(max_err, s.max_abs_err);
        sq_err += s.sum_sq_err;
        same = same && s.hash == all[0].hash;
      }
      if (!same) {
        // Bit-identity broken: count the elements each rank disagrees with rank 0 on.
        other.resize(count);
        if (auto s = ctl.broadcast_from_0(std::as_bytes(std::span<const float>(data)),
                                          std::as_writable_bytes(std::span(other)), after(timeout));
            !s.ok())
          return fail(o.rank, "result broadcast", s);
        std::uint64_t d = 0;
        if (o.rank != 0)
          for (std::size_t i = 0; i < count; ++i)
            d += std::memcmp(&data[i], &other[i], sizeof(float)) != 0 ? 1u : 0u;
        if (auto s = ctl.all_gather(std::as_bytes(std::span(&d, 1)), std::as_writable_bytes(std::span(diffs)),
                                    after(timeout));
            !s.ok())
          return fail(o.rank, "diff exchange", s);
        for (auto x : diffs) wrong_total += x;
      }
      if (it < o.warmup) continue;
      times.push_back(max_t);
      cpu_total += cpu;
      wall_total += max_t;
    }
    row.min_s = *std::min_element(times.begin(), times.end());
    row.max_s = *std::max_element(times.begin(), times.end());
    row.time_s = dtrain_bench::median(times);
    row.cpu_cores = wall_total > 0 ? cpu_total / wall_total : 0;
    row.wrong = wrong_total;
    if (o.rank == 0) {
      dtrain_bench::print_row(stdout, row, o.size, "dtrain", label.c_str());
      if (check.kind == check_kind::bounded) {
        const double elems = static_cast<double>(count) * o.size * (o.warmup + o.iters);
        std::printf("# err size=%zu max_abs=%.4g rms=%.4g (mean of |values| ~ %.3g)\n", bytes, max_err,
                    std::sqrt(sq_err / elems), 6.0 + (o.size - 1) / 2.0);
        std::fflush(stdout);
      }
    }
  }
  // Leave together so no rank tears its connections down while another still reads.
  if (auto st = ctl.barrier(after(timeout)); !st.ok()) return fail(o.rank, "final barrier", st);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (!parse_args(argc, argv, o)) {
    usage(stderr);
    return 2;
  }
  codec_check check;
  if (!classify_codec(o.codec, check)) {
    std::fprintf(stderr, "unsupported --codec %s (identity, minmax:bits=Q, fp4, fp16, bf16)\n", o.codec.c_str());
    return 2;
  }
  return run_sweep(o, check);
}
