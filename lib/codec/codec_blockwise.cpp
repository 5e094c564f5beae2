// Blockwise absmax codec: per-block integer absmax scan, float code loop, nibble packing.
#include "dtrain/codec/codec_blockwise.h"

#include <bit>
#include <cstring>

#include "dtrain/codec/detail/quant_isa.h"
#include "dtrain/core/bitpack.h"
#include "dtrain/core/dtype.h"
#include "quant_kernels.h"


namespace dtrain::codec {
namespace {

constexpr std::size_t chunk = 1024;

using detail::absmax_bits;

// Codes round_half_even(x * p * inv) as two's complement bytes. No clamp needed:
// |x| <= a and inv <= M/(a p) (1 + 2^-24) give |t| <= M (1 + 2^-23), which rounds to <= M.
QK_INLINE void quantize(const float* x, std::uint8_t* c, std::size_t m, float p, float inv) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    float t = (x[i] * p) * inv;
    t = (t + 0x1.8p23f) - 0x1.8p23f;
    c[i] = static_cast<std::uint8_t>(static_cast<int>(t));
  }
}

using detail::put_nibbles;

bool has_byte_0x80(const std::uint8_t* p, std::size_t m) noexcept {
  unsigned bad = 0;
  for (std::size_t i = 0; i < m; ++i) bad |= p[i] == 0x80u;
  return bad != 0;
}

bool has_nibble_8(const std::uint8_t* p, std::size_t m) noexcept {
  unsigned bad = 0;
  for (std::size_t i = 0; i < m; ++i) bad |= ((p[i] & 0x0fu) == 0x08u) | ((p[i] & 0xf0u) == 0x80u);
  return bad != 0;
}

template <bool Avx2>
QK_INLINE void k_encode(const float* in, std::size_t n, std::size_t block, unsigned bits, std::byte* body) noexcept {
  const std::size_t nblocks = (n + block - 1) / block;
  const int levels = bits == 8 ? 127 : 7;
  auto* codes = reinterpret_cast<std::uint8_t*>(body + 4 * nblocks);
  alignas(64) std::uint8_t tmp[chunk];
  for (std::size_t b = 0; b < nblocks; ++b) {
    const std::size_t s = b * block;
    const std::size_t m = std::min<std::size_t>(block, n - s);
    const float* x = in + s;
    const float a = std::bit_cast<float>(absmax_bits<Avx2>(x, m));
    store_le<float>(body + 4 * b, a);
    // Scaling by 2^64 is exact for a block whose |x| < 2^-100 and keeps levels/a finite.
    const float p = a < 0x1p-100f ? 0x1p64f : 1.0f;
    const float inv =
        a == 0.0f ? 0.0f : static_cast<float>(static_cast<double>(levels) / (static_cast<double>(a) * static_cast<double>(p)));
    for (std::size_t j = 0; j < m; j += chunk) {
      const std::size_t mm = std::min(chunk, m - j);
      if (bits == 8) {
        quantize(x + j, codes + s + j, mm, p, inv);
      } else {
        quantize(x + j, tmp, mm, p, inv);
        put_nibbles(codes, s + j, tmp, mm);
      }
    }
  }
}

void encode_portable(const float* in, std::size_t n, std::size_t block, unsigned bits, std::byte* body) noexcept {
  k_encode<false>(in, n, block, bits, body);
}
QK_AVX2 void encode_avx2(const float* in, std::size_t n, std::size_t block, unsigned bits, std::byte* body) noexcept {
  k_encode<QK_X86 != 0>(in, n, block, bits, body);
}

template <unsigned Bits>
QK_INLINE void k_decode(const std::uint8_t* codes, const std::byte* scales, std::size_t n, std::size_t block, float* out,
                        bool accumulate, float weight) noexcept {
  const std::size_t nblocks = (n + block - 1) / block;
  constexpr float levels = Bits == 8 ? 127.0f : 7.0f;
  for (std::size_t b = 0; b < nblocks; ++b) {
    const std::size_t s = b * block;
    const std::size_t m = std::min<std::size_t>(block, n - s);
    const float d = load_le<float>(scales + 4 * b) / levels;
    float* o = out + s;
    if constexpr (Bits == 8) {
      const std::uint8_t* c = codes + s;
      if (accumulate) {
        for (std::size_t i = 0; i < m; ++i) o[i] += weight * (static_cast<float>(static_cast<std::int8_t>(c[i])) * d);
      } else {
        for (std::size_t i = 0; i < m; ++i) o[i] = static_cast<float>(static_cast<std::int8_t>(c[i])) * d;
      }
    } else {
      float tab[16];
      for (int k = 0; k < 16; ++k) tab[k] = static_cast<float>(k < 8 ? k : k - 16) * d;
      std::size_t i = 0;
      // Leading odd position, then whole bytes (two values each), then a trailing low nibble.
      auto one = [&](std::size_t idx) {
        const std::size_t g = s + idx;
        const float v = tab[(codes[g >> 1] >> ((g & 1) * 4)) & 15u];
        if (accumulate) {
          o[idx] += weight * v;
        } else {
          o[idx] = v;
        }
      };
      if (m && (s & 1)) one(i++);
      const std::uint8_t* c = codes + ((s + i) >> 1);
      const std::size_t pairs = (m - i) / 2;
      float* oo = o + i;
      // Sign-extend each nibble arithmetically (same value as tab[]) so the loop vectorizes.
      if (accumulate) {
        for (std::size_t k = 0; k < pairs; ++k) {
          const std::int32_t lo = static_cast<std::int32_t>((c[k] & 15u) ^ 8u) - 8;
          const std::int32_t hi = static_cast<std::int32_t>((c[k] >> 4) ^ 8u) - 8;
          oo[2 * k] += weight * (static_cast<float>(lo) * d);
          oo[2 * k + 1] += weight * (static_cast<float>(hi) * d);
        }
      } else {
        for (std::size_t k = 0; k < pairs; ++k) {
          const std::int32_t lo = static_cast<std::int32_t>((c[k] & 15u) ^ 8u) - 8;
          const std::int32_t hi = static_cast<std::int32_t>((c[k] >> 4) ^ 8u) - 8;
          oo[2 * k] = static_cast<float>(lo) * d;
          oo[2 * k + 1] = static_cast<float>(hi) * d;
        }
      }
      i += 2 * pairs;
      if (i < m) one(i);
    }
  }
}

template <unsigned Bits>
void decode_portable(const std::uint8_t* codes, const std::byte* scales, std::size_t n, std::size_t block, float* out,
                     bool accumulate, float weight) noexcept {
  k_decode<Bits>(codes, scales, n, block, out, accumulate, weight);
}
template <unsigned Bits>
QK_AVX2 void decode_avx2(const std::uint8_t* codes, const std::byte* scales, std::size_t n, std::size_t block,
                         float* out, bool accumulate, float weight) noexcept {
  k_decode<Bits>(codes, scales, n, block, out, accumulate, weight);
}

}  // namespace

blockwise_codec::blockwise_codec(unsigned bits, std::uint32_t block) noexcept : bits_(bits), block_(block) {
  DTRAIN_ASSERT((bits == 4 || bits == 8) && block >= 1 && block <= max_block);
}

std::string blockwise_codec::spec() const {
  return "blockwise:bits=" + std::to_string(bits_) + ",block=" + std::to_string(block_);
}

result<std::unique_ptr<codec>> blockwise_codec::from_spec(spec_args& a) {
  auto bits = a.get_choice("bits", "8", {"8", "4"});
  if (!bits.ok()) return bits.status();
  auto block = a.get_uint("block", 256, 1, max_block);
  if (!block.ok()) return block.status();
  DTRAIN_RETURN_IF_ERROR(a.finish());
  return std::unique_ptr<codec>(
      std::make_unique<blockwise_codec>(*bits == "8" ? 8u : 4u, static_cast<std::uint32_t>(*block)));
}

result<std::unique_ptr<codec>> blockwise_codec::from_params(std::span<const std::byte> params, std::uint64_t) {
  if (params.size() != 5) return data_loss("blockwise payload parameters must be 5 bytes");
  const auto bits = static_cast<unsigned>(params[0]);
  const auto block = load_le<std::uint32_t>(params.data() + 1);
  if ((bits != 4 && bits != 8) || block < 1 || block > max_block)
    return data_loss("blockwise payload has invalid parameters");
  return std::unique_ptr<codec>(std::make_unique<blockwise_codec>(bits, block));
}

void blockwise_codec::write_params(byte_writer& w) const noexcept {
  w.put<std::uint8_t>(static_cast<std::uint8_t>(bits_));
  w.put<std::uint32_t>(block_);
}

status blockwise_codec::check_params(std::span<const std::byte> params, std::uint64_t) const {
  const auto bits = static_cast<unsigned>(params[0]);
  const auto block = load_le<std::uint32_t>(params.data() + 1);
  if ((bits != 4 && bits != 8) || block < 1 || block > max_block)
    return data_loss("blockwise payload has invalid parameters");
  if (bits != bits_ || block != block_)
    return failed_precondition("blockwise payload has bits=" + std::to_string(bits) + ",block=" +
                               std::to_string(block) + ", this decoder " + spec());
  return {};
}

std::size_t blockwise_codec::body_bytes(std::size_t n) const noexcept {
  const std::size_t nblocks = (n + block_ - 1) / block_;
  return 4 * nblocks + (bits_ == 8 ? n : packed_bytes(n, 4));
}

void blockwise_codec::encode_body(std::span<const float> in, std::span<std::byte> body) {
  (detail::active_quant_isa() == detail::quant_isa::avx2 ? encode_avx2 : encode_portable)(in.data(), in.size(), block_,
                                                                                         bits_, body.data());
}

status blockwise_codec::decode_body(std::span<const std::byte>, std::span<const std::byte> body,
                                    std::span<float> out, bool accumulate, float weight) const {
  const std::size_t n = out.size();
  const std::size_t nblocks = (n + block_ - 1) / block_;
  for (std::size_t b = 0; b < nblocks; ++b) {
    const auto bits = load_le<std::uint32_t>(body.data() + 4 * b);
    if (bits >= 0x7f800000u) return data_loss("blockwise payload has a negative or non-finite block scale");
  }
  const auto* codes = reinterpret_cast<const std::uint8_t*>(body.data() + 4 * nblocks);
  if (bits_ == 8) {
    if (has_byte_0x80(codes, n)) return data_loss("blockwise payload holds the int8 code -128, never encoded");
  } else {
    if (has_nibble_8(codes, packed_bytes(n, 4))) return data_loss("blockwise payload holds the 4-bit code -8, never encoded");
    if (!padding_is_zero({body.data() + 4 * nblocks, packed_bytes(n, 4)}, n, 4))
      return data_loss("blockwise payload has non-zero padding bits");
  }
  const bool avx2 = detail::active_quant_isa() == detail::quant_isa::avx2;
  if (bits_ == 8) {
    (avx2 ? decode_avx2<8> : decode_portable<8>)(codes, body.data(), n, block_, out.data(), accumulate, weight);
  } else {
    (avx2 ? decode_avx2<4> : decode_portable<4>)(codes, body.data(), n, block_, out.data(), accumulate, weight);
  }
  return {};
}

}  // namespace dtrain::codec
