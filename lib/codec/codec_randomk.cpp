// Random-k codec: Floyd's sampling over a counter-based RNG, so encoder and decoder
// derive the same support from (seed, round, chunk) and no index is sent.
#include "dtrain/codec/codec_randomk.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <string>

#include "dtrain/codec/codec_topk.h"
#include "dtrain/core/dtype.h"
#include "dtrain/core/rng.h"

namespace dtrain::codec {
namespace {

constexpr std::uint32_t max_chunk = 65536;

struct randomk_params {
  std::uint32_t chunk = 0, k = 0;
  std::uint64_t seed = 0, round = 0;
  std::uint8_t values = 0, rescale = 0;
};

bool parse_params(std::span<const std::byte> p, randomk_params& out) {
  byte_reader r(p);
  out.chunk = r.get<std::uint32_t>();
  out.k = r.get<std::uint32_t>();
  out.seed = r.get<std::uint64_t>();
  out.round = r.get<std::uint64_t>();
  out.values = r.get<std::uint8_t>();
  out.rescale = r.get<std::uint8_t>();
  return r.ok() && r.remaining() == 0 && out.chunk >= 1 && out.chunk <= max_chunk && out.k >= 1 &&
         out.k <= out.chunk && out.values <= 1 && out.rescale <= 1;
}

const char* values_name(randomk_values v) { return v == randomk_values::f32 ? "f32" : "fp16"; }

// Rescale factor len / k' as one float division (exactly rounded, so every machine agrees).
float rescale_factor(bool rescale, std::size_t len, std::size_t m) {
  return rescale ? static_cast<float>(len) / static_cast<float>(m) : 1.0f;
}

// The support of one chunk as a bitmap (8 KiB on the stack; no allocation).
struct support_bitmap {
  std::uint64_t bits[max_chunk / 64];

  void fill(std::uint64_t seed, std::uint64_t round, std::uint64_t chunk_index, std::size_t len,
            std::size_t m) noexcept {
    const std::size_t words = (len + 63) / 64;
    if (m == len) {
      std::fill(bits, bits + words, ~std::uint64_t{0});
      if (len % 64) bits[words - 1] = (std::uint64_t{1} << (len % 64)) - 1;
      return;
    }
    std::fill(bits, bits + words, std::uint64_t{0});
    // Floyd: for j = len-m .. len-1 draw t in [0, j]; take t, or j if t is taken. The
    // result is a uniform m-subset of [0, len).
    counter_rng rng(seed, round, chunk_index << 32);
    for (std::size_t j = len - m; j < len; ++j) {
      const std::uint32_t t = rng.next_below(static_cast<std::uint32_t>(j + 1));
      const bool taken = (bits[t / 64] >> (t % 64)) & 1u;
      const std::size_t pick = taken ? j : t;
      bits[pick / 64] |= std::uint64_t{1} << (pick % 64);
    }
  }
  // fn(j, index) for the set bits in ascending order.
  template <class Fn>
  void for_each(std::size_t len, Fn&& fn) const {
    std::size_t j = 0;
    for (std::size_t w = 0; w < (len + 63) / 64; ++w) {
      std::uint64_t b = bits[w];
      while (b) {
        fn(j++, static_cast<std::uint32_t>(w * 64 + static_cast<unsigned>(std::countr_zero(b))));
        b &= b - 1;
      }
    }
  }
};

}  // namespace

std::size_t randomk_codec::support(std::uint64_t seed, std::uint64_t round, std::uint64_t chunk_index,
                                   std::size_t len, std::size_t k, std::span<std::uint32_t> out) noexcept {
  DTRAIN_ASSERT(len >= 1 && len <= max_chunk);
  const std::size_t m = std::min(k, len);
  DTRAIN_ASSERT(out.size() >= m);
  support_bitmap bm;
  bm.fill(seed, round, chunk_index, len, m);
  std::size_t o = 0;
  bm.for_each(len, [&](std::size_t, std::uint32_t i) { out[o++] = i; });
  DTRAIN_ASSERT(o == m);
  return m;
}

randomk_codec::randomk_codec(std::uint32_t chunk, std::uint32_t k, std::uint64_t seed, randomk_values values,
                             bool rescale, std::uint64_t round)
    : chunk_(chunk), k_(k), seed_(seed), values_(values), rescale_(rescale), round_(round) {
  DTRAIN_ASSERT(chunk >= 1 && chunk <= max_chunk && k >= 1 && k <= chunk);
}

std::string randomk_codec::spec() const {
  return "randomk:chunk=" + std::to_string(chunk_) + ",k=" + std::to_string(k_) + ",seed=" + std::to_string(seed_) +
         ",rescale=" + (rescale_ ? "1" : "0") + ",values=" + values_name(values_);
}

result<std::unique_ptr<codec>> randomk_codec::from_spec(spec_args& a) {
  auto chunk = a.get_uint("chunk", 4096, 1, max_chunk);
  if (!chunk.ok()) return chunk.status();
  auto k = a.get_uint("k", 64, 1, max_chunk);
  if (!k.ok()) return k.status();
  auto seed = a.get_uint("seed", 0, 0, UINT64_MAX);
  if (!seed.ok()) return seed.status();
  auto rescale = a.get_uint("rescale", 0, 0, 1);
  if (!rescale.ok()) return rescale.status();
  auto v = a.get_choice("values", "f32", {"f32", "fp16"});
  if (!v.ok()) return v.status();
  DTRAIN_RETURN_IF_ERROR(a.finish());
  if (*k > *chunk)
    return invalid_argument("randomk: k = " + std::to_string(*k) + " exceeds chunk = " + std::to_string(*chunk));
  return std::unique_ptr<codec>(std::make_unique<randomk_codec>(
      static_cast<std::uint32_t>(*chunk), static_cast<std::uint32_t>(*k), *seed,
      *v == "f32" ? randomk_values::f32 : randomk_values::fp16, *rescale == 1));
}

result<std::unique_ptr<codec>> randomk_codec::from_params(std::span<const std::byte> params, std::uint64_t) {
  randomk_params p;
  if (!parse_params(params, p)) return data_loss("randomk payload has invalid parameters");
  return std::unique_ptr<codec>(std::make_unique<randomk_codec>(
      p.chunk, p.k, p.seed, static_cast<randomk_values>(p.values), p.rescale == 1, p.round));
}

void randomk_codec::write_params(byte_writer& w) const noexcept {
  w.put<std::uint32_t>(chunk_);
  w.put<std::uint32_t>(k_);
  w.put<std::uint64_t>(seed_);
  w.put<std::uint64_t>(round_);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(values_));
  w.put<std::uint8_t>(rescale_ ? 1 : 0);
}

status randomk_codec::check_params(std::span<const std::byte> params, std::uint64_t) const {
  randomk_params p;
  if (!parse_params(params, p)) return data_loss("randomk payload has invalid parameters");
  if (p.chunk != chunk_ || p.k != k_ || p.seed != seed_ || p.values != static_cast<std::uint8_t>(values_) ||
      p.rescale != (rescale_ ? 1 : 0))
    return failed_precondition("randomk payload parameters (chunk=" + std::to_string(p.chunk) + ",k=" +
                               std::to_string(p.k) + ",seed=" + std::to_string(p.seed) + ",rescale=" +
                               std::to_string(p.rescale) + ") differ from this decoder's (" + spec() + ")");
  return {};
}

std::size_t randomk_codec::body_bytes(std::size_t n) const noexcept {
  const std::size_t full = n / chunk_, tail = n % chunk_;
  const std::size_t vals = full * k_ + std::min<std::size_t>(k_, tail);
  return vals * (values_ == randomk_values::f32 ? 4 : 2);
}

void randomk_codec::encode_body(std::span<const float> in, std::span<std::byte> body) {
  const std::size_t n = in.size();
  const bool f32 = values_ == randomk_values::f32;
  support_bitmap bm;
  std::byte* v = body.data();
  for (std::size_t c0 = 0, ci = 0; c0 < n; c0 += chunk_, ++ci) {
    const std::size_t len = std::min<std::size_t>(chunk_, n - c0);
    const std::size_t m = std::min<std::size_t>(k_, len);
    const float s = rescale_factor(rescale_, len, m);
    const float* x = in.data() + c0;
    bm.fill(seed_, round_, ci, len, m);
    bm.for_each(len, [&](std::size_t j, std::uint32_t i) {
      float val = x[i] * s;
      if (!is_finite_bits(val)) val = val > 0 ? FLT_MAX : -FLT_MAX;
      if (f32) {
        store_le<float>(v + 4 * j, val);
      } else {
        store_le<std::uint16_t>(v + 2 * j, detail::f16_saturate(val));
      }
    });
    v += m * (f32 ? 4 : 2);
  }
  DTRAIN_ASSERT(v == body.data() + body.size());
  ++round_;
}

status randomk_codec::decode_body(std::span<const std::byte> params, std::span<const std::byte> body,
                                  std::span<float> out, bool accumulate, float weight) const {
  randomk_params p;
  if (!parse_params(params, p)) return data_loss("randomk payload has invalid parameters");
  const std::size_t n = out.size();
  const bool f32 = values_ == randomk_values::f32;
  const std::size_t count = body.size() / (f32 ? 4 : 2);
  for (std::size_t j = 0; j < count; ++j) {
    const bool ok = f32 ? is_finite_bits(load_le<float>(body.data() + 4 * j))
                        : (load_le<std::uint16_t>(body.data() + 2 * j) & 0x7c00u) != 0x7c00u;
    if (!ok) return data_loss("randomk payload holds a non-finite value at position " + std::to_string(j));
  }
  if (!accumulate) std::fill(out.begin(), out.end(), 0.0f);
  support_bitmap bm;
  const std::byte* v = body.data();
  for (std::size_t c0 = 0, ci = 0; c0 < n; c0 += chunk_, ++ci) {
    const std::size_t len = std::min<std::size_t>(chunk_, n - c0);
    const std::size_t m = std::min<std::size_t>(k_, len);
    bm.fill(p.seed, p.round, ci, len, m);
    float* o = out.data() + c0;
    bm.for_each(len, [&](std::size_t j, std::uint32_t i) {
      const float val = f32 ? load_le<float>(v + 4 * j) : f16_bits_to_f32(load_le<std::uint16_t>(v + 2 * j));
      if (accumulate) {
        o[i] += weight * val;
      } else {
        o[i] = val;
      }
    });
    v += m * (f32 ? 4 : 2);
  }
  return {};
}

}  // namespace dtrain::codec
