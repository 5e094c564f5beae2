// uniform8 / quantile8: statistics or sampled quantiles, 8-bit codes, bin-mean codebook.
#include "dtrain/codec/codec_codebook8.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "dtrain/codec/detail/quant_isa.h"
#include "dtrain/core/dtype.h"
#include "quant_kernels.h"


namespace dtrain::codec {
namespace {

constexpr std::size_t book_n = codebook8_codec::codebook_size;

// Sums in double over 8 fixed lanes combined in a fixed order: the same bits on every
// machine and compiler, whatever the vector width.
template <class F>
double lane_sum(std::size_t n, F term) noexcept {
  double acc[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (std::size_t l = 0; l < 8; ++l) acc[l] += term(i + l);
  for (std::size_t l = 0; i < n; ++i, ++l) acc[l] += term(i);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

inline std::int32_t order_key(float f) noexcept {
  const auto b = std::bit_cast<std::int32_t>(f);
  return b ^ ((b >> 31) & 0x7fffffff);
}
inline float from_order_key(std::int32_t k) noexcept { return std::bit_cast<float>(k ^ ((k >> 31) & 0x7fffffff)); }

struct bins {
  double sum[book_n];
  std::uint64_t count[book_n];
};

void accumulate_bins(std::span<const float> in, const std::uint8_t* codes, bins& h) noexcept {
  for (std::size_t j = 0; j < book_n; ++j) {
    h.sum[j] = 0.0;
    h.count[j] = 0;
  }
  for (std::size_t i = 0; i < in.size(); ++i) {
    h.sum[codes[i]] += static_cast<double>(in[i]);
    ++h.count[codes[i]];
  }
}

// codes[i] = round_half_even(clamp((x - mu) inv, -128, 127)) + 128, in double.
QK_INLINE void k_uniform_codes(const float* x, std::size_t n, double mu, double inv, std::uint8_t* codes) noexcept {
  constexpr std::size_t blk = 256;
  std::int32_t q[blk];
  for (std::size_t i = 0; i < n; i += blk) {
    const std::size_t m = std::min(blk, n - i);
    for (std::size_t j = 0; j < m; ++j) {
      double t = (static_cast<double>(x[i + j]) - mu) * inv;
      t = t < -128.0 ? -128.0 : t;
      t = t > 127.0 ? 127.0 : t;
      t = (t + 0x1.8p52) - 0x1.8p52;  // round half to even
      q[j] = static_cast<std::int32_t>(t) + 128;
    }
    for (std::size_t j = 0; j < m; ++j) codes[i + j] = static_cast<std::uint8_t>(q[j]);
  }
}
void uniform_codes_portable(const float* x, std::size_t n, double mu, double inv, std::uint8_t* codes) noexcept {
  k_uniform_codes(x, n, mu, inv, codes);
}
#if QK_X86
// k_uniform_codes on 8 lanes: max/min equal the clamps for finite t, the rest is the same
// double arithmetic (no FMA), so the codes are identical.
QK_AVX2 inline __m128i uniform_four(const float* p, __m256d vmu, __m256d vinv) noexcept {
  __m256d t = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(p)), vmu), vinv);
  t = _mm256_min_pd(_mm256_max_pd(t, _mm256_set1_pd(-128.0)), _mm256_set1_pd(127.0));
  t = _mm256_sub_pd(_mm256_add_pd(t, _mm256_set1_pd(0x1.8p52)), _mm256_set1_pd(0x1.8p52));
  return _mm_add_epi32(_mm256_cvttpd_epi32(t), _mm_set1_epi32(128));
}
QK_AVX2 void uniform_codes_avx2(const float* x, std::size_t n, double mu, double inv, std::uint8_t* codes) noexcept {
  const __m256d vmu = _mm256_set1_pd(mu), vinv = _mm256_set1_pd(inv);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i a = uniform_four(x + i, vmu, vinv), b = uniform_four(x + i + 4, vmu, vinv);
    const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(a, b), _mm_setzero_si128());
    _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), bytes);
  }
  k_uniform_codes(x + i, n - i, mu, inv, codes + i);
}
#else
void uniform_codes_avx2(const float* x, std::size_t n, double mu, double inv, std::uint8_t* codes) noexcept {
  k_uniform_codes(x, n, mu, inv, codes);
}
#endif

// code = number of boundaries <= x (b sorted, 255 entries), by an 8-step branchless
// binary search: pos gains s when b[pos + s - 1] <= v.
void quantile_codes_portable(const float* x, std::size_t n, const float* b, std::uint8_t* codes) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const float v = x[i];
    unsigned pos = 0;
    for (unsigned s = 128; s; s >>= 1) pos += static_cast<unsigned>(b[pos + s - 1] <= v) * s;
    codes[i] = static_cast<std::uint8_t>(pos);
  }
}
// Monotone u32 key of a float with -0 folded into +0: for such floats a <= b exactly
// when key(a) <= key(b).
inline std::uint32_t ukey(float f) noexcept {
  const auto k = static_cast<std::uint32_t>(order_key(f + 0.0f));
  return k ^ 0x80000000u;
}

constexpr unsigned bucket_shift = 16;  // 2^16 buckets by the top 16 bits of ukey
constexpr std::size_t bucket_count = std::size_t{1} << (32 - bucket_shift);

// table[t] = lo | cnt << 8: lo = boundaries in buckets below t, cnt = boundaries in t
// (b sorted without -0). Every v in bucket t has lo <= code <= lo + cnt.
void build_buckets(const float* b, std::uint16_t* table) noexcept {
  std::fill(table, table + bucket_count, std::uint16_t{0});
  std::uint32_t cnt[book_n - 1];
  std::size_t kinds = 0;
  std::uint32_t prev = ~0u;
  for (std::size_t k = 0; k < book_n - 1; ++k) {
    const std::uint32_t t = ukey(b[k]) >> bucket_shift;
    if (t != prev) cnt[kinds++] = t;
    prev = t;
  }
  // Walk buckets in order: lo rises by each boundary's bucket count after its bucket.
  std::size_t k = 0;
  std::uint32_t lo = 0;
  std::size_t next = 0;
  for (std::size_t t = 0; t < bucket_count; ++t) {
    std::uint32_t c = 0;
    if (next < kinds && cnt[next] == t) {
      while (k < book_n - 1 && (ukey(b[k]) >> bucket_shift) == t) {
        ++c;
        ++k;
      }
      ++next;
    }
    table[t] = static_cast<std::uint16_t>(lo | (c << 8));
    lo += c;
  }
}

// Same codes as quantile_codes_portable: start from the bucket's lower count and test at
// most two boundaries; the rare bucket with more boundaries falls back to the search.
void quantile_codes_bucketed(const float* x, std::size_t n, const float* b, const std::uint16_t* table,
                             std::uint8_t* codes) noexcept {
  float bx[book_n + 1];
  for (std::size_t k = 0; k < book_n - 1; ++k) bx[k] = b[k];
  bx[book_n - 1] = bx[book_n] = b[book_n - 2];  // read only when cnt says it is a boundary
  for (std::size_t i = 0; i < n; ++i) {
    const float v = x[i];
    const std::uint16_t e = table[ukey(v) >> bucket_shift];
    const unsigned lo = e & 0xffu, c = e >> 8;
    unsigned code = lo + static_cast<unsigned>((c > 0) & (bx[lo] <= v)) + static_cast<unsigned>((c > 1) & (bx[lo + 1] <= v));
    if (c > 2) [[unlikely]] {
      code = 0;
      for (unsigned s = 128; s; s >>= 1) code += static_cast<unsigned>(b[code + s - 1] <= v) * s;
    }
    codes[i] = static_cast<std::uint8_t>(code);
  }
}

}  // namespace

result<std::unique_ptr<codec>> codebook8_codec::from_spec(spec_args& a, codebook_kind kind) {
  DTRAIN_RETURN_IF_ERROR(a.finish());
  return std::unique_ptr<codec>(std::make_unique<codebook8_codec>(kind));
}

result<std::unique_ptr<codec>> codebook8_codec::from_params(std::span<const std::byte> params, std::uint64_t,
                                                            codebook_kind kind) {
  if (!params.empty()) return data_loss("codebook payload carries unexpected parameters");
  return std::unique_ptr<codec>(std::make_unique<codebook8_codec>(kind));
}

void codebook8_codec::encode_body(std::span<const float> in, std::span<std::byte> body) {
  float book[book_n];
  auto* codes = reinterpret_cast<std::uint8_t*>(body.data() + 4 * book_n);
  if (kind_ == codebook_kind::uniform) {
    encode_uniform(in, codes, book);
  } else {
    encode_quantile(in, codes, book);
  }
  for (std::size_t j = 0; j < book_n; ++j) store_le<float>(body.data() + 4 * j, book[j]);
}

void codebook8_codec::encode_uniform(std::span<const float> in, std::uint8_t* codes, float* book) const {
  const std::size_t n = in.size();
  const float* x = in.data();
  if (n == 0) {
    std::fill(book, book + book_n, 0.0f);
    return;
  }
  std::int32_t kmin = order_key(x[0]), kmax = kmin;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int32_t k = order_key(x[i]);
    kmin = k < kmin ? k : kmin;
    kmax = k > kmax ? k : kmax;
  }
  const float lo = from_order_key(kmin), hi = from_order_key(kmax);
  const double mu = lane_sum(n, [x](std::size_t i) { return static_cast<double>(x[i]); }) / static_cast<double>(n);
  double sigma = 0.0;
  if (n >= 2) {
    const double ss = lane_sum(n, [x, mu](std::size_t i) {
      const double d = static_cast<double>(x[i]) - mu;
      return d * d;
    });
    sigma = std::sqrt(ss / static_cast<double>(n - 1));  // IEEE sqrt: correctly rounded everywhere
  }
  const double step = 6.0 * sigma / 256.0;
  if (step > 0.0) {
    const double inv = 1.0 / step;
    (detail::active_quant_isa() == detail::quant_isa::avx2 ? uniform_codes_avx2 : uniform_codes_portable)(x, n, mu, inv,
                                                                                                       codes);
  } else {
    std::fill(codes, codes + n, std::uint8_t{128});
  }
  bins h;
  accumulate_bins(in, codes, h);
  for (std::size_t j = 0; j < book_n; ++j) {
    // Bin means stay inside [lo, hi]; empty-bin centres are clamped there too, so the
    // codebook is finite even for data near the float range limits.
    const double v = h.count[j] ? h.sum[j] / static_cast<double>(h.count[j])
                                : mu + (static_cast<double>(j) - 128.0) * step;
    float f = static_cast<float>(std::clamp(v, static_cast<double>(lo), static_cast<double>(hi)));
    book[j] = f + 0.0f;  // -0 -> +0
  }
}

void codebook8_codec::encode_quantile(std::span<const float> in, std::uint8_t* codes, float* book) {
  const std::size_t n = in.size();
  float b[book_n - 1];
  if (n == 0) {
    std::fill(book, book + book_n, 0.0f);
    return;
  }
  const std::size_t stride = (n + max_sample - 1) / max_sample;
  const std::size_t m = (n + stride - 1) / stride;
  sample_.resize(m);
  // +0.0f folds -0 into +0 so the sorted sample (and thus the boundaries) is unique.
  for (std::size_t j = 0; j < m; ++j) sample_[j] = in[j * stride] + 0.0f;
  std::sort(sample_.begin(), sample_.end());
  for (std::size_t k = 1; k < book_n; ++k) b[k - 1] = sample_[(k * m) / book_n];
  // Building the 2^16-entry table pays off only over many elements.
  if (n >= 4 * bucket_count) {
    bucket_.resize(bucket_count);
    build_buckets(b, bucket_.data());
    quantile_codes_bucketed(in.data(), n, b, bucket_.data(), codes);
  } else {
    quantile_codes_portable(in.data(), n, b, codes);
  }
  bins h;
  accumulate_bins(in, codes, h);
  for (std::size_t j = 0; j < book_n; ++j) {
    const float lower = j > 0 ? b[j - 1] : b[0];
    const float upper = j < book_n - 1 ? b[j] : b[book_n - 2];
    float f;
    if (h.count[j]) {
      f = static_cast<float>(h.sum[j] / static_cast<double>(h.count[j]));
      // Bucket j holds [b[j-1], b[j]): its mean lies there up to rounding; clamping
      // keeps the codebook non-decreasing, which decoders check.
      if (j > 0) f = std::max(f, lower);
      if (j < book_n - 1) f = std::min(f, upper);
    } else if (j == 0 || j == book_n - 1) {
      f = j == 0 ? upper : lower;
    } else {
      f = static_cast<float>((static_cast<double>(lower) + static_cast<double>(upper)) * 0.5);
    }
    book[j] = f + 0.0f;
  }
}

status codebook8_codec::decode_body(std::span<const std::byte>, std::span<const std::byte> body,
                                    std::span<float> out, bool accumulate, float weight) const {
  float book[book_n];
  for (std::size_t j = 0; j < book_n; ++j) {
    book[j] = load_le<float>(body.data() + 4 * j);
    if (!is_finite_bits(book[j])) return data_loss(std::string(name()) + " payload has a non-finite codebook entry");
    if (kind_ == codebook_kind::quantile && j > 0 && book[j] < book[j - 1])
      return data_loss("quantile8 payload has a decreasing codebook");
  }
  const auto* codes = reinterpret_cast<const std::uint8_t*>(body.data() + 4 * book_n);
  const std::size_t n = out.size();
  if (accumulate) {
    for (std::size_t i = 0; i < n; ++i) out[i] += weight * book[codes[i]];
  } else {
    for (std::size_t i = 0; i < n; ++i) out[i] = book[codes[i]];
  }
  return {};
}

}  // namespace dtrain::codec
