// dtrain/codec/codec_fp4.h: FP4 E3M0 (sign + 3 exponent bits, values 0 and +-a 2^-6 ..
// +-a) with one f32 scale a = max |x| per block, after Streaming DiLoCo (arXiv 2501.18512).
// Wire format and error bounds: docs/codecs/quantizers.md.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "dtrain/codec/payload.h"
#include "dtrain/codec/spec.h"

namespace dtrain::codec {

/// FP4 E3M0 codec. Body: ceil(n/B) f32 block scales a, then n nibbles (pack_bits 4):
/// nibble = sign << 3 | e; e = 0 is 0, e = 1..7 is +-a 2^(e-7). Each |x| goes to the
/// nearest magnitude in linear value (ties to the larger; below a 2^-7 to 0), decided
/// by exact comparisons. Nibble 8 (-0) is never written and is rejected (data_loss).
/// Not summable: scales differ between peers.
class fp4_codec final : public basic_codec {
 public:
  static constexpr std::uint32_t max_block = 65536;

  /// @pre 1 <= block <= max_block.
  explicit fp4_codec(std::uint32_t block) noexcept;

  codec_id id() const noexcept override { return codec_id::fp4; }
  std::string spec() const override { return "fp4:block=" + std::to_string(block_); }
  bool summable() const noexcept override { return false; }

  std::uint32_t block() const noexcept { return block_; }

  /// "fp4:block=128" (key optional, block 1..65536). Errors: invalid_argument.
  static result<std::unique_ptr<codec>> from_spec(spec_args& a);
  /// Decoder for a payload's parameters (block u32). Errors: data_loss when out of range.
  static result<std::unique_ptr<codec>> from_params(std::span<const std::byte> params, std::uint64_t count);

 protected:
  std::size_t params_bytes() const noexcept override { return 4; }
  void write_params(byte_writer& w) const noexcept override { w.put<std::uint32_t>(block_); }
  status check_params(std::span<const std::byte> params, std::uint64_t count) const override;
  std::size_t body_bytes(std::size_t n) const noexcept override;
  void encode_body(std::span<const float> in, std::span<std::byte> body) override;
  status decode_body(std::span<const std::byte> params, std::span<const std::byte> body, std::span<float> out,
                     bool accumulate, float weight) const override;

 private:
  std::uint32_t block_;
};

}  // namespace dtrain::codec
