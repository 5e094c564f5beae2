// dtrain/core/dtype.h: the element types dtrain moves (f32, f16, bf16) and their
// scalar conversions, correctly rounded to nearest-even with NaN, Inf and subnormals.
// Bulk (vectorised) conversion lives in convert.h.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dtrain {

enum class dtype : std::uint8_t { f32 = 0, f16 = 1, bf16 = 2 };

constexpr std::size_t dtype_size(dtype t) noexcept { return t == dtype::f32 ? 4 : 2; }
constexpr std::string_view dtype_name(dtype t) noexcept {
  return t == dtype::f32 ? "f32" : t == dtype::f16 ? "f16" : "bf16";
}

/// IEEE binary32 -> binary16 bits, round to nearest even. Overflow goes to ±Inf,
/// values below half the smallest subnormal (2^-25) go to ±0, NaN stays NaN (quiet,
/// top payload bits kept). Bit-identical to x86 F16C `vcvtps2ph` with RNE.
constexpr std::uint16_t f32_to_f16_bits(float f) noexcept {
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // Inf or NaN
    if (ax > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  }
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520: Inf
  if (ax < 0x38800000u) {
    // Below the smallest normal half (2^-14): adding 0.5f aligns the value to the
    // subnormal grid (ulp(0.5f) = 2^-24) and the FPU rounds it to nearest even.
    const float t = std::bit_cast<float>(ax) + 0.5f;
    return static_cast<std::uint16_t>(sign | (std::bit_cast<std::uint32_t>(t) - 0x3f000000u));
  }
  const std::uint32_t odd = (ax >> 13) & 1u;
  // Rebias the exponent (127 -> 15) and add the round-to-nearest-even bias in one go.
  const std::uint32_t r = ax + 0xc8000fffu + odd;
  return static_cast<std::uint16_t>(sign | (r >> 13));
}

/// binary16 bits -> binary32 (exact).
constexpr float f16_bits_to_f32(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu;
  const std::uint32_t m = h & 0x3ffu;
  if (e == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    const float v = static_cast<float>(m) * 0x1p-24f;  // exact: m < 2^10
    return sign ? -v : v;
  }
  return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

/// binary32 -> bfloat16 bits, round to nearest even; NaN stays NaN (quiet).
constexpr std::uint16_t f32_to_bf16_bits(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  const std::uint32_t r = x + 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(r >> 16);
}

/// bfloat16 bits -> binary32 (exact).
constexpr float bf16_bits_to_f32(std::uint16_t h) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

/// True for finite floats (not NaN, not ±Inf), by bits so -ffast-math cannot fold it.
constexpr bool is_finite_bits(float f) noexcept {
  return (std::bit_cast<std::uint32_t>(f) & 0x7f800000u) != 0x7f800000u;
}

}  // namespace dtrain
