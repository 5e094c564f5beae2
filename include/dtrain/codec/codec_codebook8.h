// dtrain/codec/codec_codebook8.h: 8-bit codes with a 256-entry f32 codebook per tensor:
// uniform8 (bins of width 6 sigma / 256 around the mean, hivemind / PRIME) and
// quantile8 (buckets between sampled quantiles). Details: docs/codecs/quantizers.md.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dtrain/codec/payload.h"
#include "dtrain/codec/spec.h"

namespace dtrain::codec {

enum class codebook_kind : std::uint8_t {
  uniform = 0,   ///< codec_id::uniform8
  quantile = 1,  ///< codec_id::quantile8
};

/// Codebook codec. Body: 256 f32 codebook entries c_0..c_255, then n code bytes;
/// decode is x = c[code]. Non-empty bins decode to the mean of their members. No
/// parameters. Decoders reject non-finite codebooks, and for quantile8 a decreasing
/// one (data_loss). Not summable: every payload carries its own codebook.
class codebook8_codec final : public basic_codec {
 public:
  static constexpr std::size_t codebook_size = 256;
  /// Most elements quantile8 samples to place its boundaries.
  static constexpr std::size_t max_sample = 65536;

  explicit codebook8_codec(codebook_kind kind) noexcept : kind_(kind) {}

  codec_id id() const noexcept override {
    return kind_ == codebook_kind::uniform ? codec_id::uniform8 : codec_id::quantile8;
  }
  std::string spec() const override { return std::string(name()); }
  bool summable() const noexcept override { return false; }

  /// "uniform8" / "quantile8" (no keys). Errors: invalid_argument for any key.
  static result<std::unique_ptr<codec>> from_spec(spec_args& a, codebook_kind kind);
  /// Errors: data_loss when the payload carries parameters.
  static result<std::unique_ptr<codec>> from_params(std::span<const std::byte> params, std::uint64_t count,
                                                    codebook_kind kind);

 protected:
  std::size_t params_bytes() const noexcept override { return 0; }
  void write_params(byte_writer&) const noexcept override {}
  status check_params(std::span<const std::byte>, std::uint64_t) const override { return {}; }
  std::size_t body_bytes(std::size_t n) const noexcept override { return 4 * codebook_size + n; }
  void encode_body(std::span<const float> in, std::span<std::byte> body) override;
  status decode_body(std::span<const std::byte> params, std::span<const std::byte> body, std::span<float> out,
                     bool accumulate, float weight) const override;

 private:
  void encode_uniform(std::span<const float> in, std::uint8_t* codes, float* book) const;
  void encode_quantile(std::span<const float> in, std::uint8_t* codes, float* book);

  codebook_kind kind_;
  std::vector<float> sample_;  // quantile8 scratch, grows to at most max_sample
  std::vector<std::uint16_t> bucket_;  // quantile8 search table, 2^16 entries once n is large
};

}  // namespace dtrain::codec
