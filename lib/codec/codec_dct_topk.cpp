// DCT top-k codec: dense forward DCT-II per chunk as a fixed-order matrix-vector
// product, exact top-k of the coefficients, sparse inverse on decode.
#include "dtrain/codec/codec_dct_topk.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <string>

#include "dtrain/codec/codec_topk.h"
#include "dtrain/core/bitpack.h"
#include "dtrain/core/dtype.h"

namespace dtrain::codec {
namespace detail {

double cos_pi_ratio(std::uint64_t num, std::uint64_t den) noexcept {
  DTRAIN_ASSERT(den > 0 && den < (std::uint64_t{1} << 40));
  // Angle pi*m/d; period 2d, then fold to [0, d/2] (i.e. [0, pi/2]) with a sign.
  std::uint64_t m = num % (2 * den);
  if (m > den) m = 2 * den - m;
  double sign = 1.0;
  if (2 * m > den) {
    m = den - m;
    sign = -1.0;
  }
  constexpr double pi = 3.141592653589793238462643383279502884;
  // For angles above pi/4 use cos(t) = sin(pi/2 - t): both series then run on |t| <= pi/4.
  const bool use_sin = 4 * m > den;
  const double t = use_sin ? pi * static_cast<double>(den - 2 * m) / static_cast<double>(2 * den)
                           : pi * static_cast<double>(m) / static_cast<double>(den);
  const double t2 = t * t;
  // 11 terms: the next one is below 2^-60 for |t| <= pi/4.
  double term = use_sin ? t : 1.0, sum = term;
  for (int i = 1; i <= 11; ++i) {
    const double a = use_sin ? 2.0 * i : 2.0 * i - 1.0;
    term = -term * t2 / (a * (a + 1.0));
    sum += term;
  }
  return sign * sum;
}

}  // namespace detail

namespace {

constexpr std::uint32_t max_chunk = 1024;

struct dct_params {
  std::uint32_t chunk = 0, k = 0;
  std::uint8_t values = 0;
};

bool parse_params(std::span<const std::byte> p, dct_params& out) {
  byte_reader r(p);
  out.chunk = r.get<std::uint32_t>();
  out.k = r.get<std::uint32_t>();
  out.values = r.get<std::uint8_t>();
  return r.ok() && r.remaining() == 0 && out.chunk >= 2 && out.chunk <= max_chunk && out.k >= 1 &&
         out.k <= out.chunk && out.values <= static_cast<std::uint8_t>(dct_values::sign);
}

const char* values_name(dct_values v) {
  return v == dct_values::fp16 ? "fp16" : v == dct_values::f32 ? "f32" : "sign";
}

inline float finite_or_saturated(float v) noexcept {
  if (is_finite_bits(v)) return v;
  return v != v ? 0.0f : (v > 0 ? FLT_MAX : -FLT_MAX);
}

}  // namespace

dct_topk_codec::dct_topk_codec(std::uint32_t chunk, std::uint32_t k, dct_values values)
    : chunk_(chunk), k_(k), values_(values), index_bits_(bits_for(chunk)) {
  DTRAIN_ASSERT(chunk >= 2 && chunk <= max_chunk && k >= 1 && k <= chunk);
  const std::size_t c = chunk;
  basis_t_.resize(c * c);
  basis_.resize(c * c);
  // sqrt is correctly rounded under IEEE 754, so a(u) is the same everywhere.
  const double a0 = std::sqrt(1.0 / static_cast<double>(c)), a1 = std::sqrt(2.0 / static_cast<double>(c));
  for (std::size_t u = 0; u < c; ++u)
    for (std::size_t i = 0; i < c; ++i)
      basis_[u * c + i] = basis_t_[i * c + u] =
          static_cast<float>((u ? a1 : a0) * detail::cos_pi_ratio((2 * i + 1) * u, 2 * c));
  coef_.resize(c);
  idx_.resize(k);
}

std::string dct_topk_codec::spec() const {
  return "dct_topk:chunk=" + std::to_string(chunk_) + ",k=" + std::to_string(k_) + ",values=" + values_name(values_);
}

result<std::unique_ptr<codec>> dct_topk_codec::from_spec(spec_args& a) {
  auto chunk = a.get_uint("chunk", 64, 2, max_chunk);
  if (!chunk.ok()) return chunk.status();
  auto k = a.get_uint("k", 8, 1, max_chunk);
  if (!k.ok()) return k.status();
  auto v = a.get_choice("values", "fp16", {"fp16", "f32", "sign"});
  if (!v.ok()) return v.status();
  DTRAIN_RETURN_IF_ERROR(a.finish());
  if (*k > *chunk)
    return invalid_argument("dct_topk: k = " + std::to_string(*k) + " exceeds chunk = " + std::to_string(*chunk));
  const dct_values dv = *v == "fp16" ? dct_values::fp16 : *v == "f32" ? dct_values::f32 : dct_values::sign;
  return std::unique_ptr<codec>(
      std::make_unique<dct_topk_codec>(static_cast<std::uint32_t>(*chunk), static_cast<std::uint32_t>(*k), dv));
}

result<std::unique_ptr<codec>> dct_topk_codec::from_params(std::span<const std::byte> params, std::uint64_t) {
  dct_params p;
  if (!parse_params(params, p)) return data_loss("dct_topk payload has invalid parameters");
  return std::unique_ptr<codec>(std::make_unique<dct_topk_codec>(p.chunk, p.k, static_cast<dct_values>(p.values)));
}

void dct_topk_codec::write_params(byte_writer& w) const noexcept {
  w.put<std::uint32_t>(chunk_);
  w.put<std::uint32_t>(k_);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(values_));
}

status dct_topk_codec::check_params(std::span<const std::byte> params, std::uint64_t) const {
  dct_params p;
  if (!parse_params(params, p)) return data_loss("dct_topk payload has invalid parameters");
  if (p.chunk != chunk_ || p.k != k_ || p.values != static_cast<std::uint8_t>(values_))
    return failed_precondition("dct_topk payload parameters (chunk=" + std::to_string(p.chunk) + ",k=" +
                               std::to_string(p.k) + ",values=" + values_name(static_cast<dct_values>(p.values)) +
                               ") differ from this decoder's (" + spec() + ")");
  return {};
}

std::size_t dct_topk_codec::record_bytes() const noexcept {
  const std::size_t vals = values_ == dct_values::fp16 ? 2 * std::size_t{k_}
                           : values_ == dct_values::f32 ? 4 * std::size_t{k_}
                                                        : 4 + packed_bytes(k_, 1);
  return packed_bytes(k_, index_bits_) + vals;
}

std::size_t dct_topk_codec::body_bytes(std::size_t n) const noexcept {
  return (n + chunk_ - 1) / chunk_ * record_bytes();
}

void dct_topk_codec::encode_body(std::span<const float> in, std::span<std::byte> body) {
  const std::size_t n = in.size(), c = chunk_;
  const std::size_t ib = packed_bytes(k_, index_bits_);
  std::byte* rec = body.data();
  float* coef = coef_.data();
  for (std::size_t c0 = 0; c0 < n; c0 += c) {
    // The last chunk is zero-padded to C; its padding terms are skipped, not added.
    const std::size_t len = std::min(c, n - c0);
    const float* x = in.data() + c0;
    // coef[u] = sum over i ascending of D[u][i] * x[i], from 0. Sixteen outputs at a time
    // stay in registers; the order of additions per output is the same for any blocking.
    std::size_t u0 = 0;
    for (; u0 + 16 <= c; u0 += 16) {
      float acc[16] = {};
      for (std::size_t i = 0; i < len; ++i) {
        const float* row = basis_t_.data() + i * c + u0;
        const float xi = x[i];
        for (std::size_t u = 0; u < 16; ++u) acc[u] += row[u] * xi;
      }
      std::copy(acc, acc + 16, coef + u0);
    }
    for (; u0 < c; ++u0) {
      float acc = 0.0f;
      for (std::size_t i = 0; i < len; ++i) acc += basis_t_[i * c + u0] * x[i];
      coef[u0] = acc;
    }
    for (std::size_t u = 0; u < c; ++u) coef[u] = finite_or_saturated(coef[u]);
    const std::size_t m = selector_.select_abs({coef, c}, k_, idx_);
    DTRAIN_ASSERT(m == k_);
    pack_bits<std::uint32_t>(idx_, index_bits_, {rec, ib});
    std::byte* v = rec + ib;
    switch (values_) {
      case dct_values::fp16:
        for (std::size_t j = 0; j < m; ++j) store_le<std::uint16_t>(v + 2 * j, detail::f16_saturate(coef[idx_[j]]));
        break;
      case dct_values::f32:
        for (std::size_t j = 0; j < m; ++j) store_le<float>(v + 4 * j, coef[idx_[j]]);
        break;
      case dct_values::sign: {
        float sum = 0.0f;
        for (std::size_t j = 0; j < m; ++j) sum += std::fabs(coef[idx_[j]]);
        store_le<float>(v, finite_or_saturated(sum / static_cast<float>(m)));
        auto* bits = reinterpret_cast<std::uint8_t*>(v + 4);
        std::fill(bits, bits + packed_bytes(m, 1), std::uint8_t{0});
        for (std::size_t j = 0; j < m; ++j)
          bits[j / 8] = static_cast<std::uint8_t>(bits[j / 8] | ((coef[idx_[j]] < 0.0f ? 1u : 0u) << (j % 8)));
        break;
      }
    }
    rec += record_bytes();
  }
  DTRAIN_ASSERT(rec == body.data() + body.size());
}

status dct_topk_codec::decode_body(std::span<const std::byte>, std::span<const std::byte> body, std::span<float> out,
                                   bool accumulate, float weight) const {
  const std::size_t n = out.size(), c = chunk_, m = k_;
  const std::size_t ib = packed_bytes(m, index_bits_), rb = record_bytes();
  // Pass 1: validate every record before writing anything.
  for (std::size_t c0 = 0, off = 0; c0 < n; c0 += c, off += rb) {
    if (!detail::sparse_indices_valid(body.subspan(off, ib), m, index_bits_, c))
      return data_loss("dct_topk payload: chunk " + std::to_string(c0 / c) +
                       " has an index out of range, out of order, repeated, or non-zero padding");
    const std::byte* v = body.data() + off + ib;
    bool ok = true;
    switch (values_) {
      case dct_values::fp16:
        for (std::size_t j = 0; j < m; ++j) ok &= (load_le<std::uint16_t>(v + 2 * j) & 0x7c00u) != 0x7c00u;
        break;
      case dct_values::f32:
        for (std::size_t j = 0; j < m; ++j) ok &= is_finite_bits(load_le<float>(v + 4 * j));
        break;
      case dct_values::sign: {
        const float s = load_le<float>(v);
        const auto bits = body.subspan(off + ib + 4, packed_bytes(m, 1));
        ok = is_finite_bits(s) && (std::bit_cast<std::uint32_t>(s) >> 31) == 0 && padding_is_zero(bits, m, 1);
        // A zero scale means every selected coefficient was 0, which encodes as +.
        if (ok && s == 0.0f)
          for (std::byte b : bits) ok &= b == std::byte{0};
        break;
      }
    }
    if (!ok)
      return data_loss("dct_topk payload: chunk " + std::to_string(c0 / c) +
                       " holds a non-finite value, a negative scale or non-zero padding");
  }
  // Pass 2: sparse inverse DCT (DCT-III) per chunk, terms added in index order.
  float tmp[max_chunk];
  for (std::size_t c0 = 0, off = 0; c0 < n; c0 += c, off += rb) {
    const std::size_t len = std::min(c, n - c0);
    const std::byte* v = body.data() + off + ib;
    std::fill(tmp, tmp + len, 0.0f);
    const float scale = values_ == dct_values::sign ? load_le<float>(v) : 0.0f;
    detail::for_each_sparse_index(body.subspan(off, ib), m, index_bits_, [&](std::size_t j, std::uint32_t u) {
      float cu;
      switch (values_) {
        case dct_values::fp16: cu = f16_bits_to_f32(load_le<std::uint16_t>(v + 2 * j)); break;
        case dct_values::f32: cu = load_le<float>(v + 4 * j); break;
        default: cu = ((static_cast<unsigned>(v[4 + j / 8]) >> (j % 8)) & 1u) ? -scale : scale; break;
      }
      const float* row = basis_.data() + u * c;
      for (std::size_t i = 0; i < len; ++i) tmp[i] += row[i] * cu;
    });
    float* o = out.data() + c0;
    if (accumulate) {
      for (std::size_t i = 0; i < len; ++i) o[i] += weight * tmp[i];
    } else {
      std::copy(tmp, tmp + len, o);
    }
  }
  return {};
}

}  // namespace dtrain::codec
