// dtrain/codec/codec_minmax.h: uniform min-max quantization to q = 1..8 bits per
// element over the tensor's [min, max] range, rounding to nearest or stochastically.
// Wire format and error bounds: docs/codecs/quantizers.md.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "dtrain/codec/payload.h"
#include "dtrain/codec/spec.h"

namespace dtrain::codec {

enum class rounding_mode : std::uint8_t {
  nearest = 0,     ///< round half to even
  stochastic = 1,  ///< floor(v + u), u uniform in [0, 1) from a seeded counter RNG
};

/// Min-max q-bit codec. Body: f32 lo, f32 hi, then n codes of q bits (pack_bits).
/// Decode: code 0 -> lo, code L = 2^q - 1 -> hi exactly, code j -> lo + j (hi - lo) / L
/// rounded once to float. Not summable: every payload carries its own range.
class minmax_codec final : public basic_codec {
 public:
  /// @pre 1 <= bits <= 8. `seed` feeds stochastic rounding only; the RNG stream of the
  /// k-th encode (k = 0, 1, ...) of this instance is counter_rng(seed, k).
  minmax_codec(unsigned bits, rounding_mode rounding, std::uint64_t seed = 0) noexcept;

  codec_id id() const noexcept override { return codec_id::minmax; }
  std::string spec() const override;
  bool summable() const noexcept override { return false; }

  unsigned bits() const noexcept { return bits_; }
  rounding_mode rounding() const noexcept { return rounding_; }
  /// Number of successful encodes so far (the stream index of the next stochastic encode).
  std::uint64_t round() const noexcept { return round_; }

  /// "minmax:bits=8,rounding=nearest,seed=0" (all keys optional; bits in 1..8).
  /// Errors: invalid_argument for unknown keys or out-of-range values.
  static result<std::unique_ptr<codec>> from_spec(spec_args& a);
  /// Decoder for a payload's parameters (bits u8, rounding u8).
  /// Errors: data_loss for bits outside 1..8 or an unknown rounding byte.
  static result<std::unique_ptr<codec>> from_params(std::span<const std::byte> params, std::uint64_t count);

 protected:
  std::size_t params_bytes() const noexcept override { return 2; }
  void write_params(byte_writer& w) const noexcept override;
  status check_params(std::span<const std::byte> params, std::uint64_t count) const override;
  std::size_t body_bytes(std::size_t n) const noexcept override;
  void encode_body(std::span<const float> in, std::span<std::byte> body) override;
  status decode_body(std::span<const std::byte> params, std::span<const std::byte> body, std::span<float> out,
                     bool accumulate, float weight) const override;

 private:
  unsigned bits_;
  rounding_mode rounding_;
  std::uint64_t seed_;
  std::uint64_t round_ = 0;
};

}  // namespace dtrain::codec
