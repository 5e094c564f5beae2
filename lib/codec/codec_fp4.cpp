// FP4 E3M0 codec: exponent code from the bit distance to the first midpoint threshold,
// or seven exact threshold comparisons when the thresholds are not exact doublings.
#include "dtrain/codec/codec_fp4.h"

#include <bit>
#include <cstring>

#include "dtrain/codec/detail/quant_isa.h"
#include "dtrain/core/bitpack.h"
#include "quant_kernels.h"


namespace dtrain::codec {
namespace {

constexpr std::size_t chunk = 1024;

using detail::absmax_bits;

// Bits of the smallest float >= t (t >= 0, exact in double). For a float y >= 0,
// y >= t exactly when bits(y) >= the result, so the rounding decision is exact.
QK_INLINE std::uint32_t ceil_float_bits(double t) noexcept {
  const auto f = static_cast<float>(t);
  const auto b = std::bit_cast<std::uint32_t>(f);
  return static_cast<double>(f) < t ? b + 1 : b;
}

// e = number of thresholds <= |x|; nibble = sign << 3 | e, with the sign dropped for e = 0.
QK_INLINE void quantize(const float* x, std::uint8_t* c, std::size_t m, const std::uint32_t* th) noexcept {
  // Every threshold and every |x| bit pattern is below 2^31, so signed compares (which
  // SSE2/AVX2 have) give the unsigned order.
  std::int32_t t[7];
  for (int k = 0; k < 7; ++k) t[k] = static_cast<std::int32_t>(th[k]);
  for (std::size_t i = 0; i < m; ++i) {
    const std::uint32_t xb = std::bit_cast<std::uint32_t>(x[i]);
    const auto y = static_cast<std::int32_t>(xb & 0x7fffffffu);
    std::int32_t e = 0;
    for (int k = 0; k < 7; ++k) e += y >= t[k] ? 1 : 0;
    const std::int32_t s = e != 0 ? static_cast<std::int32_t>((xb >> 28) & 8u) : 0;
    c[i] = static_cast<std::uint8_t>(s | e);
  }
}

// Same codes as quantize() when th[k] = th[1] + (k-1) 2^23 for k = 1..6 (all of them
// normal floats, each twice the previous, exactly): then |x| >= th[k] for k >= 1 exactly
// when bits(|x|) - th[1] >= (k-1) 2^23, so e = 2 + min((bits - th[1]) >> 23, 5).
QK_INLINE void quantize_geometric(const float* x, std::uint8_t* c, std::size_t m, const std::uint32_t* th) noexcept {
  const auto t0 = static_cast<std::int32_t>(th[0]), t1 = static_cast<std::int32_t>(th[1]);
  for (std::size_t i = 0; i < m; ++i) {
    const std::uint32_t xb = std::bit_cast<std::uint32_t>(x[i]);
    const auto y = static_cast<std::int32_t>(xb & 0x7fffffffu);
    const std::int32_t d = y - t1;  // no overflow: both in [0, 2^31)
    std::int32_t q = d >> 23;
    q = q > 5 ? 5 : q;
    const std::int32_t e = d < 0 ? (y >= t0 ? 1 : 0) : 2 + q;
    const std::int32_t s = e != 0 ? static_cast<std::int32_t>((xb >> 28) & 8u) : 0;
    c[i] = static_cast<std::uint8_t>(s | e);
  }
}

using detail::put_nibbles;

bool has_nibble_8(const std::uint8_t* p, std::size_t m) noexcept {
  unsigned bad = 0;
  for (std::size_t i = 0; i < m; ++i) bad |= ((p[i] & 0x0fu) == 0x08u) | ((p[i] & 0xf0u) == 0x80u);
  return bad != 0;
}

template <bool Avx2>
QK_INLINE void k_encode(const float* inp, std::size_t n, std::size_t block_, std::byte* body) noexcept {

  const std::size_t nblocks = (n + block_ - 1) / block_;
  auto* codes = reinterpret_cast<std::uint8_t*>(body + 4 * nblocks);
  std::uint8_t tmp[chunk];
  for (std::size_t b = 0; b < nblocks; ++b) {
    const std::size_t s = b * block_;
    const std::size_t m = std::min<std::size_t>(block_, n - s);
    const float* x = inp + s;
    const std::uint32_t abits = absmax_bits<Avx2>(x, m);
    const float a = std::bit_cast<float>(abits);
    store_le<float>(body + 4 * b, a);
    // Thresholds a 2^-7 (0 vs a 2^-6) and the midpoints 0.75 a 2^(k-7), k = 2..7, exact in
    // double. For a = 0 every threshold is above the largest float, so every code is 0.
    std::uint32_t th[7];
    if (abits == 0) {
      for (auto& t : th) t = 0x7f800000u;
    } else {
      const double da = static_cast<double>(a);
      th[0] = ceil_float_bits(da * 0x1p-7);
      double mid = da * 3.0 * 0x1p-7;  // 0.75 a 2^-5, between a 2^-6 and a 2^-5
      for (int k = 1; k < 7; ++k, mid *= 2.0) th[k] = ceil_float_bits(mid);
    }
    bool geometric = abits != 0 && th[1] >= 0x00800000u;
    for (int k = 2; k < 7; ++k) geometric = geometric && th[k] == th[1] + (static_cast<std::uint32_t>(k - 1) << 23);
    for (std::size_t j = 0; j < m; j += chunk) {
      const std::size_t mm = std::min(chunk, m - j);
      if (geometric) {
        quantize_geometric(x + j, tmp, mm, th);
      } else {
        quantize(x + j, tmp, mm, th);
      }
      put_nibbles(codes, s + j, tmp, mm);
    }
  }
}

void encode_portable(const float* in, std::size_t n, std::size_t block, std::byte* body) noexcept {
  k_encode<false>(in, n, block, body);
}
QK_AVX2 void encode_avx2(const float* in, std::size_t n, std::size_t block, std::byte* body) noexcept {
  k_encode<QK_X86 != 0>(in, n, block, body);
}

}  // namespace

fp4_codec::fp4_codec(std::uint32_t block) noexcept : block_(block) {
  DTRAIN_ASSERT(block >= 1 && block <= max_block);
}

result<std::unique_ptr<codec>> fp4_codec::from_spec(spec_args& a) {
  auto block = a.get_uint("block", 128, 1, max_block);
  if (!block.ok()) return block.status();
  DTRAIN_RETURN_IF_ERROR(a.finish());
  return std::unique_ptr<codec>(std::make_unique<fp4_codec>(static_cast<std::uint32_t>(*block)));
}

result<std::unique_ptr<codec>> fp4_codec::from_params(std::span<const std::byte> params, std::uint64_t) {
  if (params.size() != 4) return data_loss("fp4 payload parameters must be 4 bytes");
  const auto block = load_le<std::uint32_t>(params.data());
  if (block < 1 || block > max_block) return data_loss("fp4 payload has an invalid block size");
  return std::unique_ptr<codec>(std::make_unique<fp4_codec>(block));
}

status fp4_codec::check_params(std::span<const std::byte> params, std::uint64_t) const {
  const auto block = load_le<std::uint32_t>(params.data());
  if (block < 1 || block > max_block) return data_loss("fp4 payload has an invalid block size");
  if (block != block_)
    return failed_precondition("fp4 payload has block=" + std::to_string(block) + ", this decoder " + spec());
  return {};
}

std::size_t fp4_codec::body_bytes(std::size_t n) const noexcept {
  return 4 * ((n + block_ - 1) / block_) + packed_bytes(n, 4);
}

void fp4_codec::encode_body(std::span<const float> in, std::span<std::byte> body) {
  (detail::active_quant_isa() == detail::quant_isa::avx2 ? encode_avx2 : encode_portable)(in.data(), in.size(), block_,
                                                                                         body.data());
}

status fp4_codec::decode_body(std::span<const std::byte>, std::span<const std::byte> body, std::span<float> out,
                              bool accumulate, float weight) const {
  const std::size_t n = out.size();
  const std::size_t nblocks = (n + block_ - 1) / block_;
  for (std::size_t b = 0; b < nblocks; ++b)
    if (load_le<std::uint32_t>(body.data() + 4 * b) >= 0x7f800000u)
      return data_loss("fp4 payload has a negative or non-finite block scale");
  std::span<const std::byte> packed = body.subspan(4 * nblocks);
  const auto* codes = reinterpret_cast<const std::uint8_t*>(packed.data());
  if (has_nibble_8(codes, packed.size())) return data_loss("fp4 payload holds nibble 8 (-0), never encoded");
  if (!padding_is_zero(packed, n, 4)) return data_loss("fp4 payload has non-zero padding bits");
  for (std::size_t b = 0; b < nblocks; ++b) {
    const std::size_t s = b * block_;
    const std::size_t m = std::min<std::size_t>(block_, n - s);
    const float a = load_le<float>(body.data() + 4 * b);
    float tab[16];
    tab[0] = tab[8] = 0.0f;
    float mag = a * 0x1p-6f;
    for (int e = 1; e < 8; ++e, mag *= 2.0f) {
      tab[e] = mag;
      tab[8 + e] = -mag;
    }
    tab[7] = a;  // exact even when a 2^-6 underflowed
    tab[15] = -a;
    float* o = out.data() + s;
    auto one = [&](std::size_t idx) {
      const std::size_t g = s + idx;
      const float v = tab[(codes[g >> 1] >> ((g & 1) * 4)) & 15u];
      if (accumulate) {
        o[idx] += weight * v;
      } else {
        o[idx] = v;
      }
    };
    std::size_t i = 0;
    if (m && (s & 1)) one(i++);
    const std::uint8_t* c = codes + ((s + i) >> 1);
    const std::size_t pairs = (m - i) / 2;
    float* oo = o + i;
    if (accumulate) {
      for (std::size_t k = 0; k < pairs; ++k) {
        oo[2 * k] += weight * tab[c[k] & 15u];
        oo[2 * k + 1] += weight * tab[c[k] >> 4];
      }
    } else {
      for (std::size_t k = 0; k < pairs; ++k) {
        oo[2 * k] = tab[c[k] & 15u];
        oo[2 * k + 1] = tab[c[k] >> 4];
      }
    }
    i += 2 * pairs;
    if (i < m) one(i);
  }
  return {};
}

}  // namespace dtrain::codec
