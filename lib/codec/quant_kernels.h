// lib/codec/quant_kernels.h (private): what the dense quantizer kernels share: the
// portable/AVX2 build macros, the bitwise absmax scan and 4-bit packing.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#define QK_X86 1
#include <immintrin.h>
#define QK_AVX2 __attribute__((target("avx2")))
#else
#define QK_X86 0
#define QK_AVX2
#endif
// Kernels are inlined into a portable and an AVX2 wrapper; plain float mul/add (never
// FMA: the target is avx2 alone and the build passes -ffp-contract=off), integer max and
// compares, so both builds write the same bytes.
#define QK_INLINE inline __attribute__((always_inline))

namespace dtrain::codec::detail {

// max |x| by bits: for non-negative finite floats integer order is float order, so the
// float max (SSE2) and the int32 max (AVX2) agree, whatever the lane order.
template <bool Avx2>
QK_INLINE std::uint32_t absmax_bits(const float* x, std::size_t m) noexcept {
  std::uint32_t a = 0;
  std::size_t i = 0;
  if constexpr (Avx2) {
    std::int32_t l[16] = {};
    for (; i + 16 <= m; i += 16)
      for (std::size_t k = 0; k < 16; ++k) {
        const auto v = static_cast<std::int32_t>(std::bit_cast<std::uint32_t>(x[i + k]) & 0x7fffffffu);
        l[k] = v > l[k] ? v : l[k];
      }
    for (std::int32_t v : l) a = static_cast<std::uint32_t>(v) > a ? static_cast<std::uint32_t>(v) : a;
  } else {
#if defined(__SSE2__)
    if (m >= 8) {
      const __m128 mask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
      __m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps();
      for (; i + 8 <= m; i += 8) {
        a0 = _mm_max_ps(a0, _mm_and_ps(mask, _mm_loadu_ps(x + i)));
        a1 = _mm_max_ps(a1, _mm_and_ps(mask, _mm_loadu_ps(x + i + 4)));
      }
      alignas(16) std::uint32_t t[4];
      _mm_store_si128(reinterpret_cast<__m128i*>(t), _mm_castps_si128(_mm_max_ps(a0, a1)));
      for (std::uint32_t v : t) a = v > a ? v : a;
    }
#endif
  }
  for (; i < m; ++i) {
    const std::uint32_t v = std::bit_cast<std::uint32_t>(x[i]) & 0x7fffffffu;
    a = v > a ? v : a;
  }
  return a;
}

// Writes m nibbles (low 4 bits of c) for stream positions first.. into o. Positions are
// written in increasing order and a lone trailing nibble leaves its high half zero, so
// an odd `first` can OR into the byte the previous call ended with.
QK_INLINE void put_nibbles(std::uint8_t* o, std::size_t first, const std::uint8_t* c, std::size_t m) noexcept {
  std::size_t k = 0;
  if (m && (first & 1)) {
    o[first >> 1] = static_cast<std::uint8_t>(o[first >> 1] | ((c[0] & 15u) << 4));
    k = 1;
  }
  std::uint8_t* d = o + ((first + k) >> 1);
  const std::size_t pairs = (m - k) / 2;
  const std::uint8_t* cc = c + k;
  if constexpr (std::endian::native == std::endian::little) {
    // Two codes as one little-endian u16: v | v >> 4 puts the pair in the low byte, and
    // this form vectorizes (mask + pack) where the strided byte form does not.
    for (std::size_t j = 0; j < pairs; ++j) {
      std::uint16_t v;
      std::memcpy(&v, cc + 2 * j, 2);
      v = static_cast<std::uint16_t>(v & 0x0f0fu);
      d[j] = static_cast<std::uint8_t>(v | (v >> 4));
    }
  } else {
    for (std::size_t j = 0; j < pairs; ++j)
      d[j] = static_cast<std::uint8_t>((cc[2 * j] & 15u) | ((cc[2 * j + 1] & 15u) << 4));
  }
  if ((m - k) & 1) d[pairs] = static_cast<std::uint8_t>(c[m - 1] & 15u);
}

}  // namespace dtrain::codec::detail
