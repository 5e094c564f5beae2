// dtrain/codec/codec_blockwise.h: blockwise absmax quantization: one f32 scale (the
// block's max |x|) per block of B elements and 8-bit or 4-bit signed codes.
// Wire format and error bounds: docs/codecs/quantizers.md.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "dtrain/codec/payload.h"
#include "dtrain/codec/spec.h"

namespace dtrain::codec {

/// Blockwise absmax codec. Body: ceil(n/B) f32 scales a, then the codes: 8-bit as n
/// int8 bytes in [-127, 127], 4-bit as packed two's-complement nibbles in [-7, 7].
/// Decode: code * (a / M), M = 127 or 7. Codes -128 / -8 are never written and are
/// rejected (data_loss). Not summable: scales differ between peers.
class blockwise_codec final : public basic_codec {
 public:
  static constexpr std::uint32_t max_block = 65536;

  /// @pre bits is 4 or 8; 1 <= block <= max_block.
  blockwise_codec(unsigned bits, std::uint32_t block) noexcept;

  codec_id id() const noexcept override { return codec_id::blockwise; }
  std::string spec() const override;
  bool summable() const noexcept override { return false; }

  unsigned bits() const noexcept { return bits_; }
  std::uint32_t block() const noexcept { return block_; }

  /// "blockwise:bits=8,block=256" (keys optional; bits 4 or 8, block 1..65536).
  /// Errors: invalid_argument for unknown keys or out-of-range values.
  static result<std::unique_ptr<codec>> from_spec(spec_args& a);
  /// Decoder for a payload's parameters (bits u8, block u32). Errors: data_loss when
  /// they are out of range.
  static result<std::unique_ptr<codec>> from_params(std::span<const std::byte> params, std::uint64_t count);

 protected:
  std::size_t params_bytes() const noexcept override { return 5; }
  void write_params(byte_writer& w) const noexcept override;
  status check_params(std::span<const std::byte> params, std::uint64_t count) const override;
  std::size_t body_bytes(std::size_t n) const noexcept override;
  void encode_body(std::span<const float> in, std::span<std::byte> body) override;
  status decode_body(std::span<const std::byte> params, std::span<const std::byte> body, std::span<float> out,
                     bool accumulate, float weight) const override;

 private:
  unsigned bits_;
  std::uint32_t block_;
};

}  // namespace dtrain::codec
