// TOPLOC proof speed per 32x4096 bf16 chunk with k = 128 (one decode proof in
// production): each stage alone (top-k, injective modulus, interpolation, evaluation), a
// full build and a full verify on one thread (on a chunk resident in L2, and walking 64
// chunks that are not), and batches of 64 chunks on 1 and 2 threads, beside a memcpy of
// the same bytes. Every fixture is validated before timing
// (the fast kernels against the reference ones, the proof against its own verifier).
// Results and the reference's numbers: docs/toploc_bench.md.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "baseline.h"
#include "dtrain/core/dtype.h"
#include "dtrain/core/rng.h"
#include "dtrain/toploc/chunking.h"
#include "dtrain/toploc/field.h"
#include "dtrain/toploc/modulus.h"
#include "dtrain/toploc/poly.h"
#include "dtrain/toploc/proof.h"
#include "dtrain/toploc/topk.h"
#include "dtrain/toploc/verify.h"

namespace {

namespace tl = dtrain::toploc;

constexpr std::size_t hidden = 4096;
constexpr std::size_t rows = 32;
constexpr std::size_t chunk_values = rows * hidden;  // 131072 values, 256 KiB of bf16
constexpr std::size_t k = tl::default_k;
constexpr std::size_t batch_chunks = 64;

enum class kind { llm, gauss };
const char* kind_name(kind d) { return d == kind::llm ? "llm" : "gauss"; }

/// `tokens` rows of bf16 hidden states. gauss: N(0, 1). llm: N(0, 1) plus six outlier
/// channels holding 10-50 (sign fixed per channel, +-20% per token), the "massive
/// activation" channels of final-norm outputs; they fill most of the top-k.
std::vector<std::uint16_t> make_states(kind d, std::size_t tokens, std::uint64_t seed) {
  dtrain::counter_rng rng(seed);
  std::vector<std::uint16_t> x(tokens * hidden);
  for (auto& v : x) v = dtrain::f32_to_bf16_bits(rng.next_normal());
  if (d == kind::llm) {
    dtrain::counter_rng chans(seed, 1);
    for (int c = 0; c < 6; ++c) {
      const std::size_t ch = chans.next_below(static_cast<std::uint32_t>(hidden));
      const float mag = 10.0f + 40.0f * chans.next_uniform();
      const float sign = chans.next_uniform() < 0.5f ? -1.0f : 1.0f;
      for (std::size_t t = 0; t < tokens; ++t)
        x[t * hidden + ch] = dtrain::f32_to_bf16_bits(sign * mag * (1.0f + 0.2f * (2.0f * chans.next_uniform() - 1.0f)));
    }
  }
  return x;
}

/// One chunk with its selection, modulus, points and proof, all checked against the
/// reference kernels once.
struct chunk_fixture {
  std::vector<std::uint16_t> x;
  std::vector<std::uint32_t> idx, px, py;
  std::uint32_t m = 0;
  tl::proof proof;
  std::string error;

  explicit chunk_fixture(kind d) : x(make_states(d, rows, 42)), idx(k) { error = prepare(); }

 private:
  std::string prepare() {
    auto n = tl::select_topk(x, k, idx);
    std::vector<std::uint32_t> ref(k);
    auto nr = tl::select_topk_reference(x, k, ref);
    if (!n.ok() || !nr.ok() || idx != ref) return "select_topk disagrees with select_topk_reference";
    auto mod = tl::injective_modulus(idx);
    if (!mod.ok()) return mod.status().to_string();
    m = *mod;
    for (std::uint32_t i : idx) {
      px.push_back(i % m);
      py.push_back(x[i]);
    }
    std::vector<std::uint16_t> c(k), cr(k);
    if (!tl::interpolate(px, py, c).ok() || !tl::interpolate_reference(px, py, cr).ok() || c != cr)
      return "interpolate disagrees with interpolate_reference";
    tl::chunk_prover prover(k);
    if (auto st = prover.build(std::span<const std::uint16_t>(x), proof); !st.ok()) return st.to_string();
    if (proof.modulus != m || proof.coeffs != c) return "chunk_prover::build disagrees with the stages";
    tl::chunk_verifier verifier(k);
    auto chk = verifier.check(proof, tl::hidden_states::bf16(x, rows, hidden));
    if (!chk.ok() || chk->exponent_mismatches != 0 || chk->mantissa_error_mean != 0)
      return "the proof does not verify on its own chunk";
    for (std::size_t i = 0; i < k; ++i)
      if (tl::evaluate(proof.coeffs, px[i]) != py[i] % tl::prime) return "evaluate misses a committed point";
    return {};
  }
};

const chunk_fixture& fixture(kind d) {
  static const chunk_fixture llm(kind::llm), gauss(kind::gauss);
  return d == kind::llm ? llm : gauss;
}

void per_chunk(benchmark::State& state) {
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * chunk_values * sizeof(std::uint16_t)));
}

bool skip_if_bad(benchmark::State& state, const chunk_fixture& f) {
  if (f.error.empty()) return false;
  state.SkipWithError(f.error.c_str());
  return true;
}

// ---- stages ----------------------------------------------------------------------------

void bm_select_topk(benchmark::State& state, kind d) {
  const auto& f = fixture(d);
  if (skip_if_bad(state, f)) return;
  std::vector<std::uint32_t> out(k);
  for (auto _ : state) {
    auto n = tl::select_topk(f.x, k, out);
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(out.data());
  }
  per_chunk(state);
}

void bm_injective_modulus(benchmark::State& state, kind d) {
  const auto& f = fixture(d);
  if (skip_if_bad(state, f)) return;
  for (auto _ : state) {
    auto m = tl::injective_modulus(f.idx);
    benchmark::DoNotOptimize(m);
  }
  per_chunk(state);
  state.counters["m"] = f.m;
}

void bm_interpolate(benchmark::State& state, kind d) {
  const auto& f = fixture(d);
  if (skip_if_bad(state, f)) return;
  std::vector<std::uint16_t> c(k);
  for (auto _ : state) {
    auto st = tl::interpolate(f.px, f.py, c);
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(c.data());
  }
  per_chunk(state);
}

void bm_interpolate_reference(benchmark::State& state, kind d) {
  const auto& f = fixture(d);
  if (skip_if_bad(state, f)) return;
  std::vector<std::uint16_t> c(k);
  for (auto _ : state) {
    auto st = tl::interpolate_reference(f.px, f.py, c);
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(c.data());
  }
  per_chunk(state);
}

void bm_evaluate_many(benchmark::State& state, kind d) {
  const auto& f = fixture(d);
  if (skip_if_bad(state, f)) return;
  std::vector<std::uint32_t> y(k);
  for (auto _ : state) {
    tl::evaluate_many(f.proof.coeffs, f.px, y);
    benchmark::DoNotOptimize(y.data());
  }
  per_chunk(state);
}

void bm_evaluate_horner(benchmark::State& state, kind d) {
  const auto& f = fixture(d);
  if (skip_if_bad(state, f)) return;
  std::vector<std::uint32_t> y(k);
  for (auto _ : state) {
    for (std::size_t i = 0; i < k; ++i) y[i] = tl::evaluate(f.proof.coeffs, f.px[i]);
    benchmark::DoNotOptimize(y.data());
  }
  per_chunk(state);
}

// ---- one chunk, end to end --------------------------------------------------------------

void bm_build(benchmark::State& state, kind d) {
  const auto& f = fixture(d);
  if (skip_if_bad(state, f)) return;
  tl::chunk_prover prover(k);
  tl::proof p;
  for (auto _ : state) {
    auto st = prover.build(std::span<const std::uint16_t>(f.x), p);
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(p.coeffs.data());
  }
  per_chunk(state);
}

void bm_verify(benchmark::State& state, kind d) {
  const auto& f = fixture(d);
  if (skip_if_bad(state, f)) return;
  tl::chunk_verifier verifier(k);
  const auto states = tl::hidden_states::bf16(f.x, rows, hidden);
  for (auto _ : state) {
    auto r = verifier.check(f.proof, states);
    benchmark::DoNotOptimize(r);
  }
  per_chunk(state);
}

// ---- batches ---------------------------------------------------------------------------

struct batch_fixture {
  std::vector<std::uint16_t> x;
  std::vector<tl::proof> proofs;
  std::string error;

  explicit batch_fixture(kind d) : x(make_states(d, rows * batch_chunks, 7)) {
    tl::proof_options opt;
    opt.threads = 1;
    auto p = tl::build_proofs(states(), opt);
    if (!p.ok()) {
      error = p.status().to_string();
      return;
    }
    proofs = std::move(p).value();
    opt.threads = 2;
    auto p2 = tl::build_proofs(states(), opt);
    if (!p2.ok() || *p2 != proofs) error = "build_proofs depends on the thread count";
    auto v = tl::verify_proofs(states(), proofs, opt);
    if (!v.ok() || v->size() != batch_chunks || !tl::failing_chunks(*v, tl::acceptance_policy{}).empty())
      error = "the batch does not verify";
  }
  tl::hidden_states states() const { return tl::hidden_states::bf16(x, rows * batch_chunks, hidden); }
};

const batch_fixture& batch(kind d) {
  static const batch_fixture llm(kind::llm), gauss(kind::gauss);
  return d == kind::llm ? llm : gauss;
}

void per_batch(benchmark::State& state) {
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch_chunks));
  state.SetBytesProcessed(
      static_cast<std::int64_t>(state.iterations() * batch_chunks * chunk_values * sizeof(std::uint16_t)));
}

void bm_build_proofs(benchmark::State& state, kind d) {
  const auto& b = batch(d);
  if (!b.error.empty()) return state.SkipWithError(b.error.c_str());
  tl::proof_options opt;
  opt.threads = static_cast<unsigned>(state.range(0));
  for (auto _ : state) {
    auto p = tl::build_proofs(b.states(), opt);
    benchmark::DoNotOptimize(p);
  }
  per_batch(state);
}

void bm_verify_proofs(benchmark::State& state, kind d) {
  const auto& b = batch(d);
  if (!b.error.empty()) return state.SkipWithError(b.error.c_str());
  tl::proof_options opt;
  opt.threads = static_cast<unsigned>(state.range(0));
  for (auto _ : state) {
    auto r = tl::verify_proofs(b.states(), b.proofs, opt);
    benchmark::DoNotOptimize(r);
  }
  per_batch(state);
}

// One prover or verifier walking the batch's 64 chunks (16 MiB, beyond L2) one per
// iteration: the single-chunk cost without the cache-resident input of bm_build.
void bm_build_rotating(benchmark::State& state, kind d) {
  const auto& b = batch(d);
  if (!b.error.empty()) return state.SkipWithError(b.error.c_str());
  tl::chunk_prover prover(k);
  tl::proof p;
  std::size_t c = 0;
  for (auto _ : state) {
    auto st = prover.build(std::span(b.x).subspan(c * chunk_values, chunk_values), p);
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(p.coeffs.data());
    c = (c + 1) % batch_chunks;
  }
  per_chunk(state);
}

void bm_verify_rotating(benchmark::State& state, kind d) {
  const auto& b = batch(d);
  if (!b.error.empty()) return state.SkipWithError(b.error.c_str());
  tl::chunk_verifier verifier(k);
  std::size_t c = 0;
  for (auto _ : state) {
    auto r = verifier.check(b.proofs[c], b.states().rows(c * rows, rows));
    benchmark::DoNotOptimize(r);
    c = (c + 1) % batch_chunks;
  }
  per_chunk(state);
}

int register_all() {
  // memcpy of one chunk (256 KiB = 65536 floats) and of one batch (16 MiB).
  benchmark::RegisterBenchmark("BM_memcpy/chunk", dtrain::bench::memcpy_baseline)
      ->Arg(chunk_values / 2)->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_memcpy/batch64", dtrain::bench::memcpy_baseline)
      ->Arg(batch_chunks * chunk_values / 2)->UseRealTime()->Unit(benchmark::kMicrosecond);
  for (kind d : {kind::llm, kind::gauss}) {
    const std::string n = kind_name(d);
    const auto reg = [&](const char* name, void (*fn)(benchmark::State&, kind)) {
      benchmark::RegisterBenchmark((std::string(name) + "/" + n).c_str(), fn, d)->Unit(benchmark::kMicrosecond);
    };
    reg("BM_select_topk", bm_select_topk);
    reg("BM_injective_modulus", bm_injective_modulus);
    reg("BM_interpolate", bm_interpolate);
    reg("BM_interpolate_reference", bm_interpolate_reference);
    reg("BM_evaluate_many", bm_evaluate_many);
    reg("BM_evaluate_horner", bm_evaluate_horner);
    reg("BM_build", bm_build);
    reg("BM_verify", bm_verify);
    reg("BM_build_rotating", bm_build_rotating);
    reg("BM_verify_rotating", bm_verify_rotating);
    const auto reg_batch = [&](const char* name, void (*fn)(benchmark::State&, kind)) {
      benchmark::RegisterBenchmark((std::string(name) + "/" + n).c_str(), fn, d)
          ->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
    };
    reg_batch("BM_build_proofs", bm_build_proofs);
    reg_batch("BM_verify_proofs", bm_verify_proofs);
  }
  return 0;
}

const int registered = register_all();

}  // namespace
