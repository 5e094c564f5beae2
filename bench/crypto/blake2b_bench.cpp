// BLAKE2b-256 of 4 independent messages (4 x 1 MiB and 4 x 64 KiB) on one core:
// libsodium one message at a time, blake2b_256_many (4-lane AVX2 kernel) and the
// portable 4-lane kernel, beside a memcpy of the same bytes. Every case first checks
// its digests against libsodium and aborts on a mismatch.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../../lib/crypto/blake2b_many_kernels.h"
#include "dtrain/crypto/blake2b.h"
#include "dtrain/crypto/blake2b_many.h"

namespace {

namespace cr = dtrain::crypto;

std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> v(n);
  std::uint64_t x = seed * 0x9e3779b97f4a7c15 + 1;
  for (auto& b : v) {
    x ^= x << 13;  // xorshift64
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  return v;
}

// `count` messages of `bytes` each, and their libsodium digests.
struct fixture {
  std::vector<std::vector<std::byte>> data;
  std::vector<std::span<const std::byte>> msgs;
  std::vector<cr::digest256> expect;

  fixture(std::size_t count, std::size_t bytes) {
    for (std::size_t i = 0; i < count; ++i) data.push_back(random_bytes(bytes, i + 1));
    msgs.assign(data.begin(), data.end());
    for (const auto& m : msgs) expect.push_back(cr::blake2b_256(m));
  }

  std::size_t total_bytes() const { return msgs.size() * msgs[0].size(); }

  void verify(const std::vector<cr::digest256>& got, const char* what) const {
    if (got == expect) return;
    std::fprintf(stderr, "blake2b_bench: %s digests differ from libsodium\n", what);
    std::abort();
  }
};

void run_portable(const fixture& f, cr::digest256 out[4]) {
  const std::byte* in[4];
  std::size_t len[4];
  for (std::size_t l = 0; l < 4; ++l) {
    in[l] = f.msgs[l].data();
    len[l] = f.msgs[l].size();
  }
  cr::detail::blake2b_256_x4_portable(in, len, out);
}

void bm_memcpy(benchmark::State& state) {
  const fixture f(4, static_cast<std::size_t>(state.range(0)));
  std::vector<std::byte> dst(f.total_bytes());
  for (auto _ : state) {
    std::byte* p = dst.data();
    for (const auto& m : f.msgs) {
      std::memcpy(p, m.data(), m.size());
      p += m.size();
    }
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * f.total_bytes()));
}

void bm_libsodium(benchmark::State& state) {
  const fixture f(4, static_cast<std::size_t>(state.range(0)));
  std::vector<cr::digest256> out(4);
  for (std::size_t i = 0; i < 4; ++i) out[i] = cr::blake2b_256(f.msgs[i]);
  f.verify(out, "libsodium");
  for (auto _ : state) {
    for (std::size_t i = 0; i < 4; ++i) out[i] = cr::blake2b_256(f.msgs[i]);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * f.total_bytes()));
}

// state.range(1) messages: 4 is the benchmark proper; 2 and 3 time the tail policy of
// blake2b_256_many (kernel with idle dummy lanes versus libsodium per message).
void bm_many(benchmark::State& state) {
  const fixture f(static_cast<std::size_t>(state.range(1)), static_cast<std::size_t>(state.range(0)));
  std::vector<cr::digest256> out(f.msgs.size());
  cr::blake2b_256_many(f.msgs, out);
  f.verify(out, "blake2b_256_many");
  for (auto _ : state) {
    cr::blake2b_256_many(f.msgs, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * f.total_bytes()));
  state.SetLabel(cr::blake2b_256_many_uses_avx2() ? "avx2" : "no avx2: libsodium per message");
}

void bm_portable_x4(benchmark::State& state) {
  const fixture f(4, static_cast<std::size_t>(state.range(0)));
  std::vector<cr::digest256> out(4);
  run_portable(f, out.data());
  f.verify(out, "blake2b_256_x4_portable");
  for (auto _ : state) {
    run_portable(f, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * f.total_bytes()));
}

constexpr std::int64_t mib = std::int64_t{1} << 20;
constexpr std::int64_t kib64 = std::int64_t{64} << 10;

}  // namespace

BENCHMARK(bm_memcpy)->Arg(mib)->Arg(kib64);
BENCHMARK(bm_libsodium)->Arg(mib)->Arg(kib64);
BENCHMARK(bm_many)->Args({mib, 4})->Args({kib64, 4})->Args({mib, 3})->Args({mib, 2});
BENCHMARK(bm_portable_x4)->Arg(mib)->Arg(kib64);
