// lib/toploc/kernels.cpp: portable and AVX2 builds of the proof kernels (kernels.h). The
// loops are written for the auto-vectorizer (-O3); the AVX2 wrappers only change the
// target, so they compute the same integers.
#include "kernels.h"

#include <algorithm>

#include "dtrain/toploc/field.h"

#include "dtrain/core/cpu.h"

#define TK_X86 DTRAIN_X86
#if TK_X86
#define TK_AVX2 __attribute__((target("avx2")))
#else
#define TK_AVX2
#endif
#define TK_INLINE inline __attribute__((always_inline))

namespace dtrain::toploc::detail {
namespace {

constexpr std::size_t block = 64;

TK_INLINE void block_max_impl(const std::uint16_t* x, std::size_t n, std::uint16_t* out) noexcept {
  const std::size_t full = n / block;
  for (std::size_t b = 0; b < full; ++b) {
    const std::uint16_t* p = x + b * block;
    // Keys are < 2^15, so the signed 16-bit max (SSE2 pmaxsw) is exact.
    std::int16_t m = 0;
    for (std::size_t i = 0; i < block; ++i) {
      const auto v = static_cast<std::int16_t>(p[i] & 0x7fff);
      m = v > m ? v : m;
    }
    out[b] = static_cast<std::uint16_t>(m);
  }
  if (full * block < n) {
    std::uint16_t m = 0;
    for (std::size_t i = full * block; i < n; ++i) m = std::max<std::uint16_t>(m, x[i] & 0x7fff);
    out[full] = m;
  }
}

TK_INLINE std::size_t collect_impl(const std::uint16_t* x, std::size_t first, std::size_t len, std::uint16_t t,
                                   std::uint64_t* out) noexcept {
  std::size_t c = 0;
  for (std::size_t i = first; i < first + len; ++i) {
    const std::uint32_t key = x[i] & 0x7fffu;
    // Branch-free append: the slot is written always and kept when key >= t.
    out[c] = (static_cast<std::uint64_t>(key) << 32) | (0xffffffffu - static_cast<std::uint32_t>(i));
    c += key >= t ? 1 : 0;
  }
  return c;
}

TK_INLINE void level_impl(const std::uint32_t* cur, std::uint32_t* next, const std::uint32_t* x, std::size_t n,
                          std::size_t j, const std::uint16_t* inv_table) noexcept {
  for (std::size_t i = 0; i < j && i < n; ++i) next[i] = cur[i];
  for (std::size_t i = j; i < n; ++i) {
    const std::uint32_t d = gf::sub(cur[i], cur[i - 1]);
    next[i] = gf::mul(d, inv_table[gf::sub(x[i], x[i - j])]);
  }
}

TK_INLINE void times_linear_impl(const std::uint32_t* a, std::uint32_t* b, std::size_t len, std::uint32_t xi,
                                 std::uint32_t c) noexcept {
  const std::uint32_t neg = xi == 0 ? 0 : prime - xi;
  b[0] = gf::add(c, gf::mul(neg, a[0]));
  for (std::size_t j = 1; j < len; ++j) b[j] = gf::add(a[j - 1], gf::mul(neg, a[j]));
  b[len] = a[len - 1];
}

TK_INLINE void horner_impl(std::uint32_t* acc, const std::uint32_t* x, std::size_t n, std::uint32_t c) noexcept {
  for (std::size_t i = 0; i < n; ++i) acc[i] = gf::add(gf::mul(acc[i], x[i]), c);
}

void block_max_portable(const std::uint16_t* x, std::size_t n, std::uint16_t* out) noexcept { block_max_impl(x, n, out); }
std::size_t collect_portable(const std::uint16_t* x, std::size_t f, std::size_t l, std::uint16_t t,
                             std::uint64_t* out) noexcept {
  return collect_impl(x, f, l, t, out);
}
void level_portable(const std::uint32_t* cur, std::uint32_t* next, const std::uint32_t* x, std::size_t n, std::size_t j,
                    const std::uint16_t* inv) noexcept {
  level_impl(cur, next, x, n, j, inv);
}
void times_linear_portable(const std::uint32_t* a, std::uint32_t* b, std::size_t len, std::uint32_t xi,
                           std::uint32_t c) noexcept {
  times_linear_impl(a, b, len, xi, c);
}
void horner_portable(std::uint32_t* acc, const std::uint32_t* x, std::size_t n, std::uint32_t c) noexcept {
  horner_impl(acc, x, n, c);
}

#if TK_X86
TK_AVX2 void block_max_avx2(const std::uint16_t* x, std::size_t n, std::uint16_t* out) noexcept { block_max_impl(x, n, out); }
TK_AVX2 std::size_t collect_avx2(const std::uint16_t* x, std::size_t f, std::size_t l, std::uint16_t t,
                                 std::uint64_t* out) noexcept {
  return collect_impl(x, f, l, t, out);
}
TK_AVX2 void level_avx2(const std::uint32_t* cur, std::uint32_t* next, const std::uint32_t* x, std::size_t n,
                        std::size_t j, const std::uint16_t* inv) noexcept {
  level_impl(cur, next, x, n, j, inv);
}
TK_AVX2 void times_linear_avx2(const std::uint32_t* a, std::uint32_t* b, std::size_t len, std::uint32_t xi,
                               std::uint32_t c) noexcept {
  times_linear_impl(a, b, len, xi, c);
}
TK_AVX2 void horner_avx2(std::uint32_t* acc, const std::uint32_t* x, std::size_t n, std::uint32_t c) noexcept {
  horner_impl(acc, x, n, c);
}
#endif

bool have_avx2() noexcept { return cpu_has_avx2(); }

}  // namespace

bool kernels_use_avx2() noexcept { return have_avx2(); }

#if TK_X86
#define TK_DISPATCH(name, ...) return have_avx2() ? name##_avx2(__VA_ARGS__) : name##_portable(__VA_ARGS__)
#else
#define TK_DISPATCH(name, ...) return name##_portable(__VA_ARGS__)
#endif

void block_max_keys(const std::uint16_t* x, std::size_t n, std::uint16_t* out) noexcept { TK_DISPATCH(block_max, x, n, out); }
std::size_t collect_at_least(const std::uint16_t* x, std::size_t first, std::size_t len, std::uint16_t t,
                             std::uint64_t* out) noexcept {
  TK_DISPATCH(collect, x, first, len, t, out);
}
void divided_difference_level(const std::uint32_t* cur, std::uint32_t* next, const std::uint32_t* x, std::size_t n,
                              std::size_t j, const std::uint16_t* inv_table) noexcept {
  TK_DISPATCH(level, cur, next, x, n, j, inv_table);
}
void times_linear_plus(const std::uint32_t* a, std::uint32_t* b, std::size_t len, std::uint32_t xi,
                       std::uint32_t c) noexcept {
  TK_DISPATCH(times_linear, a, b, len, xi, c);
}
void horner_step(std::uint32_t* acc, const std::uint32_t* x, std::size_t n, std::uint32_t c) noexcept {
  TK_DISPATCH(horner, acc, x, n, c);
}

}  // namespace dtrain::toploc::detail
