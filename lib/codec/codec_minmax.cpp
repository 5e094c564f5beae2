// Uniform min-max q-bit codec: lane-wise min/max scan, float code loop fused with a
// per-width packer, table decode; portable and AVX2 builds of the same kernels.
#include "dtrain/codec/codec_minmax.h"

#include <bit>
#include <cstring>

#include "dtrain/core/bitpack.h"
#include "dtrain/core/dtype.h"
#include "dtrain/core/rng.h"
#include "dtrain/codec/detail/quant_isa.h"
#include "quant_kernels.h"


namespace dtrain::codec {
namespace {

constexpr std::size_t chunk = 1024;  // multiple of 8, so every chunk starts on a byte

// min and max of finite floats (SSE2 or AVX2 min/max on x86, scalar elsewhere). The
// values do not depend on the scan order; only the sign of a zero result may, and the
// caller canonicalises that.
QK_INLINE void scan_tail(const float* x, std::size_t i, std::size_t n, float& lo, float& hi) noexcept {
  for (; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
}
#if QK_X86
void scan_portable(const float* x, std::size_t n, float& lo, float& hi) noexcept {
  std::size_t i = 0;
  lo = hi = x[0];
  if (n >= 8) {
    __m128 mn0 = _mm_loadu_ps(x), mn1 = _mm_loadu_ps(x + 4), mx0 = mn0, mx1 = mn1;
    for (i = 8; i + 8 <= n; i += 8) {
      const __m128 a = _mm_loadu_ps(x + i), b = _mm_loadu_ps(x + i + 4);
      mn0 = _mm_min_ps(mn0, a);
      mn1 = _mm_min_ps(mn1, b);
      mx0 = _mm_max_ps(mx0, a);
      mx1 = _mm_max_ps(mx1, b);
    }
    alignas(16) float t[8];
    _mm_store_ps(t, _mm_min_ps(mn0, mn1));
    _mm_store_ps(t + 4, _mm_max_ps(mx0, mx1));
    for (int k = 0; k < 4; ++k) {
      lo = t[k] < lo ? t[k] : lo;
      hi = t[4 + k] > hi ? t[4 + k] : hi;
    }
  }
  scan_tail(x, i, n, lo, hi);
}
QK_AVX2 void scan_avx2(const float* x, std::size_t n, float& lo, float& hi) noexcept {
  std::size_t i = 0;
  lo = hi = x[0];
  if (n >= 16) {
    __m256 mn0 = _mm256_loadu_ps(x), mn1 = _mm256_loadu_ps(x + 8), mx0 = mn0, mx1 = mn1;
    for (i = 16; i + 16 <= n; i += 16) {
      const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
      mn0 = _mm256_min_ps(mn0, a);
      mn1 = _mm256_min_ps(mn1, b);
      mx0 = _mm256_max_ps(mx0, a);
      mx1 = _mm256_max_ps(mx1, b);
    }
    alignas(32) float t[16];
    _mm256_store_ps(t, _mm256_min_ps(mn0, mn1));
    _mm256_store_ps(t + 8, _mm256_max_ps(mx0, mx1));
    for (int k = 0; k < 8; ++k) {
      lo = t[k] < lo ? t[k] : lo;
      hi = t[8 + k] > hi ? t[8 + k] : hi;
    }
  }
  scan_tail(x, i, n, lo, hi);
}
#else
void scan_portable(const float* x, std::size_t n, float& lo, float& hi) noexcept {
  lo = hi = x[0];
  scan_tail(x, 0, n, lo, hi);
}
void scan_avx2(const float* x, std::size_t n, float& lo, float& hi) noexcept { scan_portable(x, n, lo, hi); }
#endif

// No clamp needed: x >= lo makes x*p - lo_p >= 0, and v <= L (1 + 3 2^-24) rounds to <= L.
QK_INLINE void quantize_nearest(const float* x, std::uint8_t* c, std::size_t m, float p, float lo_p,
                                float inv) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    float v = (x[i] * p - lo_p) * inv;
    v = (v + 0x1.8p23f) - 0x1.8p23f;  // round half to even, exact for |v| < 2^22
    c[i] = static_cast<std::uint8_t>(static_cast<std::int32_t>(v));
  }
}

QK_INLINE void quantize_stochastic(const float* x, const float* u, std::uint8_t* c, std::size_t m, float p,
                                   float lo_p, float inv, int levels) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    const float v = (x[i] * p - lo_p) * inv + u[i];
    std::int32_t q = static_cast<std::int32_t>(v);  // v > -1, so truncation is floor after the clamp
    q = q < 0 ? 0 : q;
    q = q > levels ? levels : q;
    c[i] = static_cast<std::uint8_t>(q);
  }
}

// Philox4x32-10 (the rounds of core/rng.h) on W consecutive block counters blk0.. at once;
// t[4l + k] = word k of block blk0 + l, as uniform_at maps it: (w >> 8) 2^-24.
template <std::size_t W>
QK_INLINE void philox_scalar(std::uint64_t blk0, std::uint32_t s0, std::uint32_t s1, std::uint32_t k0,
                             std::uint32_t k1, float* t) noexcept {
  constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
  std::uint32_t c0[W], c1[W], c2[W], c3[W];
  for (std::size_t l = 0; l < W; ++l) {
    c0[l] = static_cast<std::uint32_t>(blk0 + l);
    c1[l] = static_cast<std::uint32_t>((blk0 + l) >> 32);
    c2[l] = s0;
    c3[l] = s1;
  }
  for (int r = 0; r < 10; ++r) {
    for (std::size_t l = 0; l < W; ++l) {
      const std::uint64_t p0 = static_cast<std::uint64_t>(m0) * c0[l];
      const std::uint64_t p1 = static_cast<std::uint64_t>(m1) * c2[l];
      const auto n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1[l] ^ k0;
      const auto n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3[l] ^ k1;
      c1[l] = static_cast<std::uint32_t>(p1);
      c3[l] = static_cast<std::uint32_t>(p0);
      c0[l] = n0;
      c2[l] = n2;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  for (std::size_t l = 0; l < W; ++l) {
    t[4 * l] = static_cast<float>(c0[l] >> 8) * 0x1p-24f;
    t[4 * l + 1] = static_cast<float>(c1[l] >> 8) * 0x1p-24f;
    t[4 * l + 2] = static_cast<float>(c2[l] >> 8) * 0x1p-24f;
    t[4 * l + 3] = static_cast<float>(c3[l] >> 8) * 0x1p-24f;
  }
}

#if QK_X86
// 32x32 -> 64-bit products of all four lanes: (hi, lo) halves, by two pmuludq.
QK_INLINE void mul_hilo(__m128i a, __m128i m, __m128i& hi, __m128i& lo) noexcept {
  const __m128i mask_lo = _mm_set1_epi64x(0xffffffffLL);
  const __m128i pe = _mm_mul_epu32(a, m);                     // lanes 0, 2
  const __m128i po = _mm_mul_epu32(_mm_srli_epi64(a, 32), m);  // lanes 1, 3
  hi = _mm_or_si128(_mm_srli_epi64(pe, 32), _mm_andnot_si128(mask_lo, po));
  lo = _mm_or_si128(_mm_and_si128(pe, mask_lo), _mm_slli_epi64(po, 32));
}

// SSE2 build of philox_scalar<4>: same integer operations, so the same words.
QK_INLINE void philox_sse2(std::uint64_t blk0, std::uint32_t s0, std::uint32_t s1, std::uint32_t k0, std::uint32_t k1,
                           float* t) noexcept {
  alignas(16) std::uint32_t lo32[4], hi32[4];
  for (std::size_t l = 0; l < 4; ++l) {
    lo32[l] = static_cast<std::uint32_t>(blk0 + l);
    hi32[l] = static_cast<std::uint32_t>((blk0 + l) >> 32);
  }
  __m128i c0 = _mm_load_si128(reinterpret_cast<const __m128i*>(lo32));
  __m128i c1 = _mm_load_si128(reinterpret_cast<const __m128i*>(hi32));
  __m128i c2 = _mm_set1_epi32(static_cast<int>(s0)), c3 = _mm_set1_epi32(static_cast<int>(s1));
  const __m128i m0 = _mm_set1_epi32(static_cast<int>(0xD2511F53u)), m1 = _mm_set1_epi32(static_cast<int>(0xCD9E8D57u));
  for (int r = 0; r < 10; ++r) {
    __m128i hi0, lo0, hi1, lo1;
    mul_hilo(c0, m0, hi0, lo0);
    mul_hilo(c2, m1, hi1, lo1);
    c0 = _mm_xor_si128(_mm_xor_si128(hi1, c1), _mm_set1_epi32(static_cast<int>(k0)));
    c2 = _mm_xor_si128(_mm_xor_si128(hi0, c3), _mm_set1_epi32(static_cast<int>(k1)));
    c1 = lo1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  const __m128 sc = _mm_set1_ps(0x1p-24f);
  __m128 f0 = _mm_mul_ps(_mm_cvtepi32_ps(_mm_srli_epi32(c0, 8)), sc);
  __m128 f1 = _mm_mul_ps(_mm_cvtepi32_ps(_mm_srli_epi32(c1, 8)), sc);
  __m128 f2 = _mm_mul_ps(_mm_cvtepi32_ps(_mm_srli_epi32(c2, 8)), sc);
  __m128 f3 = _mm_mul_ps(_mm_cvtepi32_ps(_mm_srli_epi32(c3, 8)), sc);
  _MM_TRANSPOSE4_PS(f0, f1, f2, f3);
  _mm_storeu_ps(t, f0);
  _mm_storeu_ps(t + 4, f1);
  _mm_storeu_ps(t + 8, f2);
  _mm_storeu_ps(t + 12, f3);
}

QK_AVX2 inline void mul_hilo256(__m256i a, __m256i m, __m256i& hi, __m256i& lo) noexcept {
  const __m256i mask_lo = _mm256_set1_epi64x(0xffffffffLL);
  const __m256i pe = _mm256_mul_epu32(a, m);
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  hi = _mm256_or_si256(_mm256_srli_epi64(pe, 32), _mm256_andnot_si256(mask_lo, po));
  lo = _mm256_or_si256(_mm256_and_si256(pe, mask_lo), _mm256_slli_epi64(po, 32));
}

// AVX2 build of philox_scalar<32>: four independent groups of 8 blocks interleaved, so
// the multiply latency of one hides behind the other.
QK_AVX2 inline void philox_avx2(std::uint64_t blk0, std::uint32_t s0, std::uint32_t s1, std::uint32_t k0,
                                std::uint32_t k1, float* t) noexcept {
  constexpr int G = 4;
  alignas(32) std::uint32_t lo32[8 * G], hi32[8 * G];
  for (std::size_t l = 0; l < 8 * G; ++l) {
    lo32[l] = static_cast<std::uint32_t>(blk0 + l);
    hi32[l] = static_cast<std::uint32_t>((blk0 + l) >> 32);
  }
  __m256i c0[G], c1[G], c2[G], c3[G];
  for (int g = 0; g < G; ++g) {
    c0[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo32 + 8 * g));
    c1[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi32 + 8 * g));
    c2[g] = _mm256_set1_epi32(static_cast<int>(s0));
    c3[g] = _mm256_set1_epi32(static_cast<int>(s1));
  }
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  for (int r = 0; r < 10; ++r) {
    const __m256i vk0 = _mm256_set1_epi32(static_cast<int>(k0)), vk1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int g = 0; g < G; ++g) {
      __m256i hi0, lo0, hi1, lo1;
      mul_hilo256(c0[g], m0, hi0, lo0);
      mul_hilo256(c2[g], m1, hi1, lo1);
      c0[g] = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[g]), vk0);
      c2[g] = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[g]), vk1);
      c1[g] = lo1;
      c3[g] = lo0;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  const __m256 sc = _mm256_set1_ps(0x1p-24f);
  for (int g = 0; g < G; ++g) {
    const __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c0[g], 8)), sc);
    const __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c1[g], 8)), sc);
    const __m256 f2 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c2[g], 8)), sc);
    const __m256 f3 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c3[g], 8)), sc);
    // 4x4 transpose inside each 128-bit half: row l of the low half is block l, of the high half block l + 4.
    const __m256 t0 = _mm256_unpacklo_ps(f0, f1), t1 = _mm256_unpackhi_ps(f0, f1);
    const __m256 t2 = _mm256_unpacklo_ps(f2, f3), t3 = _mm256_unpackhi_ps(f2, f3);
    const __m256 r0 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));
    const __m256 r1 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));
    const __m256 r2 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));
    const __m256 r3 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));
    float* tg = t + 32 * g;
    _mm256_storeu_ps(tg, _mm256_permute2f128_ps(r0, r1, 0x20));
    _mm256_storeu_ps(tg + 8, _mm256_permute2f128_ps(r2, r3, 0x20));
    _mm256_storeu_ps(tg + 16, _mm256_permute2f128_ps(r0, r1, 0x31));
    _mm256_storeu_ps(tg + 24, _mm256_permute2f128_ps(r2, r3, 0x31));
  }
}
#endif

// u[j] = counter_rng(seed, stream).uniform_at(first + j), 128 words per step.
template <bool Avx2>
QK_INLINE void fill_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t first, float* u,
                            std::size_t m) noexcept {
  const auto s0 = static_cast<std::uint32_t>(stream), s1 = static_cast<std::uint32_t>(stream >> 32);
  const auto k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
  for (std::size_t j = 0; j < m; j += 128) {
    alignas(32) float t[128];
    const std::uint64_t blk0 = (first + j) >> 2;
#if QK_X86
    if constexpr (Avx2) {
      philox_avx2(blk0, s0, s1, k0, k1, t);
    } else {
      for (std::size_t g = 0; g < 32; g += 4) philox_sse2(blk0 + g, s0, s1, k0, k1, t + 4 * g);
    }
#else
    philox_scalar<32>(blk0, s0, s1, k0, k1, t);
#endif
    const std::size_t k = std::min<std::size_t>(128, m - j);
    for (std::size_t q = 0; q < k; ++q) u[j + q] = t[q];
  }
}

// Packs m codes (< 2^B) LSB-first, 8 codes into B bytes; writes exactly packed_bytes(m, B)
// bytes with zero padding. Reads c[m .. round_up(m, 8)), which must be writable scratch.
template <unsigned B>
QK_INLINE void pack(std::uint8_t* c, std::size_t m, std::uint8_t* o) noexcept {
  const std::size_t full = m / 8;
  if constexpr (B == 4 && std::endian::native == std::endian::little) {
    // Two codes as one little-endian u16: v | v >> 4 is the packed byte; vectorizes.
    for (std::size_t j = 0; j < 4 * full; ++j) {
      std::uint16_t v;
      std::memcpy(&v, c + 2 * j, 2);
      o[j] = static_cast<std::uint8_t>(v | (v >> 4));
    }
  } else {
    for (std::size_t g = 0; g < full; ++g) {
      std::uint64_t acc = 0;
      for (unsigned j = 0; j < 8; ++j) acc |= static_cast<std::uint64_t>(c[8 * g + j]) << (j * B);
      for (unsigned k = 0; k < B; ++k) o[g * B + k] = static_cast<std::uint8_t>(acc >> (8 * k));
    }
  }
  if (m % 8) {
    for (std::size_t j = m; j < 8 * full + 8; ++j) c[j] = 0;
    std::uint64_t acc = 0;
    for (unsigned j = 0; j < 8; ++j) acc |= static_cast<std::uint64_t>(c[8 * full + j]) << (j * B);
    const std::size_t left = packed_bytes(m, B) - full * B;
    for (std::size_t k = 0; k < left; ++k) o[full * B + k] = static_cast<std::uint8_t>(acc >> (8 * k));
  }
}

// out[i] (+)= t[code i] for n codes of B bits packed LSB-first from `in`.
template <unsigned B>
QK_INLINE void unpack_lookup(const std::uint8_t* in, std::size_t n, const float* t, float* out, bool acc,
                             float w) noexcept {
  constexpr std::uint64_t mask = (1u << B) - 1;
  const std::size_t full = n / 8;
  for (std::size_t g = 0; g < full; ++g) {
    std::uint64_t bits = 0;
    for (unsigned k = 0; k < B; ++k) bits |= static_cast<std::uint64_t>(in[g * B + k]) << (8 * k);
    float* o = out + 8 * g;
    if (acc) {
      for (unsigned j = 0; j < 8; ++j) o[j] += w * t[(bits >> (j * B)) & mask];
    } else {
      for (unsigned j = 0; j < 8; ++j) o[j] = t[(bits >> (j * B)) & mask];
    }
  }
  if (n % 8) {
    const std::size_t left = packed_bytes(n, B) - full * B;
    std::uint64_t bits = 0;
    for (std::size_t k = 0; k < left; ++k) bits |= static_cast<std::uint64_t>(in[full * B + k]) << (8 * k);
    float* o = out + 8 * full;
    for (std::size_t j = 0; j < n % 8; ++j) {
      const float v = t[(bits >> (j * B)) & mask];
      if (acc) {
        o[j] += w * v;
      } else {
        o[j] = v;
      }
    }
  }
}

// One encode: everything the kernels need besides input and output.
struct enc_args {
  float p, lo_p, inv;
  int levels;
  std::uint64_t seed, stream;
};

template <unsigned B, bool Stochastic, bool Avx2>
QK_INLINE void k_encode(const float* x, std::size_t n, const enc_args& a, std::uint8_t* out) noexcept {
  alignas(64) std::uint8_t tmp[chunk];
  alignas(64) float u[chunk];
  for (std::size_t i = 0; i < n; i += chunk) {
    const std::size_t m = std::min(chunk, n - i);
    std::uint8_t* c = B == 8 ? out + i : tmp;
    // p = 1 is the usual case; the literal lets the compiler drop the exact x * 1.
    if constexpr (Stochastic) {
      fill_uniform<Avx2>(a.seed, a.stream, i, u, m);
      if (a.p == 1.0f) {
        quantize_stochastic(x + i, u, c, m, 1.0f, a.lo_p, a.inv, a.levels);
      } else {
        quantize_stochastic(x + i, u, c, m, a.p, a.lo_p, a.inv, a.levels);
      }
    } else if (a.p == 1.0f) {
      quantize_nearest(x + i, c, m, 1.0f, a.lo_p, a.inv);
    } else {
      quantize_nearest(x + i, c, m, a.p, a.lo_p, a.inv);
    }
    if constexpr (B != 8) pack<B>(tmp, m, out + i * B / 8);
  }
}

template <unsigned B>
QK_INLINE void k_decode(const std::uint8_t* in, std::size_t n, const float* t, float* out, bool acc,
                        float w) noexcept {
  if constexpr (B == 8) {
    if (acc) {
      for (std::size_t i = 0; i < n; ++i) out[i] += w * t[in[i]];
    } else {
      for (std::size_t i = 0; i < n; ++i) out[i] = t[in[i]];
    }
  } else {
    unpack_lookup<B>(in, n, t, out, acc, w);
  }
}

using enc_fn = void (*)(const float*, std::size_t, const enc_args&, std::uint8_t*);
using dec_fn = void (*)(const std::uint8_t*, std::size_t, const float*, float*, bool, float);

template <unsigned B, bool S>
void enc_portable(const float* x, std::size_t n, const enc_args& a, std::uint8_t* o) noexcept {
  k_encode<B, S, false>(x, n, a, o);
}
template <unsigned B>
void dec_portable(const std::uint8_t* in, std::size_t n, const float* t, float* o, bool acc, float w) noexcept {
  k_decode<B>(in, n, t, o, acc, w);
}
#if QK_X86
template <unsigned B, bool S>
QK_AVX2 void enc_avx2(const float* x, std::size_t n, const enc_args& a, std::uint8_t* o) noexcept {
  k_encode<B, S, true>(x, n, a, o);
}
template <unsigned B>
QK_AVX2 void dec_avx2(const std::uint8_t* in, std::size_t n, const float* t, float* o, bool acc, float w) noexcept {
  k_decode<B>(in, n, t, o, acc, w);
}
#else
template <unsigned B, bool S>
void enc_avx2(const float* x, std::size_t n, const enc_args& a, std::uint8_t* o) noexcept {
  k_encode<B, S, false>(x, n, a, o);
}
template <unsigned B>
void dec_avx2(const std::uint8_t* in, std::size_t n, const float* t, float* o, bool acc, float w) noexcept {
  k_decode<B>(in, n, t, o, acc, w);
}
#endif

#define QK_ENC(B)                                                                       \
  case B:                                                                               \
    if (avx2) return stochastic ? enc_avx2<B, true> : enc_avx2<B, false>;               \
    return stochastic ? enc_portable<B, true> : enc_portable<B, false>;
enc_fn pick_encode(unsigned bits, bool stochastic, bool avx2) noexcept {
  switch (bits) {
    QK_ENC(1) QK_ENC(2) QK_ENC(3) QK_ENC(4) QK_ENC(5) QK_ENC(6) QK_ENC(7) QK_ENC(8)
    default: break;
  }
  return enc_portable<8, false>;
}
#undef QK_ENC

#define QK_DEC(B) \
  case B:         \
    return avx2 ? dec_avx2<B> : dec_portable<B>;
dec_fn pick_decode(unsigned bits, bool avx2) noexcept {
  switch (bits) {
    QK_DEC(1) QK_DEC(2) QK_DEC(3) QK_DEC(4) QK_DEC(5) QK_DEC(6) QK_DEC(7) QK_DEC(8)
    default: break;
  }
  return dec_portable<8>;
}
#undef QK_DEC

// Decoded value of every code: lo + j (hi - lo) / L rounded once, with both ends exact.
void level_table(float lo, float hi, unsigned levels, float* t) noexcept {
  const double dlo = static_cast<double>(lo);
  const double range = static_cast<double>(hi) - dlo;
  for (unsigned j = 0; j <= levels; ++j) {
    float v = static_cast<float>(dlo + static_cast<double>(j) * range / static_cast<double>(levels));
    v = v < lo ? lo : v;
    t[j] = v > hi ? hi : v;
  }
  t[0] = lo;
  t[levels] = hi;
}

}  // namespace

minmax_codec::minmax_codec(unsigned bits, rounding_mode rounding, std::uint64_t seed) noexcept
    : bits_(bits), rounding_(rounding), seed_(seed) {
  DTRAIN_ASSERT(bits >= 1 && bits <= 8);
}

std::string minmax_codec::spec() const {
  return "minmax:bits=" + std::to_string(bits_) +
         ",rounding=" + (rounding_ == rounding_mode::nearest ? "nearest" : "stochastic") +
         ",seed=" + std::to_string(seed_);
}

result<std::unique_ptr<codec>> minmax_codec::from_spec(spec_args& a) {
  auto bits = a.get_uint("bits", 8, 1, 8);
  if (!bits.ok()) return bits.status();
  auto rnd = a.get_choice("rounding", "nearest", {"nearest", "stochastic"});
  if (!rnd.ok()) return rnd.status();
  auto seed = a.get_uint("seed", 0, 0, ~std::uint64_t{0});
  if (!seed.ok()) return seed.status();
  DTRAIN_RETURN_IF_ERROR(a.finish());
  return std::unique_ptr<codec>(std::make_unique<minmax_codec>(
      static_cast<unsigned>(*bits), *rnd == "nearest" ? rounding_mode::nearest : rounding_mode::stochastic, *seed));
}

result<std::unique_ptr<codec>> minmax_codec::from_params(std::span<const std::byte> params, std::uint64_t) {
  if (params.size() != 2) return data_loss("minmax payload parameters must be 2 bytes");
  const auto bits = static_cast<unsigned>(params[0]);
  const auto rnd = static_cast<unsigned>(params[1]);
  if (bits < 1 || bits > 8 || rnd > 1) return data_loss("minmax payload has invalid parameters");
  return std::unique_ptr<codec>(std::make_unique<minmax_codec>(bits, static_cast<rounding_mode>(rnd)));
}

void minmax_codec::write_params(byte_writer& w) const noexcept {
  w.put<std::uint8_t>(static_cast<std::uint8_t>(bits_));
  w.put<std::uint8_t>(static_cast<std::uint8_t>(rounding_));
}

status minmax_codec::check_params(std::span<const std::byte> params, std::uint64_t) const {
  const auto bits = static_cast<unsigned>(params[0]);
  const auto rnd = static_cast<unsigned>(params[1]);
  if (bits < 1 || bits > 8 || rnd > 1) return data_loss("minmax payload has invalid parameters");
  // Rounding is the encoder's business; any q-bit payload decodes the same way.
  if (bits != bits_)
    return failed_precondition("minmax payload has bits=" + std::to_string(bits) + ", this decoder bits=" +
                               std::to_string(bits_));
  return {};
}

std::size_t minmax_codec::body_bytes(std::size_t n) const noexcept { return 8 + packed_bytes(n, bits_); }

void minmax_codec::encode_body(std::span<const float> in, std::span<std::byte> body) {
  const std::uint64_t stream = round_++;
  const std::size_t n = in.size();
  const int levels = (1 << bits_) - 1;
  const bool avx2 = detail::active_quant_isa() == detail::quant_isa::avx2;
  float lo = 0.0f, hi = 0.0f;
  if (n) {
    (avx2 ? scan_avx2 : scan_portable)(in.data(), n, lo, hi);
    lo += 0.0f;  // -0 -> +0: one canonical encoding of zero
    hi += 0.0f;
  }
  store_le<float>(body.data(), lo);
  store_le<float>(body.data() + 4, hi);
  std::span<std::byte> codes = body.subspan(8);
  const double range = static_cast<double>(hi) - static_cast<double>(lo);
  if (range == 0.0) {
    if (!codes.empty()) std::memset(codes.data(), 0, codes.size());
    return;
  }
  // Power-of-two prescale p keeps x*p - lo*p finite for ranges near 2^128 and L/range
  // finite for ranges below 2^-100 (then every |x| < 2^-75, so x*2^64 is exact).
  float p = 1.0f;
  if (range > 0x1p127) p = 0.5f;
  if (range < 0x1p-100) p = 0x1p64f;
  const enc_args a{p, lo * p, static_cast<float>(static_cast<double>(levels) / (range * static_cast<double>(p))),
                   levels, seed_, stream};
  pick_encode(bits_, rounding_ == rounding_mode::stochastic, avx2)(in.data(), n, a,
                                                                   reinterpret_cast<std::uint8_t*>(codes.data()));
}

status minmax_codec::decode_body(std::span<const std::byte>, std::span<const std::byte> body, std::span<float> out,
                                 bool accumulate, float weight) const {
  const std::size_t n = out.size();
  const float lo = load_le<float>(body.data());
  const float hi = load_le<float>(body.data() + 4);
  if (!is_finite_bits(lo) || !is_finite_bits(hi) || !(lo <= hi))
    return data_loss("minmax payload has an invalid range (non-finite, or min > max)");
  std::span<const std::byte> codes = body.subspan(8);
  if (!padding_is_zero(codes, n, bits_)) return data_loss("minmax payload has non-zero padding bits");
  const unsigned levels = (1u << bits_) - 1;
  float t[256];
  level_table(lo, hi, levels, t);
  const bool avx2 = detail::active_quant_isa() == detail::quant_isa::avx2;
  pick_decode(bits_, avx2)(reinterpret_cast<const std::uint8_t*>(codes.data()), n, t, out.data(), accumulate, weight);
  return {};
}

}  // namespace dtrain::codec
