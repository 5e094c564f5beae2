// bench/toploc/interop_check.cpp: compares dtrain's TOPLOC proofs and verdicts with the
// reference's (toploc 0.1.6), read from the file scripts/toploc_interop.py writes (its
// docstring specifies the format). Run through scripts/toploc_interop.sh.
//
// For every chunk it checks, in order:
//   1. build: dtrain's proof bytes against the reference's. When the bytes differ, the
//      selections are compared: a difference is explained by tie order only when the two
//      index sets differ solely in elements whose magnitude equals the k-th largest (a
//      tie at the k boundary, which torch resolves its own way). Anything else is a bug.
//   2. re-proof: dtrain's injective_modulus + interpolate on torch's own selection must
//      give the reference's bytes exactly, ties or not.
//   3. verify: dtrain's chunk_verifier on the reference's proof against each verifier
//      variant (exact and jittered activations), beside the reference's C++ verifier
//      (upper median, index mod m) and Python verifier (statistics.median, raw index).
//      Equal results are required wherever both sides selected the same index set and,
//      for the Python path, where no selected index is >= m (the reference's defect).
//   4. self-check: dtrain verifying its own proof on the exact states finds no mismatch.
// Exit status: 0 when every difference is explained, 1 otherwise, 2 on a bad file.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "dtrain/toploc/chunking.h"
#include "dtrain/toploc/field.h"
#include "dtrain/toploc/modulus.h"
#include "dtrain/toploc/poly.h"
#include "dtrain/toploc/proof.h"
#include "dtrain/toploc/topk.h"
#include "dtrain/toploc/verify.h"

namespace {

namespace tl = dtrain::toploc;

// ---- the file ---------------------------------------------------------------------------

/// Bounds-checked little-endian reader; any overrun sets `bad` and yields zeros.
struct reader {
  std::span<const std::uint8_t> data;
  std::size_t pos = 0;
  bool bad = false;

  bool take(void* out, std::size_t n) {
    if (bad || data.size() - pos < n) {
      bad = true;
      std::memset(out, 0, n);
      return false;
    }
    std::memcpy(out, data.data() + pos, n);
    pos += n;
    return true;
  }
  template <class T>
  T le() {
    std::uint8_t b[sizeof(T)];
    take(b, sizeof(T));
    std::uint64_t v = 0;
    for (std::size_t i = sizeof(T); i-- > 0;) v = (v << 8) | b[i];
    if constexpr (std::is_same_v<T, double>) {
      double d;
      std::memcpy(&d, &v, sizeof d);
      return d;
    } else {
      return static_cast<T>(v);
    }
  }
  std::uint32_t u32() { return le<std::uint32_t>(); }
  std::string str() {
    const std::uint32_t n = u32();
    if (bad || n > data.size() - pos) {
      bad = true;
      return {};
    }
    std::string s(reinterpret_cast<const char*>(data.data() + pos), n);
    pos += n;
    return s;
  }
  std::vector<std::uint16_t> u16s(std::size_t n) {
    if (bad || n > (data.size() - pos) / 2) {
      bad = true;
      return {};
    }
    std::vector<std::uint16_t> v(n);
    for (auto& x : v) x = le<std::uint16_t>();
    return v;
  }
  std::vector<std::uint32_t> u32s() {
    const std::uint32_t n = u32();
    if (bad || n > (data.size() - pos) / 4) {
      bad = true;
      return {};
    }
    std::vector<std::uint32_t> v(n);
    for (auto& x : v) x = u32();
    return v;
  }
  std::vector<std::byte> bytes(std::size_t n) {
    if (bad || n > data.size() - pos) {
      bad = true;
      return {};
    }
    std::vector<std::byte> v(n);
    std::memcpy(v.data(), data.data() + pos, n);
    pos += n;
    return v;
  }
};

struct ref_result {
  std::uint32_t exp_mismatches = 0;
  double mean = 0, median = 0;
};

struct ref_chunk_verify {
  std::vector<std::uint32_t> idx;  // torch's top-k on the verifier's chunk
  std::optional<ref_result> cpp, py;
};

struct variant {
  std::string name;
  std::vector<std::uint16_t> states;
  std::vector<ref_chunk_verify> chunks;
};

struct ref_chunk_build {
  bool ok = false;
  std::vector<std::uint32_t> idx;  // torch's top-k on the prover's chunk
  std::vector<std::byte> proof;
};

struct test_case {
  std::string name;
  std::size_t tokens = 0, hidden = 0, prefill = 0, per = 0, k = 0;
  std::vector<std::uint16_t> states;
  std::vector<ref_chunk_build> builds;
  std::vector<variant> variants;
};

bool read_cases(std::span<const std::uint8_t> data, std::vector<test_case>& cases, std::string& error) {
  reader r{data};
  char magic[8];
  r.take(magic, 8);
  if (r.bad || std::memcmp(magic, "DTLOCIO1", 8) != 0) {
    error = "not an interop file (magic)";
    return false;
  }
  if (const std::uint32_t v = r.u32(); v != 1) {
    error = "unsupported version " + std::to_string(v);
    return false;
  }
  const std::uint32_t n_cases = r.u32();
  for (std::uint32_t c = 0; c < n_cases && !r.bad; ++c) {
    test_case t;
    t.name = r.str();
    t.tokens = r.u32();
    t.hidden = r.u32();
    t.prefill = r.u32();
    t.per = r.u32();
    t.k = r.u32();
    const std::uint32_t n_chunks = r.u32();
    if (t.k == 0 || t.k > tl::prime || t.tokens * t.hidden > data.size()) {
      error = t.name + ": bad shape or k";
      return false;
    }
    t.states = r.u16s(t.tokens * t.hidden);
    for (std::uint32_t i = 0; i < n_chunks && !r.bad; ++i) {
      ref_chunk_build b;
      std::uint8_t ok = 0;
      r.take(&ok, 1);
      b.ok = ok != 0;
      b.idx = r.u32s();
      b.proof = r.bytes(tl::proof_size(t.k));
      t.builds.push_back(std::move(b));
    }
    const std::uint32_t n_variants = r.u32();
    for (std::uint32_t v = 0; v < n_variants && !r.bad; ++v) {
      variant var;
      var.name = r.str();
      var.states = r.u16s(t.tokens * t.hidden);
      std::uint8_t has[2] = {0, 0};
      r.take(has, 2);
      for (std::uint32_t i = 0; i < n_chunks && !r.bad; ++i) {
        ref_chunk_verify cv;
        cv.idx = r.u32s();
        for (int path = 0; path < 2; ++path) {
          if (!has[path]) continue;
          ref_result res;
          res.exp_mismatches = r.u32();
          res.mean = r.le<double>();
          res.median = r.le<double>();
          (path == 0 ? cv.cpp : cv.py) = res;
        }
        var.chunks.push_back(std::move(cv));
      }
      t.variants.push_back(std::move(var));
    }
    cases.push_back(std::move(t));
  }
  if (r.bad) {
    error = "truncated file";
    return false;
  }
  if (r.pos != data.size()) {
    error = "trailing bytes after the last case";
    return false;
  }
  return true;
}

// ---- comparisons ----------------------------------------------------------------------

std::uint16_t key(std::uint16_t bits) { return static_cast<std::uint16_t>(bits & 0x7fffu); }

enum class selection { same, tie_order, different };

/// How torch's selection `theirs` relates to dtrain's `ours` on `chunk`: the same set,
/// sets that differ only among elements tied with the k-th largest magnitude, or a real
/// difference. `boundary_tie` is set when the chunk has more elements at the boundary
/// magnitude than the selection holds (so any implementation had to pick).
selection compare_selection(std::span<const std::uint16_t> chunk, std::vector<std::uint32_t> ours,
                            std::vector<std::uint32_t> theirs, bool& boundary_tie) {
  boundary_tie = false;
  if (ours.empty() || ours.size() != theirs.size()) return selection::different;
  std::uint16_t boundary = 0xffff;
  for (std::uint32_t i : ours) boundary = std::min(boundary, key(chunk[i]));
  std::size_t at_boundary = 0, selected_at_boundary = 0;
  for (std::uint16_t b : chunk) at_boundary += key(b) == boundary;
  for (std::uint32_t i : ours) selected_at_boundary += key(chunk[i]) == boundary;
  boundary_tie = at_boundary > selected_at_boundary;

  std::sort(ours.begin(), ours.end());
  std::sort(theirs.begin(), theirs.end());
  if (ours == theirs) return selection::same;
  std::vector<std::uint32_t> diff;
  std::set_symmetric_difference(ours.begin(), ours.end(), theirs.begin(), theirs.end(), std::back_inserter(diff));
  for (std::uint32_t i : diff)
    if (i >= chunk.size() || key(chunk[i]) != boundary) return selection::different;
  return selection::tie_order;
}

bool same_number(double ours, double theirs) {
  if (std::isinf(ours)) return theirs >= 0x1p64;  // the reference reports 2^64 for "none"
  return std::fabs(ours - theirs) <= 1e-9 * std::max(1.0, std::fabs(theirs));
}

std::string hex_head(std::span<const std::byte> b, std::size_t n = 8) {
  std::string s;
  char buf[3];
  for (std::size_t i = 0; i < std::min(n, b.size()); ++i) {
    std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(b[i]));
    s += buf;
  }
  return s;
}

struct totals {
  std::size_t chunks = 0, identical = 0, tie_order = 0, boundary_ties = 0, ref_failed = 0, reduced_modulus = 0;
  std::size_t reproved = 0, reprove_failed = 0;
  std::size_t verify_cpp_equal = 0, verify_cpp_tie = 0, verify_py_equal = 0, verify_py_no_mod = 0,
              verify_py_tie = 0;
  std::size_t self_ok = 0;
  std::size_t unexplained = 0;
};

/// torch's selection, re-proved with dtrain's modulus search and interpolation.
std::optional<std::vector<std::byte>> reprove(std::span<const std::uint16_t> chunk, std::span<const std::uint32_t> idx,
                                              std::size_t k) {
  auto m = tl::injective_modulus(idx);
  if (!m.ok()) return std::nullopt;
  std::vector<std::uint32_t> x(idx.size()), y(idx.size());
  for (std::size_t i = 0; i < idx.size(); ++i) {
    x[i] = idx[i] % *m;
    y[i] = chunk[idx[i]];
  }
  tl::proof p;
  p.modulus = *m;
  p.coeffs.assign(k, 0);
  if (!tl::interpolate(x, y, std::span(p.coeffs).first(idx.size())).ok()) return std::nullopt;
  return tl::to_bytes(p);
}

void check_case(const test_case& t, totals& tot) {
  tl::proof_options opt;
  opt.k = t.k;
  opt.tokens_per_chunk = t.per;
  opt.prefill_tokens = t.prefill;
  opt.threads = 1;
  const auto states = tl::hidden_states::bf16(t.states, t.tokens, t.hidden);
  const auto plan = tl::plan_chunks(t.tokens, opt);
  std::printf("\n== %s: %zux%zu, prefill %zu, %zu rows per chunk, k %zu: %zu chunks\n", t.name.c_str(), t.tokens,
              t.hidden, t.prefill, t.per, t.k, plan.size());
  if (plan.size() != t.builds.size()) {
    std::printf("  UNEXPLAINED: dtrain plans %zu chunks, the reference made %zu proofs\n", plan.size(),
                t.builds.size());
    ++tot.unexplained;
    return;
  }
  auto built = tl::build_proofs_bytes(states, opt);
  if (!built.ok()) {
    std::printf("  UNEXPLAINED: dtrain failed to build: %s\n", built.status().to_string().c_str());
    ++tot.unexplained;
    return;
  }
  const std::size_t psize = tl::proof_size(t.k);
  tl::chunk_verifier verifier(t.k);

  for (std::size_t c = 0; c < plan.size(); ++c) {
    ++tot.chunks;
    const auto& ref = t.builds[c];
    const std::size_t first = plan[c].first_token * t.hidden, n = plan[c].tokens * t.hidden;
    const auto chunk = std::span(t.states).subspan(first, n);
    const auto ours_bytes = std::span(*built).subspan(c * psize, psize);
    const auto chunk_states = states.rows(plan[c].first_token, plan[c].tokens);

    // 4. self-check on every chunk, the reference's failures included.
    auto own = tl::parse_proof(ours_bytes, t.k);
    auto self = own.ok() ? verifier.check(*own, chunk_states) : dtrain::result<tl::chunk_check>(own.status());
    if (self.ok() && self->exponent_mismatches == 0 && self->mantissa_error_mean == 0) {
      ++tot.self_ok;
    } else {
      std::printf("  chunk %zu: UNEXPLAINED: dtrain's own proof does not verify on the same states (%s)\n", c,
                  self.ok() ? "mismatches" : self.status().to_string().c_str());
      ++tot.unexplained;
    }

    if (!ref.ok) {
      ++tot.ref_failed;
      std::printf("  chunk %zu: the reference emitted its null proof (k = %zu > %zu values); dtrain proves all "
                  "%zu values (%s...)\n",
                  c, t.k, n, n, hex_head(ours_bytes).c_str());
      continue;
    }

    // 1. build.
    std::vector<std::uint32_t> ours(std::min(t.k, n));
    (void)tl::select_topk(chunk, t.k, ours);
    bool boundary_tie = false;
    const selection sel = compare_selection(chunk, ours, ref.idx, boundary_tie);
    tot.boundary_ties += boundary_tie;
    const bool identical = std::ranges::equal(ours_bytes, std::span(ref.proof));
    const std::uint32_t m = (static_cast<std::uint32_t>(ref.proof[0]) << 8) | static_cast<std::uint32_t>(ref.proof[1]);
    tot.reduced_modulus += m != tl::prime;
    if (identical) {
      ++tot.identical;
    } else if (sel == selection::tie_order) {
      ++tot.tie_order;
      std::printf("  chunk %zu: bytes differ: torch broke a tie at the k boundary another way (explained)\n", c);
    } else {
      ++tot.unexplained;
      std::printf("  chunk %zu: UNEXPLAINED: bytes differ (ours %s..., reference %s...), selection %s\n", c,
                  hex_head(ours_bytes).c_str(), hex_head(ref.proof).c_str(),
                  sel == selection::same ? "the same" : "differs beyond ties");
    }

    // 2. re-proof of torch's selection.
    const auto again = reprove(chunk, ref.idx, t.k);
    if (again && std::ranges::equal(*again, ref.proof)) {
      ++tot.reproved;
    } else {
      ++tot.reprove_failed;
      ++tot.unexplained;
      std::printf("  chunk %zu: UNEXPLAINED: torch's selection re-proved by dtrain gives other bytes\n", c);
    }

    // 3. verify the reference's proof, per verifier variant.
    auto parsed = tl::parse_proof(ref.proof, t.k);
    if (!parsed.ok()) {
      ++tot.unexplained;
      std::printf("  chunk %zu: UNEXPLAINED: dtrain rejects the reference's proof: %s\n", c,
                  parsed.status().to_string().c_str());
      continue;
    }
    for (const auto& var : t.variants) {
      const auto vstates = tl::hidden_states::bf16(var.states, t.tokens, t.hidden).rows(plan[c].first_token,
                                                                                          plan[c].tokens);
      const auto vchunk = std::span(var.states).subspan(first, n);
      auto got = verifier.check(*parsed, vstates);
      if (!got.ok()) {
        ++tot.unexplained;
        std::printf("  chunk %zu [%s]: UNEXPLAINED: dtrain's verifier failed: %s\n", c, var.name.c_str(),
                    got.status().to_string().c_str());
        continue;
      }
      std::vector<std::uint32_t> vours(std::min(t.k, n));
      (void)tl::select_topk(vchunk, t.k, vours);
      bool vtie = false;
      const selection vsel = compare_selection(vchunk, vours, var.chunks[c].idx, vtie);
      // Indices the Python path evaluates unreduced: any selected index >= m.
      const bool py_unreduced = std::ranges::any_of(var.chunks[c].idx, [&](std::uint32_t i) { return i >= m; });

      const auto report = [&](const char* path, const ref_result& r, double our_median, bool expect_equal,
                              const char* why, std::size_t& equal_count, std::size_t& explained_count) {
        const bool equal = r.exp_mismatches == got->exponent_mismatches && same_number(got->mantissa_error_mean, r.mean) &&
                           same_number(our_median, r.median);
        if (equal) {
          ++equal_count;
          return;
        }
        if (!expect_equal) ++explained_count;
        else ++tot.unexplained;
        std::printf("  chunk %zu [%s] %s verifier: reference (%u, %.4g, %.4g) vs dtrain (%zu, %.4g, %.4g)%s%s\n", c,
                    var.name.c_str(), path, r.exp_mismatches, r.mean, r.median, got->exponent_mismatches,
                    got->mantissa_error_mean, our_median, expect_equal ? ": UNEXPLAINED" : ": explained by ", why);
      };
      if (const auto& r = var.chunks[c].cpp) {
        report("C++", *r, got->mantissa_error_median_upper, vsel == selection::same, "tie order at the k boundary",
               tot.verify_cpp_equal, tot.verify_cpp_tie);
      }
      if (const auto& r = var.chunks[c].py) {
        if (vsel != selection::same) {
          report("Python", *r, got->mantissa_error_median_middle, false, "tie order at the k boundary",
                 tot.verify_py_equal, tot.verify_py_tie);
        } else {
          report("Python", *r, got->mantissa_error_median_middle, !py_unreduced,
                 "the reference's Python path not reducing indices mod m", tot.verify_py_equal, tot.verify_py_no_mod);
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s INTEROP_FILE   (written by scripts/toploc_interop.py gen)\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot open %s\n", argv[1]);
    return 2;
  }
  const std::vector<std::uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<test_case> cases;
  std::string error;
  if (!read_cases(data, cases, error)) {
    std::fprintf(stderr, "%s: %s\n", argv[1], error.c_str());
    return 2;
  }
  totals t;
  for (const auto& c : cases) check_case(c, t);

  std::printf("\n== summary: %zu cases, %zu chunks\n", cases.size(), t.chunks);
  std::printf("build:   %zu byte-identical, %zu differ by torch's tie order at the k boundary, %zu the reference "
              "failed (null proof)\n",
              t.identical, t.tie_order, t.ref_failed);
  std::printf("         %zu chunks have a tie at the k boundary; %zu reference proofs have m < 65497\n",
              t.boundary_ties, t.reduced_modulus);
  std::printf("re-proof of torch's selection with dtrain: %zu identical, %zu differ\n", t.reproved, t.reprove_failed);
  std::printf("verify vs reference C++ path:    %zu equal, %zu differ by tie order\n", t.verify_cpp_equal,
              t.verify_cpp_tie);
  std::printf("verify vs reference Python path: %zu equal, %zu differ by tie order, %zu differ because it does not "
              "reduce indices mod m\n",
              t.verify_py_equal, t.verify_py_tie, t.verify_py_no_mod);
  std::printf("self-check (dtrain verifies its own proof, exact states): %zu of %zu clean\n", t.self_ok, t.chunks);
  std::printf("unexplained differences: %zu\n", t.unexplained);
  return t.unexplained == 0 ? 0 : 1;
}
