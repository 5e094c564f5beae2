// dtrain/codec/codec_randomk.h: random-k with implicit indices: per chunk k positions
// drawn from (seed, round, chunk), only values travel (docs/codecs/sparse.md).
// Summable: peers sharing seed and round send the same support.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "dtrain/codec/payload.h"
#include "dtrain/codec/spec.h"

namespace dtrain::codec {

/// How randomk stores its values.
enum class randomk_values : std::uint8_t {
  f32 = 0,   ///< exact (rescaled values saturate at +-FLT_MAX)
  fp16 = 1,  ///< IEEE half, RNE, saturating at +-65504
};

class randomk_codec final : public basic_codec {
 public:
  /// @pre 1 <= chunk <= 65536, 1 <= k <= chunk (from_spec checks and reports these).
  /// `round` is the round the next encode() uses.
  randomk_codec(std::uint32_t chunk, std::uint32_t k, std::uint64_t seed, randomk_values values, bool rescale,
                std::uint64_t round = 0);

  codec_id id() const noexcept override { return codec_id::randomk; }
  /// "randomk:chunk=C,k=K,seed=S,rescale=R,values=V" (the round is state, not spec).
  std::string spec() const override;
  bool summable() const noexcept override { return true; }

  /// The round the next encode() uses; every successful encode() advances it by one.
  std::uint64_t round() const noexcept { return round_; }
  /// Aligns the round with other peers (e.g. to the outer step) so that encoders sharing
  /// the seed pick the same support. Decoders read the round from the payload.
  void set_round(std::uint64_t r) noexcept { round_ = r; }

  /// The support of one chunk: the min(k, len) indices (ascending, < len) chosen for chunk
  /// `chunk_index` in `round` under `seed`, by Floyd's sampling on counter_rng(seed,
  /// round) words from chunk_index * 2^32 on. Returns how many were written.
  /// @pre 1 <= len <= 65536, out.size() >= min(k, len).
  static std::size_t support(std::uint64_t seed, std::uint64_t round, std::uint64_t chunk_index, std::size_t len,
                             std::size_t k, std::span<std::uint32_t> out) noexcept;

  /// Spec keys chunk (1..65536, default 4096), k (1..chunk, default 64), seed (u64,
  /// default 0), rescale (0|1, default 0: values times len/k when 1, unbiased), values
  /// (f32|fp16, default f32). Errors: invalid_argument.
  static result<std::unique_ptr<codec>> from_spec(spec_args& a);
  /// Decoder for a payload's parameters. Errors: data_loss for invalid parameters.
  static result<std::unique_ptr<codec>> from_params(std::span<const std::byte> params, std::uint64_t count);

 protected:
  std::size_t params_bytes() const noexcept override { return 26; }
  void write_params(byte_writer& w) const noexcept override;
  /// Compares chunk, k, seed, values and rescale; any round decodes.
  status check_params(std::span<const std::byte> params, std::uint64_t count) const override;
  std::size_t body_bytes(std::size_t n) const noexcept override;
  void encode_body(std::span<const float> in, std::span<std::byte> body) override;
  status decode_body(std::span<const std::byte> params, std::span<const std::byte> body, std::span<float> out,
                     bool accumulate, float weight) const override;

 private:
  std::uint32_t chunk_, k_;
  std::uint64_t seed_;
  randomk_values values_;
  bool rescale_;
  std::uint64_t round_;
};

}  // namespace dtrain::codec
