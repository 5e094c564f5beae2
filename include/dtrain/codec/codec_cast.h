// dtrain/codec/codec_cast.h: the element-cast codecs: identity (fp32 as is), fp16 and
// bf16 (round to nearest even). Body: n little-endian elements. No parameters.
// Summable: aligned values with no scale, so partial sums add element by element.
#pragma once

#include <memory>

#include "dtrain/codec/payload.h"
#include "dtrain/codec/spec.h"
#include "dtrain/core/dtype.h"

namespace dtrain::codec {

class cast_codec final : public basic_codec {
 public:
  /// @param to  f32 (identity), f16 or bf16.
  explicit cast_codec(dtype to) noexcept : to_(to) {}

  codec_id id() const noexcept override {
    return to_ == dtype::f32 ? codec_id::identity : to_ == dtype::f16 ? codec_id::fp16 : codec_id::bf16;
  }
  std::string spec() const override { return std::string(name()); }
  bool summable() const noexcept override { return true; }

  static result<std::unique_ptr<codec>> from_spec(spec_args& a, dtype to);
  static result<std::unique_ptr<codec>> from_params(std::span<const std::byte> params, std::uint64_t count,
                                                    dtype to);

 protected:
  std::size_t params_bytes() const noexcept override { return 0; }
  void write_params(byte_writer&) const noexcept override {}
  status check_params(std::span<const std::byte>, std::uint64_t) const override { return {}; }
  std::size_t body_bytes(std::size_t n) const noexcept override { return n * dtype_size(to_); }
  void encode_body(std::span<const float> in, std::span<std::byte> body) override;
  status decode_body(std::span<const std::byte> params, std::span<const std::byte> body, std::span<float> out,
                     bool accumulate, float weight) const override;

 private:
  dtype to_;
};

}  // namespace dtrain::codec
