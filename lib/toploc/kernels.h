// lib/toploc/kernels.h (private): the hot loops of proof building and checking, written
// once as plain loops and compiled twice, portable (SSE2) and AVX2, with a runtime choice
// (kernels.cpp). Integer arithmetic only, so both builds give the same bits.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dtrain::toploc::detail {

/// out[b] = max over x[64b .. 64b + 63] of (x & 0x7fff); the last block may be short.
/// @pre out holds ceil(n / 64) entries.
void block_max_keys(const std::uint16_t* x, std::size_t n, std::uint16_t* out) noexcept;

/// Appends (key << 32) | (0xffffffff - index) for every element of x[first, first + len)
/// with key >= t to out; returns the count appended. Composite values order like the
/// selection order (larger key, then lower index).
std::size_t collect_at_least(const std::uint16_t* x, std::size_t first, std::size_t len, std::uint16_t t,
                             std::uint64_t* out) noexcept;

/// One level j >= 1 of Newton's divided differences:
/// next[i] = (cur[i] - cur[i - 1]) · inv(x[i] - x[i - j]) for i in [j, n); entries below j
/// are copied. All values < p.
void divided_difference_level(const std::uint32_t* cur, std::uint32_t* next, const std::uint32_t* x, std::size_t n,
                              std::size_t j, const std::uint16_t* inv_table) noexcept;

/// One step of the Newton-to-monomial expansion: b = a · (X - xi) + c, for a polynomial a
/// of `len` coefficients; b gets len + 1. All values < p.
void times_linear_plus(const std::uint32_t* a, std::uint32_t* b, std::size_t len, std::uint32_t xi,
                       std::uint32_t c) noexcept;

/// acc[i] = acc[i] · x[i] + c for i in [0, n): one Horner step at many points.
void horner_step(std::uint32_t* acc, const std::uint32_t* x, std::size_t n, std::uint32_t c) noexcept;

/// True when the AVX2 builds are in use (for benchmarks and logs).
bool kernels_use_avx2() noexcept;

}  // namespace dtrain::toploc::detail
