// uniform8 / quantile8: statistics or sampled quantiles, 8-bit codes, bin-mean codebook.
#include "dtrain/codec/codec_codebook8.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "dtrain/core/dtype.h"

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
    for (std::size_t i = 0; i < n; ++i) {
      double t = (static_cast<double>(x[i]) - mu) * inv;
      t = t < -128.0 ? -128.0 : t;
      t = t > 127.0 ? 127.0 : t;
      t = (t + 0x1.8p52) - 0x1.8p52;  // round half to even
      codes[i] = static_cast<std::uint8_t>(static_cast<int>(t) + 128);
    }
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
  // code = number of boundaries <= x, by an 8-step branchless binary search.
  for (std::size_t i = 0; i < n; ++i) {
    const float v = in[i];
    unsigned pos = 0;
    for (unsigned s = 128; s; s >>= 1) pos += static_cast<unsigned>(b[pos + s - 1] <= v) * s;
    codes[i] = static_cast<std::uint8_t>(pos);
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
