// Shard encode speed on one core: BLAKE2b-256 and XXH3-128 chunk hashing on 4 MiB chunks,
// one at a time and four at once (hash_chunks), RS(10,4) parity over 10 x 1 MiB data
// chunks, RS(10,4) rebuild of 4 lost data chunks, and the whole encoder on 64 MiB,
// beside a memcpy of the same bytes. Every fixture is validated first (hashes
// against the streaming form, parity against the plain reference, the rebuild against
// the original). Results: docs/shard_bench.md.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "baseline.h"
#include "dtrain/shard/chunk_hash.h"
#include "dtrain/shard/decoder.h"
#include "dtrain/shard/encoder.h"
#include "dtrain/shard/erasure.h"

namespace {

namespace sh = dtrain::shard;

constexpr std::size_t hash_chunk_bytes = std::size_t{4} << 20;  // 4 MiB
constexpr std::size_t rs_chunk_bytes = std::size_t{1} << 20;    // 1 MiB
constexpr std::size_t rs_k = 10;
constexpr std::size_t rs_m = 4;

std::vector<std::byte> random_bytes(std::size_t n, std::uint32_t seed) {
  std::vector<std::byte> v(n);
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    const std::uint64_t x = rng();
    std::memcpy(v.data() + i, &x, 8);
  }
  return v;
}

void bm_hash(benchmark::State& state, sh::hash_algo algo) {
  const auto data = random_bytes(hash_chunk_bytes, 1);
  // Validate: one-shot equals streaming in 64 KiB pieces.
  sh::chunk_hasher h(algo);
  for (std::size_t i = 0; i < data.size(); i += 65536) h.update(std::span(data).subspan(i, 65536));
  if (h.final() != sh::hash_chunk(algo, data)) return state.SkipWithError("one-shot != streaming");
  for (auto _ : state) {
    auto d = sh::hash_chunk(algo, data);
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
}

// hash_chunks on four 4 MiB chunks at once (BLAKE2b: one state per AVX2 lane).
void bm_hash_batch(benchmark::State& state, sh::hash_algo algo) {
  std::vector<std::vector<std::byte>> bufs;
  for (std::uint32_t i = 0; i < 4; ++i) bufs.push_back(random_bytes(hash_chunk_bytes, 20 + i));
  const std::vector<std::span<const std::byte>> views(bufs.begin(), bufs.end());
  std::vector<sh::chunk_digest> out(views.size());
  sh::hash_chunks(algo, views, out);
  for (std::size_t i = 0; i < views.size(); ++i)
    if (out[i] != sh::hash_chunk(algo, views[i])) return state.SkipWithError("hash_chunks != hash_chunk");
  for (auto _ : state) {
    sh::hash_chunks(algo, views, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * views.size() * hash_chunk_bytes));
}

// The whole encoder on a 64 MiB checkpoint in 4 MiB chunks: every chunk hashed, RS
// parity computed and hashed, the manifest built and its Merkle root taken. Counted as
// checkpoint bytes in per second. Checked first: the result decodes back to the input.
void bm_encode(benchmark::State& state, sh::hash_algo algo, std::size_t k, std::size_t m) {
  const auto data = random_bytes(std::size_t{64} << 20, 7);
  sh::encode_options opts;
  opts.chunk_size = hash_chunk_bytes;
  opts.algo = algo;
  opts.k = k;
  opts.m = m;
  {
    auto enc = sh::encode(data, opts);
    if (!enc.ok()) return state.SkipWithError(enc.status().to_string().c_str());
    std::vector<std::byte> out(data.size());
    auto dec = sh::decoder::create(enc->man, out);
    if (!dec.ok()) return state.SkipWithError(dec.status().to_string().c_str());
    // Lose the first data chunk of every stripe: parity must stand in.
    for (std::size_t i = 0; i < enc->man.total_chunks(); ++i)
      if (m == 0 || i % k != 0 || i >= enc->man.chunks.size()) (void)dec->add_chunk(i, enc->chunk(i));
    if (!dec->complete() || out != data) return state.SkipWithError("encode does not decode back to its input");
  }
  for (auto _ : state) {
    auto enc = sh::encode(data, opts);
    benchmark::DoNotOptimize(enc);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
}

struct rs_fixture {
  std::vector<std::vector<std::byte>> chunks;  // k data + m parity
  std::vector<std::span<const std::byte>> data;
  std::vector<std::span<std::byte>> parity;
  sh::rs_code code;
  std::string error;

  static sh::rs_code make_code() { return std::move(sh::rs_code::create(rs_k, rs_m)).value(); }

  rs_fixture() : code(make_code()) {
    for (std::size_t i = 0; i < rs_k; ++i) chunks.push_back(random_bytes(rs_chunk_bytes, static_cast<std::uint32_t>(i + 10)));
    for (std::size_t j = 0; j < rs_m; ++j) chunks.emplace_back(rs_chunk_bytes);
    for (std::size_t i = 0; i < rs_k; ++i) data.emplace_back(chunks[i]);
    for (std::size_t j = 0; j < rs_m; ++j) parity.emplace_back(chunks[rs_k + j]);
    if (auto st = code.encode(data, parity); !st.ok()) { error = st.to_string(); return; }
    std::vector<std::vector<std::byte>> ref(rs_m, std::vector<std::byte>(rs_chunk_bytes));
    std::vector<std::span<std::byte>> ref_spans(ref.begin(), ref.end());
    if (auto st = sh::rs_encode_reference(rs_k, rs_m, data, ref_spans); !st.ok()) { error = st.to_string(); return; }
    for (std::size_t j = 0; j < rs_m; ++j)
      if (ref[j] != chunks[rs_k + j]) { error = "ISA-L parity differs from the reference"; return; }
  }
};

void bm_rs_encode(benchmark::State& state) {
  rs_fixture f;
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  for (auto _ : state) {
    auto st = f.code.encode(f.data, f.parity);
    benchmark::DoNotOptimize(st);
    benchmark::ClobberMemory();
  }
  // Throughput counts the data bytes in (10 MiB per stripe), not the parity written.
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * rs_k * rs_chunk_bytes));
}

void bm_rs_reconstruct(benchmark::State& state) {
  rs_fixture f;
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  // Data chunks 0..3 lost: rebuild them from data 4..9 and all four parity chunks.
  const std::vector<std::size_t> present = {4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
  const std::vector<std::size_t> missing = {0, 1, 2, 3};
  std::vector<std::span<const std::byte>> in;
  for (std::size_t p : present) in.emplace_back(f.chunks[p]);
  std::vector<std::vector<std::byte>> out(missing.size(), std::vector<std::byte>(rs_chunk_bytes));
  std::vector<std::span<std::byte>> out_spans(out.begin(), out.end());
  if (auto st = f.code.reconstruct(present, in, missing, out_spans); !st.ok())
    return state.SkipWithError(st.to_string().c_str());
  for (std::size_t j = 0; j < missing.size(); ++j)
    if (out[j] != f.chunks[missing[j]]) return state.SkipWithError("rebuilt chunk differs from the original");
  for (auto _ : state) {
    auto st = f.code.reconstruct(present, in, missing, out_spans);
    benchmark::DoNotOptimize(st);
    benchmark::ClobberMemory();
  }
  // Counted as the stripe's data bytes (10 MiB) recovered per call, like encode.
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * rs_k * rs_chunk_bytes));
}

}  // namespace

int main(int argc, char** argv) {
  // memcpy of one 4 MiB chunk and of one 10 MiB stripe (floats, so n = bytes / 4).
  benchmark::RegisterBenchmark("BM_memcpy/4MiB", dtrain::bench::memcpy_baseline)
      ->Arg(static_cast<std::int64_t>(hash_chunk_bytes / 4));
  benchmark::RegisterBenchmark("BM_memcpy/10MiB", dtrain::bench::memcpy_baseline)
      ->Arg(static_cast<std::int64_t>(rs_k * rs_chunk_bytes / 4));
  benchmark::RegisterBenchmark("BM_hash/blake2b_256/4MiB", bm_hash, sh::hash_algo::blake2b_256);
  benchmark::RegisterBenchmark("BM_hash/xxh3_128/4MiB", bm_hash, sh::hash_algo::xxh3_128);
  benchmark::RegisterBenchmark("BM_hash_chunks/blake2b_256/4x4MiB", bm_hash_batch, sh::hash_algo::blake2b_256);
  benchmark::RegisterBenchmark("BM_hash_chunks/xxh3_128/4x4MiB", bm_hash_batch, sh::hash_algo::xxh3_128);
  benchmark::RegisterBenchmark("BM_rs_encode/10+4/1MiB", bm_rs_encode);
  benchmark::RegisterBenchmark("BM_rs_reconstruct4/10+4/1MiB", bm_rs_reconstruct);
  benchmark::RegisterBenchmark("BM_encode/blake2b_256/rs10+4/64MiB", bm_encode, sh::hash_algo::blake2b_256, 10, 4)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_encode/blake2b_256/none/64MiB", bm_encode, sh::hash_algo::blake2b_256, 1, 0)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_encode/xxh3_128/rs10+4/64MiB", bm_encode, sh::hash_algo::xxh3_128, 10, 4)
      ->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
