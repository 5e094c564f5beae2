// Bulk f32 <-> f16/bf16 conversion: a portable loop and an AVX2+F16C loop, chosen once
// per process. Both are bit-identical to the scalar functions in dtype.h (tested).
#include "dtrain/core/convert.h"

#include "dtrain/core/dtype.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define DTRAIN_X86 1
#endif

namespace dtrain {
namespace {

// ---- portable reference loops ---------------------------------------------------
void f32_to_f16_portable(const float* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_f16_bits(in[i]);
}
void f16_to_f32_portable(const std::uint16_t* in, float* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f16_bits_to_f32(in[i]);
}
void f16_acc_portable(const std::uint16_t* in, float* acc, std::size_t n, float w) {
  for (std::size_t i = 0; i < n; ++i) acc[i] += w * f16_bits_to_f32(in[i]);
}

#ifdef DTRAIN_X86
// ---- AVX2 + F16C ----------------------------------------------------------------
__attribute__((target("avx2,f16c"))) void f32_to_f16_avx2(const float* in, std::uint16_t* out,
                                                           std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 a = _mm256_loadu_ps(in + i), b = _mm256_loadu_ps(in + i + 8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 8), _mm256_cvtps_ph(b, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) out[i] = f32_to_f16_bits(in[i]);
}
__attribute__((target("avx2,f16c"))) void f16_to_f32_avx2(const std::uint16_t* in, float* out,
                                                           std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = f16_bits_to_f32(in[i]);
}
__attribute__((target("avx2,f16c"))) void f16_acc_avx2(const std::uint16_t* in, float* acc,
                                                        std::size_t n, float w) {
  const __m256 vw = _mm256_set1_ps(w);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    // mul then add, never fused: results must match the portable path bit for bit.
    __m256 p = _mm256_mul_ps(vw, _mm256_cvtph_ps(h));
    _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), p));
  }
  for (; i < n; ++i) acc[i] += w * f16_bits_to_f32(in[i]);
}
__attribute__((target("avx2"))) void f32_to_bf16_avx2(const float* in, std::uint16_t* out,
                                                       std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_bf16_bits(in[i]);  // auto-vectorised
}
__attribute__((target("avx2"))) void bf16_to_f32_avx2(const std::uint16_t* in, float* out,
                                                       std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = bf16_bits_to_f32(in[i]);
}
__attribute__((target("avx2"))) void bf16_acc_avx2(const std::uint16_t* in, float* acc,
                                                    std::size_t n, float w) {
  for (std::size_t i = 0; i < n; ++i) acc[i] += w * bf16_bits_to_f32(in[i]);
}
__attribute__((target("avx2"))) std::size_t find_nonfinite_avx2(const float* in, std::size_t n) {
  std::size_t i = 0;
  const __m256i mask = _mm256_set1_epi32(0x7f800000);
  for (; i + 32 <= n; i += 32) {
    __m256i any = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      __m256i v = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i + 8 * j)), mask);
      any = _mm256_or_si256(any, _mm256_cmpeq_epi32(v, mask));
    }
    if (!_mm256_testz_si256(any, any)) break;  // locate it with the scalar loop
  }
  for (; i < n; ++i)
    if (!is_finite_bits(in[i])) return i;
  return n;
}

bool cpu_has_avx2_f16c() {
  // F16C via cpuid: clang 14's __builtin_cpu_supports does not know "f16c".
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
  }();
  return has;
}
#else
bool cpu_has_avx2_f16c() { return false; }
#endif

void bf16_from_portable(const float* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_bf16_bits(in[i]);
}
void bf16_to_portable(const std::uint16_t* in, float* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = bf16_bits_to_f32(in[i]);
}
void bf16_acc_portable(const std::uint16_t* in, float* acc, std::size_t n, float w) {
  for (std::size_t i = 0; i < n; ++i) acc[i] += w * bf16_bits_to_f32(in[i]);
}
std::size_t find_nonfinite_portable(const float* in, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (!is_finite_bits(in[i])) return i;
  return n;
}

}  // namespace

#ifdef DTRAIN_X86
#define DTRAIN_DISPATCH(fast, portable, ...) \
  (cpu_has_avx2_f16c() ? fast(__VA_ARGS__) : portable(__VA_ARGS__))
#else
#define DTRAIN_DISPATCH(fast, portable, ...) portable(__VA_ARGS__)
#endif

void f32_to_f16(std::span<const float> in, std::span<std::uint16_t> out) noexcept {
  DTRAIN_DISPATCH(f32_to_f16_avx2, f32_to_f16_portable, in.data(), out.data(), in.size());
}
void f16_to_f32(std::span<const std::uint16_t> in, std::span<float> out) noexcept {
  DTRAIN_DISPATCH(f16_to_f32_avx2, f16_to_f32_portable, in.data(), out.data(), in.size());
}
void f16_accumulate(std::span<const std::uint16_t> in, std::span<float> acc, float w) noexcept {
  DTRAIN_DISPATCH(f16_acc_avx2, f16_acc_portable, in.data(), acc.data(), in.size(), w);
}
void f32_to_bf16(std::span<const float> in, std::span<std::uint16_t> out) noexcept {
  DTRAIN_DISPATCH(f32_to_bf16_avx2, bf16_from_portable, in.data(), out.data(), in.size());
}
void bf16_to_f32(std::span<const std::uint16_t> in, std::span<float> out) noexcept {
  DTRAIN_DISPATCH(bf16_to_f32_avx2, bf16_to_portable, in.data(), out.data(), in.size());
}
void bf16_accumulate(std::span<const std::uint16_t> in, std::span<float> acc, float w) noexcept {
  DTRAIN_DISPATCH(bf16_acc_avx2, bf16_acc_portable, in.data(), acc.data(), in.size(), w);
}
std::size_t find_nonfinite(std::span<const float> in) noexcept {
  return DTRAIN_DISPATCH(find_nonfinite_avx2, find_nonfinite_portable, in.data(), in.size());
}
std::string_view convert_isa() noexcept { return cpu_has_avx2_f16c() ? "avx2+f16c" : "portable"; }

}  // namespace dtrain
