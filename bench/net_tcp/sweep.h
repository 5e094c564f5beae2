// Shared pieces of the all-reduce sweep drivers (Gloo baseline and dtrain): size sweep,
// the exact-sum input pattern, medians and the nccl-tests-style table. Header-only so each
// driver stays one translation unit. The table and CSV formats are specified in
// docs/net_bench_method.md; keep both drivers on these helpers so their rows line up.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dtrain_bench {

// Parses a byte count with an optional binary suffix: "4", "64K", "16M", "1G" (K = 2^10).
// Returns nullopt on an empty string, a non-digit, an unknown suffix or overflow.
inline std::optional<std::size_t> parse_bytes(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::size_t value = 0;
  std::size_t i = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    const std::size_t digit = static_cast<std::size_t>(s[i] - '0');
    if (value > (SIZE_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  if (i == 0) return std::nullopt;
  unsigned shift = 0;
  if (i < s.size()) {
    if (i + 1 != s.size()) return std::nullopt;
    switch (s[i]) {
      case 'k': case 'K': shift = 10; break;
      case 'm': case 'M': shift = 20; break;
      case 'g': case 'G': shift = 30; break;
      default: return std::nullopt;
    }
  }
  if (shift != 0 && value > (SIZE_MAX >> shift)) return std::nullopt;
  return value << shift;
}

// The sizes of a sweep: min, min*factor, ... while <= max, each rounded down to a whole
// number of fp32 elements and at least one element. Precondition: factor >= 2, min <= max.
/// A decimal integer in [lo, hi] (at most 9 digits, no sign); false otherwise.
inline bool parse_int(std::string_view s, int lo, int hi, int& out) {
  if (s.empty() || s.size() > 9) return false;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < lo || v > hi) return false;
  out = static_cast<int>(v);
  return true;
}

/// The checks both drivers make on the flags they share; prints why and returns false.
inline bool check_common_args(int rank, int size, const std::string& store, std::size_t factor,
                              std::size_t min_bytes, std::size_t max_bytes) {
  if (rank < 0 || size < 1 || store.empty()) {
    std::fprintf(stderr, "--rank, --size and --store are required\n");
    return false;
  }
  if (rank >= size) {
    std::fprintf(stderr, "--rank must be < --size\n");
    return false;
  }
  if (factor < 2 || min_bytes < 1 || min_bytes > max_bytes) {
    std::fprintf(stderr, "need --factor >= 2 and 1 <= --min-bytes <= --max-bytes\n");
    return false;
  }
  return true;
}

inline std::vector<std::size_t> sweep_sizes(std::size_t min_bytes, std::size_t max_bytes,
                                            std::size_t factor) {
  std::vector<std::size_t> out;
  for (std::size_t b = min_bytes; b <= max_bytes; b *= factor) {
    const std::size_t rounded = std::max<std::size_t>(4, b / 4 * 4);
    if (out.empty() || out.back() != rounded) out.push_back(rounded);
    if (b > max_bytes / factor) break;  // next step would pass max (or overflow)
  }
  return out;
}

// Rank r's input element i: a small integer, so every partial sum of up to 2^16 ranks is
// exact in fp32 whatever order the algorithm adds in, and #wrong counts exact mismatches.
inline float input_value(int rank, std::size_t i) {
  return static_cast<float>(static_cast<int>((i + 3u * static_cast<unsigned>(rank)) % 13u) +
                            rank);
}

// The exact all-reduce sum of element i over ranks 0..size-1, computed independently of
// the algorithm under test.
inline float expected_sum(int size, std::size_t i) {
  int sum = 0;
  for (int r = 0; r < size; ++r)
    sum += static_cast<int>((i + 3u * static_cast<unsigned>(r)) % 13u) + r;
  return static_cast<float>(sum);
}

// Median of v (mean of the two middle values for an even count). Sorts v. Empty -> 0.
inline double median(std::vector<double>& v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// One measured size. time_s is the median over timed iterations of the slowest rank's
// time; min_s/max_s the extremes of that per-iteration maximum; cpu_cores the CPU time of
// all ranks (all threads, user + sys) during the timed calls divided by their wall time.
struct sweep_row {
  std::size_t bytes = 0;
  double time_s = 0, min_s = 0, max_s = 0, cpu_cores = 0;
  std::uint64_t wrong = 0;
};

// algbw = S/t and busbw = algbw * 2(n-1)/n, in GB/s (1e9 B/s), as nccl-tests defines them.
inline double algbw_gbs(const sweep_row& r) { return r.time_s > 0 ? r.bytes / r.time_s / 1e9 : 0; }
inline double busbw_gbs(const sweep_row& r, int n) {
  return algbw_gbs(r) * 2.0 * (n - 1) / n;
}

inline void print_table_header(std::FILE* f) {
  std::fprintf(f, "#%12s %12s %6s %12s %12s %12s %8s\n", "size(B)", "count(elts)", "type",
               "time(us)", "algbw(GB/s)", "busbw(GB/s)", "#wrong");
}

// Prints the table row and the machine-readable line
//   CSV,<impl>,<algo>,<n>,<size>,<count>,float,<time_us>,<algbw>,<busbw>,<wrong>,
//       <min_us>,<max_us>,<cpu_cores>
inline void print_row(std::FILE* f, const sweep_row& r, int n, const char* impl,
                      const char* algo) {
  const std::size_t count = r.bytes / 4;
  std::fprintf(f, " %12zu %12zu %6s %12.1f %12.3f %12.3f %8llu\n", r.bytes, count, "float",
               r.time_s * 1e6, algbw_gbs(r), busbw_gbs(r, n),
               static_cast<unsigned long long>(r.wrong));
  std::fprintf(f, "CSV,%s,%s,%d,%zu,%zu,float,%.1f,%.4f,%.4f,%llu,%.1f,%.1f,%.2f\n", impl, algo,
               n, r.bytes, count, r.time_s * 1e6, algbw_gbs(r), busbw_gbs(r, n),
               static_cast<unsigned long long>(r.wrong), r.min_s * 1e6, r.max_s * 1e6,
               r.cpu_cores);
  std::fflush(f);
}

}  // namespace dtrain_bench
