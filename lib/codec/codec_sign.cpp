// Scaled-sign codec: block scales from a fixed-order double sum of |x|, then one sign
// bit per element over the whole tensor.
#include "dtrain/codec/codec_sign.h"

#include <algorithm>
#include <bit>
#include <string>

#include "dtrain/core/bitpack.h"
#include "dtrain/core/dtype.h"

namespace dtrain::codec {
namespace {

constexpr std::uint64_t max_block = std::uint64_t{1} << 31;

// Mean |x| as an f32. The sum runs in double over 8 lanes (lane j adds elements j, j+8,
// ... in order) and the lanes combine as ((0+1)+(2+3))+((4+5)+(6+7)): a fixed order, so
// any vector width gives the same bits, and double keeps it accurate for long blocks.
inline double abs_d(float v) noexcept {
  return static_cast<double>(std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) & 0x7fffffffu));
}
float mean_abs(const float* x, std::size_t len) noexcept {
  double lane[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8)
    for (std::size_t j = 0; j < 8; ++j) lane[j] += abs_d(x[i + j]);
  for (std::size_t j = 0; i + j < len; ++j) lane[j] += abs_d(x[i + j]);
  const double sum = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  return static_cast<float>(sum / static_cast<double>(len));
}

// Sign bit for x < 0; -0 counts as non-negative (it decodes to +scale).
inline unsigned negative(float v) noexcept { return std::bit_cast<std::uint32_t>(v) > 0x80000000u ? 1u : 0u; }

bool parse_block(std::span<const std::byte> p, std::uint32_t& block) {
  byte_reader r(p);
  block = r.get<std::uint32_t>();
  return r.ok() && r.remaining() == 0 && block <= max_block;
}

}  // namespace

std::string sign_codec::spec() const { return "sign:block=" + std::to_string(block_); }

result<std::unique_ptr<codec>> sign_codec::from_spec(spec_args& a) {
  auto block = a.get_uint("block", 0, 0, max_block);
  if (!block.ok()) return block.status();
  DTRAIN_RETURN_IF_ERROR(a.finish());
  return std::unique_ptr<codec>(std::make_unique<sign_codec>(static_cast<std::uint32_t>(*block)));
}

result<std::unique_ptr<codec>> sign_codec::from_params(std::span<const std::byte> params, std::uint64_t) {
  std::uint32_t block = 0;
  if (!parse_block(params, block)) return data_loss("sign payload has invalid parameters");
  return std::unique_ptr<codec>(std::make_unique<sign_codec>(block));
}

void sign_codec::write_params(byte_writer& w) const noexcept { w.put<std::uint32_t>(block_); }

status sign_codec::check_params(std::span<const std::byte> params, std::uint64_t) const {
  std::uint32_t block = 0;
  if (!parse_block(params, block)) return data_loss("sign payload has invalid parameters");
  if (block != block_)
    return failed_precondition("sign payload has block=" + std::to_string(block) + ", this decoder " + spec());
  return {};
}

std::size_t sign_codec::blocks(std::size_t n) const noexcept {
  if (n == 0) return 0;
  return block_ ? (n + block_ - 1) / block_ : 1;
}

std::size_t sign_codec::body_bytes(std::size_t n) const noexcept { return 4 * blocks(n) + packed_bytes(n, 1); }

void sign_codec::encode_body(std::span<const float> in, std::span<std::byte> body) {
  const std::size_t n = in.size();
  const std::size_t nb = blocks(n), bl = block_len(n);
  for (std::size_t b = 0; b < nb; ++b) {
    const std::size_t start = b * bl;
    store_le<float>(body.data() + 4 * b, mean_abs(in.data() + start, std::min(bl, n - start)));
  }
  auto* s = reinterpret_cast<std::uint8_t*>(body.data() + 4 * nb);
  const float* x = in.data();
  const std::size_t full = n / 8;
  for (std::size_t i = 0; i < full; ++i) {
    unsigned byte = 0;
    for (unsigned j = 0; j < 8; ++j) byte |= negative(x[8 * i + j]) << j;
    s[i] = static_cast<std::uint8_t>(byte);
  }
  if (n % 8) {
    unsigned byte = 0;
    for (unsigned j = 0; j < n % 8; ++j) byte |= negative(x[8 * full + j]) << j;
    s[full] = static_cast<std::uint8_t>(byte);
  }
}

status sign_codec::decode_body(std::span<const std::byte>, std::span<const std::byte> body, std::span<float> out,
                               bool accumulate, float weight) const {
  const std::size_t n = out.size();
  const std::size_t nb = blocks(n), bl = block_len(n);
  const std::span<const std::byte> signs = body.subspan(4 * nb);
  if (!padding_is_zero(signs, n, 1)) return data_loss("sign payload has non-zero padding bits");
  auto bit = [&](std::size_t i) { return (static_cast<unsigned>(signs[i / 8]) >> (i % 8)) & 1u; };
  for (std::size_t b = 0; b < nb; ++b) {
    const float s = load_le<float>(body.data() + 4 * b);
    // Encoders write mean |x|: finite, sign bit clear (never -0).
    if (!is_finite_bits(s) || (std::bit_cast<std::uint32_t>(s) >> 31))
      return data_loss("sign payload: block " + std::to_string(b) + " has a negative or non-finite scale");
    if (s == 0.0f) {
      // An all-zero block has no negative element, so all its sign bits are 0.
      const std::size_t start = b * bl, end = std::min(n, start + bl);
      for (std::size_t i = start; i < end; ++i)
        if (bit(i)) return data_loss("sign payload: zero-scale block " + std::to_string(b) + " has a negative sign");
    }
  }
  for (std::size_t b = 0; b < nb; ++b) {
    const float s = load_le<float>(body.data() + 4 * b);
    const float v[2] = {s, -s};
    const std::size_t start = b * bl, end = std::min(n, start + bl);
    float* o = out.data();
    if (accumulate) {
      for (std::size_t i = start; i < end; ++i) o[i] += weight * v[bit(i)];
    } else {
      for (std::size_t i = start; i < end; ++i) o[i] = v[bit(i)];
    }
  }
  return {};
}

}  // namespace dtrain::codec
