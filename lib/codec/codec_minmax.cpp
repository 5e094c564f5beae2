// Uniform min-max q-bit codec: integer min/max scan, float code loop, table decode.
#include "dtrain/codec/codec_minmax.h"

#include <bit>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "dtrain/core/bitpack.h"
#include "dtrain/core/dtype.h"
#include "dtrain/core/rng.h"

namespace dtrain::codec {
namespace {

constexpr std::size_t chunk = 1024;  // multiple of 8, so every chunk starts on a byte

// min and max of finite floats. Their values do not depend on the scan order; only the
// sign of a zero result may, and the caller canonicalises that.
void scan_range(const float* x, std::size_t n, float& lo, float& hi) noexcept {
  std::size_t i = 0;
  lo = hi = x[0];
#if defined(__SSE2__)
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
#endif
  for (; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
}

// No clamp needed: x >= lo makes x*p - lo_p >= 0, and v <= L (1 + 3 2^-24) rounds to <= L.
void quantize_nearest(const float* x, std::uint8_t* c, std::size_t m, float p, float lo_p, float inv) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    float v = (x[i] * p - lo_p) * inv;
    v = (v + 0x1.8p23f) - 0x1.8p23f;  // round half to even, exact for |v| < 2^22
    c[i] = static_cast<std::uint8_t>(static_cast<int>(v));
  }
}

void quantize_stochastic(const float* x, const float* u, std::uint8_t* c, std::size_t m, float p, float lo_p,
                         float inv, int levels) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    const float v = (x[i] * p - lo_p) * inv + u[i];
    int q = static_cast<int>(v);  // v > -1, so truncation is floor after the clamp below
    q = q < 0 ? 0 : q;
    q = q > levels ? levels : q;
    c[i] = static_cast<std::uint8_t>(q);
  }
}

// u[j] = counter_rng(seed, stream).uniform_at(first + j), one Philox block per 4 words.
void fill_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t first, float* u, std::size_t m) noexcept {
  const std::array<std::uint32_t, 2> key = {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)};
  DTRAIN_ASSERT(first % 4 == 0);
  for (std::size_t j = 0; j < m; j += 4) {
    const std::uint64_t blk = (first + j) >> 2;
    const auto w = philox4x32_10({static_cast<std::uint32_t>(blk), static_cast<std::uint32_t>(blk >> 32),
                                  static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)},
                                 key);
    for (std::size_t k = 0; k < 4 && j + k < m; ++k) u[j + k] = static_cast<float>(w[k] >> 8) * 0x1p-24f;
  }
}

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
  float lo = 0.0f, hi = 0.0f;
  if (n) {
    scan_range(in.data(), n, lo, hi);
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
  const float inv = static_cast<float>(static_cast<double>(levels) / (range * static_cast<double>(p)));
  const float lo_p = lo * p;
  auto* out8 = reinterpret_cast<std::uint8_t*>(codes.data());
  std::uint8_t tmp[chunk];
  float u[chunk];
  for (std::size_t i = 0; i < n; i += chunk) {
    const std::size_t m = std::min(chunk, n - i);
    std::uint8_t* c = bits_ == 8 ? out8 + i : tmp;
    if (rounding_ == rounding_mode::nearest) {
      quantize_nearest(in.data() + i, c, m, p, lo_p, inv);
    } else {
      fill_uniform(seed_, stream, i, u, m);
      quantize_stochastic(in.data() + i, u, c, m, p, lo_p, inv, levels);
    }
    if (bits_ != 8)
      pack_bits<std::uint8_t>(std::span<const std::uint8_t>(tmp, m), bits_, codes.subspan(i * bits_ / 8));
  }
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
  const auto* in8 = reinterpret_cast<const std::uint8_t*>(codes.data());
  std::uint8_t tmp[chunk];
  for (std::size_t i = 0; i < n; i += chunk) {
    const std::size_t m = std::min(chunk, n - i);
    const std::uint8_t* c = in8 + i;
    if (bits_ != 8) {
      unpack_bits<std::uint8_t>(codes.subspan(i * bits_ / 8), bits_, std::span<std::uint8_t>(tmp, m));
      c = tmp;
    }
    float* o = out.data() + i;
    if (accumulate) {
      for (std::size_t j = 0; j < m; ++j) o[j] += weight * t[c[j]];
    } else {
      for (std::size_t j = 0; j < m; ++j) o[j] = t[c[j]];
    }
  }
  return {};
}

}  // namespace dtrain::codec
