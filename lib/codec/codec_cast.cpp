// identity / fp16 / bf16 codecs over the bulk converters in core/convert.h.
#include "dtrain/codec/codec_cast.h"

#include <cstring>
#include <vector>

#include "dtrain/core/convert.h"

namespace dtrain::codec {
namespace {
// Payload bytes may sit at any alignment and the host must be little-endian (asserted
// in the build); the converters want uint16_t spans, so view aligned bodies in place and
// copy unaligned ones in blocks.
static_assert(std::endian::native == std::endian::little, "dtrain payloads assume a little-endian host");
constexpr std::size_t block = 4096;
}  // namespace

result<std::unique_ptr<codec>> cast_codec::from_spec(spec_args& a, dtype to) {
  DTRAIN_RETURN_IF_ERROR(a.finish());
  return std::unique_ptr<codec>(std::make_unique<cast_codec>(to));
}

result<std::unique_ptr<codec>> cast_codec::from_params(std::span<const std::byte> params, std::uint64_t,
                                                       dtype to) {
  if (!params.empty()) return data_loss("cast codec payload carries unexpected parameters");
  return std::unique_ptr<codec>(std::make_unique<cast_codec>(to));
}

void cast_codec::encode_body(std::span<const float> in, std::span<std::byte> body) {
  if (to_ == dtype::f32) {
    if (!in.empty()) std::memcpy(body.data(), in.data(), in.size_bytes());
    return;
  }
  auto convert = to_ == dtype::f16 ? f32_to_f16 : f32_to_bf16;
  if (reinterpret_cast<std::uintptr_t>(body.data()) % alignof(std::uint16_t) == 0) {
    convert(in, {reinterpret_cast<std::uint16_t*>(body.data()), in.size()});
    return;
  }
  std::uint16_t tmp[block];
  for (std::size_t i = 0; i < in.size(); i += block) {
    const std::size_t m = std::min(block, in.size() - i);
    convert(in.subspan(i, m), {tmp, m});
    std::memcpy(body.data() + 2 * i, tmp, 2 * m);
  }
}

status cast_codec::decode_body(std::span<const std::byte>, std::span<const std::byte> body, std::span<float> out,
                               bool accumulate, float weight) const {
  const std::size_t n = out.size();
  if (to_ == dtype::f32) {
    if (!accumulate) {
      if (n) std::memcpy(out.data(), body.data(), n * 4);
      return {};
    }
    float tmp[block];
    for (std::size_t i = 0; i < n; i += block) {
      const std::size_t m = std::min(block, n - i);
      std::memcpy(tmp, body.data() + 4 * i, 4 * m);  // the body may be unaligned
      for (std::size_t j = 0; j < m; ++j) out[i + j] += weight * tmp[j];
    }
    return {};
  }
  auto to_f32 = to_ == dtype::f16 ? f16_to_f32 : bf16_to_f32;
  auto acc_f32 = to_ == dtype::f16 ? f16_accumulate : bf16_accumulate;
  auto run = [&](std::span<const std::uint16_t> src, std::span<float> dst) {
    accumulate ? acc_f32(src, dst, weight) : to_f32(src, dst);
  };
  if (reinterpret_cast<std::uintptr_t>(body.data()) % alignof(std::uint16_t) == 0) {
    run({reinterpret_cast<const std::uint16_t*>(body.data()), n}, out);
    return {};
  }
  std::uint16_t tmp[block];
  for (std::size_t i = 0; i < n; i += block) {
    const std::size_t m = std::min(block, n - i);
    std::memcpy(tmp, body.data() + 2 * i, 2 * m);
    run({tmp, m}, out.subspan(i, m));
  }
  return {};
}

}  // namespace dtrain::codec
