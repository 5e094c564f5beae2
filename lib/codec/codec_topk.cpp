// Chunked top-k codec: selection by detail::topk_selector, per-chunk records of packed
// indices then values (layout in docs/codecs/sparse.md).
#include "dtrain/codec/codec_topk.h"

#include <algorithm>
#include <bit>
#include <string>

#include "dtrain/core/dtype.h"

namespace dtrain::codec {
namespace detail {

bool sparse_indices_valid(std::span<const std::byte> packed, std::size_t m, unsigned bits, std::size_t len) noexcept {
  if (m > len) return false;
  if (bits == 0) return m <= 1;  // only index 0 exists
  if (!padding_is_zero(packed, m, bits)) return false;
  bool ok = true;
  std::int64_t prev = -1;
  for_each_sparse_index(packed, m, bits, [&](std::size_t, std::uint32_t i) {
    ok &= static_cast<std::int64_t>(i) > prev && i < len;
    prev = i;
  });
  return ok;
}

std::uint16_t f16_saturate(float v) noexcept {
  const std::uint16_t h = f32_to_f16_bits(v);
  return (h & 0x7fffu) == 0x7c00u ? static_cast<std::uint16_t>((h & 0x8000u) | 0x7bffu) : h;
}

std::uint16_t bf16_saturate(float v) noexcept {
  const std::uint16_t h = f32_to_bf16_bits(v);
  return (h & 0x7fffu) == 0x7f80u ? static_cast<std::uint16_t>((h & 0x8000u) | 0x7f7fu) : h;
}

}  // namespace detail

namespace {

constexpr std::uint32_t max_chunk = static_cast<std::uint32_t>(detail::topk_max_chunk);

const char* values_name(topk_values v) {
  switch (v) {
    case topk_values::fp16: return "fp16";
    case topk_values::bf16: return "bf16";
    case topk_values::f32: return "f32";
    case topk_values::q2: return "q2";
    case topk_values::q4: return "q4";
    case topk_values::q8: return "q8";
  }
  return "?";
}

struct topk_params {
  std::uint32_t chunk = 0, k = 0;
  std::uint8_t values = 0;
};

// Parses and range-checks a parameter block; false when no encoder writes it.
bool parse_params(std::span<const std::byte> p, topk_params& out) {
  byte_reader r(p);
  out.chunk = r.get<std::uint32_t>();
  out.k = r.get<std::uint32_t>();
  out.values = r.get<std::uint8_t>();
  return r.ok() && r.remaining() == 0 && out.chunk >= 1 && out.chunk <= max_chunk && out.k >= 1 &&
         out.k <= out.chunk && out.values <= static_cast<std::uint8_t>(topk_values::q8);
}

bool is_finite_f16(std::uint16_t h) { return (h & 0x7c00u) != 0x7c00u; }
bool is_finite_bf16(std::uint16_t h) { return (h & 0x7f80u) != 0x7f80u; }

// q-bit min-max grid over [lo, hi] in double: IEEE double arithmetic without
// contraction is the same on every machine, and the range hi - lo cannot overflow.
struct q_grid {
  double lo, step, inv;
  q_grid(float lo_f, float hi_f, unsigned q) noexcept
      : lo(static_cast<double>(lo_f)), step((static_cast<double>(hi_f) - static_cast<double>(lo_f)) / static_cast<double>((1u << q) - 1)),
        inv(step > 0.0 ? 1.0 / step : 0.0) {}
  std::uint32_t code(float v, unsigned q) const noexcept {
    // Round half up; truncation is floor here since c >= 0 (v >= lo).
    const double c = (static_cast<double>(v) - lo) * inv + 0.5;
    const double top = static_cast<double>((1u << q) - 1);
    return static_cast<std::uint32_t>(c < 0.0 ? 0.0 : c > top ? top : c);
  }
  float value(std::uint32_t c) const noexcept { return static_cast<float>(lo + static_cast<double>(c) * step); }
};

}  // namespace

topk_codec::topk_codec(std::uint32_t chunk, std::uint32_t k, topk_values values)
    : chunk_(chunk), k_(k), values_(values), index_bits_(bits_for(chunk)) {
  DTRAIN_ASSERT(chunk >= 1 && chunk <= max_chunk && k >= 1 && k <= chunk);
}

std::string topk_codec::spec() const {
  return "topk:chunk=" + std::to_string(chunk_) + ",k=" + std::to_string(k_) + ",values=" + values_name(values_);
}

result<std::unique_ptr<codec>> topk_codec::from_spec(spec_args& a) {
  auto chunk = a.get_uint("chunk", 4096, 1, max_chunk);
  if (!chunk.ok()) return chunk.status();
  auto k = a.get_uint("k", 64, 1, max_chunk);
  if (!k.ok()) return k.status();
  auto v = a.get_choice("values", "fp16", {"fp16", "bf16", "f32", "q2", "q4", "q8"});
  if (!v.ok()) return v.status();
  DTRAIN_RETURN_IF_ERROR(a.finish());
  if (*k > *chunk)
    return invalid_argument("topk: k = " + std::to_string(*k) + " exceeds chunk = " + std::to_string(*chunk));
  topk_values tv = topk_values::fp16;
  for (auto c : {topk_values::fp16, topk_values::bf16, topk_values::f32, topk_values::q2, topk_values::q4,
                 topk_values::q8})
    if (*v == values_name(c)) tv = c;
  return std::unique_ptr<codec>(
      std::make_unique<topk_codec>(static_cast<std::uint32_t>(*chunk), static_cast<std::uint32_t>(*k), tv));
}

result<std::unique_ptr<codec>> topk_codec::from_params(std::span<const std::byte> params, std::uint64_t) {
  topk_params p;
  if (!parse_params(params, p)) return data_loss("topk payload has invalid parameters");
  return std::unique_ptr<codec>(std::make_unique<topk_codec>(p.chunk, p.k, static_cast<topk_values>(p.values)));
}

void topk_codec::write_params(byte_writer& w) const noexcept {
  w.put<std::uint32_t>(chunk_);
  w.put<std::uint32_t>(k_);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(values_));
}

status topk_codec::check_params(std::span<const std::byte> params, std::uint64_t) const {
  topk_params p;
  if (!parse_params(params, p)) return data_loss("topk payload has invalid parameters");
  if (p.chunk != chunk_ || p.k != k_ || p.values != static_cast<std::uint8_t>(values_))
    return failed_precondition("topk payload parameters (chunk=" + std::to_string(p.chunk) + ",k=" +
                               std::to_string(p.k) + ",values=" + values_name(static_cast<topk_values>(p.values)) +
                               ") differ from this decoder's (" + spec() + ")");
  return {};
}

std::size_t topk_codec::record_bytes(std::size_t len) const noexcept {
  const std::size_t m = std::min<std::size_t>(k_, len);
  const unsigned q = detail::topk_q_bits(values_);
  const std::size_t vals = q ? 8 + packed_bytes(m, q) : m * (values_ == topk_values::f32 ? 4 : 2);
  return packed_bytes(m, index_bits_) + vals;
}

std::size_t topk_codec::body_bytes(std::size_t n) const noexcept {
  const std::size_t full = n / chunk_, tail = n % chunk_;
  return full * record_bytes(chunk_) + (tail ? record_bytes(tail) : 0);
}

void topk_codec::encode_body(std::span<const float> in, std::span<std::byte> body) {
  const std::size_t n = in.size();
  idx_.resize(k_);
  codes_.resize(k_);
  const unsigned q = detail::topk_q_bits(values_);
  std::byte* rec = body.data();
  for (std::size_t c0 = 0; c0 < n; c0 += chunk_) {
    const std::size_t len = std::min<std::size_t>(chunk_, n - c0);
    const std::span<const float> x = in.subspan(c0, len);
    const std::span<const float> next = c0 + len < n ? in.subspan(c0 + len, std::min<std::size_t>(chunk_, n - c0 - len))
                                                     : std::span<const float>();
    const std::size_t m = selector_.select_abs(x, k_, idx_, next);
    const std::size_t ib = packed_bytes(m, index_bits_);
    if (index_bits_) pack_bits<std::uint32_t>(std::span(idx_.data(), m), index_bits_, {rec, ib});
    std::byte* v = rec + ib;
    switch (values_) {
      case topk_values::fp16:
        for (std::size_t j = 0; j < m; ++j) store_le<std::uint16_t>(v + 2 * j, detail::f16_saturate(x[idx_[j]]));
        v += 2 * m;
        break;
      case topk_values::bf16:
        for (std::size_t j = 0; j < m; ++j) store_le<std::uint16_t>(v + 2 * j, detail::bf16_saturate(x[idx_[j]]));
        v += 2 * m;
        break;
      case topk_values::f32:
        for (std::size_t j = 0; j < m; ++j) store_le<float>(v + 4 * j, x[idx_[j]]);
        v += 4 * m;
        break;
      case topk_values::q2:
      case topk_values::q4:
      case topk_values::q8: {
        float lo = x[idx_[0]], hi = lo;
        for (std::size_t j = 1; j < m; ++j) {
          lo = std::min(lo, x[idx_[j]]);
          hi = std::max(hi, x[idx_[j]]);
        }
        lo += 0.0f;  // folds -0 into +0: ranges on the wire are never -0
        hi += 0.0f;
        const q_grid g(lo, hi, q);
        for (std::size_t j = 0; j < m; ++j) codes_[j] = g.code(x[idx_[j]], q);
        store_le<float>(v, lo);
        store_le<float>(v + 4, hi);
        pack_bits<std::uint32_t>(std::span(codes_.data(), m), q, {v + 8, packed_bytes(m, q)});
        v += 8 + packed_bytes(m, q);
        break;
      }
    }
    rec = v;
  }
  DTRAIN_ASSERT(rec == body.data() + body.size());
}

status topk_codec::decode_body(std::span<const std::byte>, std::span<const std::byte> body, std::span<float> out,
                               bool accumulate, float weight) const {
  const std::size_t n = out.size();
  const unsigned q = detail::topk_q_bits(values_);
  // Pass 1: validate every record; nothing is written until the whole body passed.
  std::size_t off = 0;
  for (std::size_t c0 = 0; c0 < n; c0 += chunk_) {
    const std::size_t len = std::min<std::size_t>(chunk_, n - c0);
    const std::size_t m = std::min<std::size_t>(k_, len);
    const std::size_t ib = packed_bytes(m, index_bits_);
    if (!detail::sparse_indices_valid(body.subspan(off, ib), m, index_bits_, len))
      return data_loss("topk payload: chunk " + std::to_string(c0 / chunk_) +
                       " has an index out of range, out of order, repeated, or non-zero padding");
    const std::byte* v = body.data() + off + ib;
    bool ok = true;
    switch (values_) {
      case topk_values::fp16:
        for (std::size_t j = 0; j < m; ++j) ok &= is_finite_f16(load_le<std::uint16_t>(v + 2 * j));
        break;
      case topk_values::bf16:
        for (std::size_t j = 0; j < m; ++j) ok &= is_finite_bf16(load_le<std::uint16_t>(v + 2 * j));
        break;
      case topk_values::f32:
        for (std::size_t j = 0; j < m; ++j) ok &= is_finite_bits(load_le<float>(v + 4 * j));
        break;
      default: {
        const float lo = load_le<float>(v), hi = load_le<float>(v + 4);
        const std::span<const std::byte> codes(v + 8, packed_bytes(m, q));
        ok = is_finite_bits(lo) && is_finite_bits(hi) && lo <= hi && padding_is_zero(codes, m, q);
        // A constant chunk (lo == hi) is always encoded with all-zero codes.
        if (ok && lo == hi)
          for (std::byte b : codes) ok &= b == std::byte{0};
        break;
      }
    }
    if (!ok)
      return data_loss("topk payload: chunk " + std::to_string(c0 / chunk_) +
                       " holds a non-finite value or an invalid q-bit range");
    off += record_bytes(len);
  }
  // Pass 2: write.
  if (!accumulate) std::fill(out.begin(), out.end(), 0.0f);
  off = 0;
  for (std::size_t c0 = 0; c0 < n; c0 += chunk_) {
    const std::size_t len = std::min<std::size_t>(chunk_, n - c0);
    const std::size_t m = std::min<std::size_t>(k_, len);
    const std::size_t ib = packed_bytes(m, index_bits_);
    const std::byte* v = body.data() + off + ib;
    float* o = out.data() + c0;
    auto put = [&](std::uint32_t i, float val) {
      if (accumulate) {
        o[i] += weight * val;
      } else {
        o[i] = val;
      }
    };
    const auto idx_bytes = body.subspan(off, ib);
    switch (values_) {
      case topk_values::fp16:
        detail::for_each_sparse_index(idx_bytes, m, index_bits_, [&](std::size_t j, std::uint32_t i) {
          put(i, f16_bits_to_f32(load_le<std::uint16_t>(v + 2 * j)));
        });
        break;
      case topk_values::bf16:
        detail::for_each_sparse_index(idx_bytes, m, index_bits_, [&](std::size_t j, std::uint32_t i) {
          put(i, bf16_bits_to_f32(load_le<std::uint16_t>(v + 2 * j)));
        });
        break;
      case topk_values::f32:
        detail::for_each_sparse_index(idx_bytes, m, index_bits_,
                                      [&](std::size_t j, std::uint32_t i) { put(i, load_le<float>(v + 4 * j)); });
        break;
      default: {
        const q_grid g(load_le<float>(v), load_le<float>(v + 4), q);
        const std::span<const std::byte> codes(v + 8, packed_bytes(m, q));
        detail::for_each_sparse_index(idx_bytes, m, index_bits_, [&](std::size_t j, std::uint32_t i) {
          // Codes are read one at a time: q in {2, 4, 8} never straddles a byte.
          const unsigned c = (static_cast<unsigned>(codes[j * q / 8]) >> (j * q % 8)) & ((1u << q) - 1);
          put(i, g.value(c));
        });
        break;
      }
    }
    off += record_bytes(len);
  }
  return {};
}

}  // namespace dtrain::codec
