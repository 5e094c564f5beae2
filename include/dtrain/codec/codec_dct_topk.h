// dtrain/codec/codec_dct_topk.h: DeMo-style compression (arXiv 2411.19870): orthonormal
// DCT-II per chunk, the k largest coefficients sent (fp16/f32/sign), inverse DCT on
// decode (docs/codecs/sparse.md). Not summable.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dtrain/codec/detail/topk_select.h"
#include "dtrain/codec/payload.h"
#include "dtrain/codec/spec.h"

namespace dtrain::codec {

/// How dct_topk stores its selected coefficients.
enum class dct_values : std::uint8_t {
  fp16 = 0,  ///< IEEE half, RNE, saturating at +-65504
  f32 = 1,   ///< exact
  sign = 2,  ///< one bit each, decoded to +-(mean |selected coefficient| of the chunk)
};

class dct_topk_codec final : public basic_codec {
 public:
  /// @pre 2 <= chunk <= 1024, 1 <= k <= chunk (from_spec checks and reports these).
  /// Builds the chunk x chunk cosine basis (4 MiB at chunk = 1024).
  dct_topk_codec(std::uint32_t chunk, std::uint32_t k, dct_values values);

  codec_id id() const noexcept override { return codec_id::dct_topk; }
  /// "dct_topk:chunk=C,k=K,values=V".
  std::string spec() const override;
  bool summable() const noexcept override { return false; }

  std::uint32_t chunk() const noexcept { return chunk_; }
  std::uint32_t k() const noexcept { return k_; }
  /// Basis element D[u][i] = a(u) cos(pi (2i + 1) u / (2C)), a(0) = sqrt(1/C), else
  /// sqrt(2/C), rounded once to float. Computed with a fixed double-precision series (no
  /// libm), so every machine builds the same basis.
  float basis(std::size_t u, std::size_t i) const noexcept { return basis_t_[i * chunk_ + u]; }

  /// Spec keys chunk (2..1024, default 64), k (1..chunk, default 8), values
  /// (fp16|f32|sign, default fp16). Errors: invalid_argument.
  static result<std::unique_ptr<codec>> from_spec(spec_args& a);
  /// Decoder for a payload's parameters. Errors: data_loss for invalid parameters.
  static result<std::unique_ptr<codec>> from_params(std::span<const std::byte> params, std::uint64_t count);

 protected:
  std::size_t params_bytes() const noexcept override { return 9; }
  void write_params(byte_writer& w) const noexcept override;
  status check_params(std::span<const std::byte> params, std::uint64_t count) const override;
  std::size_t body_bytes(std::size_t n) const noexcept override;
  void encode_body(std::span<const float> in, std::span<std::byte> body) override;
  status decode_body(std::span<const std::byte> params, std::span<const std::byte> body, std::span<float> out,
                     bool accumulate, float weight) const override;

 private:
  std::size_t record_bytes() const noexcept;

  std::uint32_t chunk_, k_;
  dct_values values_;
  unsigned index_bits_;
  std::vector<float> basis_;    // basis_[u * C + i] = D[u][i] (inverse: rows scaled and added)
  std::vector<float> basis_t_;  // basis_t_[i * C + u] = D[u][i] (forward: columns scaled and added)
  detail::topk_selector selector_;
  std::vector<float> coef_;
  std::vector<std::uint32_t> idx_;
};

namespace detail {
/// cos(pi * num / den) for integers, den > 0, by symmetry reduction to [0, pi/4] and
/// fixed Taylor series in double: identical on every IEEE-754 machine (no libm).
double cos_pi_ratio(std::uint64_t num, std::uint64_t den) noexcept;
}  // namespace detail

}  // namespace dtrain::codec
