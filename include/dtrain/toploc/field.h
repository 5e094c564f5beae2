// dtrain/toploc/field.h: arithmetic in GF(65497), the field TOPLOC interpolates over.
// p = 65497 = 2^16 - 39 is the largest prime below 2^16, so elements fit a u16 and a
// product of two fits a u32. Reduction folds the high half with 2^16 = 39 (mod p): only
// shifts, small multiplies and adds, so loops over these functions vectorize.
#pragma once

#include <cstdint>
#include <span>

namespace dtrain::toploc {

/// The field's prime, fixed by the TOPLOC format (toploc v0.1.6).
inline constexpr std::uint32_t prime = 65497;

/// The field operations, in their own namespace so `pow` and `inv` never meet std's.
namespace gf {

/// x mod p for any u32 x. Two folds of the high half (2^16 = 39 mod p) bring x below
/// 2^16 + 39·40, then at most one subtraction.
constexpr std::uint32_t reduce(std::uint32_t x) noexcept {
  x = (x >> 16) * 39u + (x & 0xffffu);  // < 39·65536 + 65536 < 2^22
  x = (x >> 16) * 39u + (x & 0xffffu);  // < 39·63 + 65536
  x = (x >> 16) * 39u + (x & 0xffffu);  // < 65536 + 39
  return x >= prime ? x - prime : x;
}

/// a + b, a - b and a · b for a, b < p; results < p.
constexpr std::uint32_t add(std::uint32_t a, std::uint32_t b) noexcept {
  const std::uint32_t s = a + b;
  return s >= prime ? s - prime : s;
}
constexpr std::uint32_t sub(std::uint32_t a, std::uint32_t b) noexcept { return a >= b ? a - b : a + prime - b; }
constexpr std::uint32_t mul(std::uint32_t a, std::uint32_t b) noexcept { return reduce(a * b); }

/// a^e by square-and-multiply; pow(0, 0) = 1.
constexpr std::uint32_t pow(std::uint32_t a, std::uint32_t e) noexcept {
  std::uint32_t r = 1;
  while (e != 0) {
    if (e & 1u) r = mul(r, a);
    a = mul(a, a);
    e >>= 1;
  }
  return r;
}

/// The multiplicative inverse of a != 0 (Fermat: a^(p-2)). inv(0) returns 0.
constexpr std::uint32_t inv(std::uint32_t a) noexcept { return pow(a, prime - 2); }

}  // namespace gf

/// A table of all p inverses (entry 0 holds 0), built once on first use by the linear
/// recurrence inv(i) = -(p / i) · inv(p mod i), 128 KiB. Thread-safe (a function-local
/// static). The interpolation kernels use it so every inverse is one load.
std::span<const std::uint16_t> inverse_table() noexcept;

}  // namespace dtrain::toploc
