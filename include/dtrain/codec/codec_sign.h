// dtrain/codec/codec_sign.h: scaled sign compression (EF-signSGD, arXiv 1901.09847):
// per block one f32 scale = mean |x| and one sign bit per element; decodes to +-scale.
// Wire format: docs/codecs/sparse.md. Not summable: the scale is data dependent.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "dtrain/codec/payload.h"
#include "dtrain/codec/spec.h"

namespace dtrain::codec {

class sign_codec final : public basic_codec {
 public:
  /// @param block  elements per scale; 0 = one scale for the whole tensor.
  explicit sign_codec(std::uint32_t block) noexcept : block_(block) {}

  codec_id id() const noexcept override { return codec_id::sign; }
  /// "sign:block=B".
  std::string spec() const override;
  bool summable() const noexcept override { return false; }
  std::uint32_t block() const noexcept { return block_; }

  /// Spec key block (0..2^31, default 0 = whole tensor). Errors: invalid_argument.
  static result<std::unique_ptr<codec>> from_spec(spec_args& a);
  /// Decoder for a payload's parameters. Errors: data_loss for invalid parameters.
  static result<std::unique_ptr<codec>> from_params(std::span<const std::byte> params, std::uint64_t count);

 protected:
  std::size_t params_bytes() const noexcept override { return 4; }
  void write_params(byte_writer& w) const noexcept override;
  status check_params(std::span<const std::byte> params, std::uint64_t count) const override;
  std::size_t body_bytes(std::size_t n) const noexcept override;
  void encode_body(std::span<const float> in, std::span<std::byte> body) override;
  status decode_body(std::span<const std::byte> params, std::span<const std::byte> body, std::span<float> out,
                     bool accumulate, float weight) const override;

 private:
  std::size_t blocks(std::size_t n) const noexcept;
  std::size_t block_len(std::size_t n) const noexcept { return block_ ? block_ : n; }

  std::uint32_t block_;
};

}  // namespace dtrain::codec
