// dtrain/codec/codec_topk.h: chunked top-k (DGC arXiv 1712.01887, SparseLoCo arXiv
// 2508.15706): per chunk the k largest |x|, bit-packed chunk-relative indices and
// fp16/bf16/f32/q-bit values (docs/codecs/sparse.md). Not summable.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dtrain/codec/detail/topk_select.h"
#include "dtrain/codec/payload.h"
#include "dtrain/codec/spec.h"
#include "dtrain/core/bitpack.h"

namespace dtrain::codec {

/// How topk stores its selected values.
enum class topk_values : std::uint8_t {
  fp16 = 0,  ///< IEEE half, RNE, saturating at +-65504
  bf16 = 1,  ///< bfloat16, RNE, saturating at the largest finite bfloat16
  f32 = 2,   ///< exact
  q2 = 3,    ///< 2-bit uniform min-max over the chunk's selected values (f32 lo, hi)
  q4 = 4,    ///< 4-bit, likewise
  q8 = 5,    ///< 8-bit, likewise
};

class topk_codec final : public basic_codec {
 public:
  /// @pre 1 <= chunk <= 65536 and 1 <= k <= chunk (from_spec checks and reports these).
  topk_codec(std::uint32_t chunk, std::uint32_t k, topk_values values);

  codec_id id() const noexcept override { return codec_id::topk; }
  /// "topk:chunk=C,k=K,values=V".
  std::string spec() const override;
  bool summable() const noexcept override { return false; }

  std::uint32_t chunk() const noexcept { return chunk_; }
  std::uint32_t k() const noexcept { return k_; }
  topk_values values() const noexcept { return values_; }

  /// Spec keys chunk (1..65536, default 4096), k (1..chunk, default 64), values
  /// (fp16|bf16|f32|q2|q4|q8, default fp16). Errors: invalid_argument.
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
  std::size_t record_bytes(std::size_t len) const noexcept;

  std::uint32_t chunk_, k_;
  topk_values values_;
  unsigned index_bits_;  // bits_for(chunk_)
  detail::topk_selector selector_;
  std::vector<std::uint32_t> idx_;   // k_ selected indices of the current chunk
  std::vector<std::uint32_t> codes_; // k_ q-bit codes of the current chunk
};

namespace detail {

/// Bits of a q-bit topk value format (2, 4, 8), or 0 for fp16/bf16/f32.
constexpr unsigned topk_q_bits(topk_values v) noexcept {
  return v == topk_values::q2 ? 2 : v == topk_values::q4 ? 4 : v == topk_values::q8 ? 8 : 0;
}

/// Checks m bit-packed chunk indices (`bits` each, 0 meaning every index is 0): each
/// < len, strictly increasing, padding bits zero. @pre packed.size() == packed_bytes(m, bits).
bool sparse_indices_valid(std::span<const std::byte> packed, std::size_t m, unsigned bits, std::size_t len) noexcept;

/// Calls fn(j, index) for the m packed indices in order (unpacked 256 at a time on the
/// stack, so decoding never allocates). @pre the same as sparse_indices_valid.
template <class Fn>
void for_each_sparse_index(std::span<const std::byte> packed, std::size_t m, unsigned bits, Fn&& fn) {
  if (bits == 0) {
    for (std::size_t j = 0; j < m; ++j) fn(j, std::uint32_t{0});
    return;
  }
  constexpr std::size_t piece = 256;  // 256 * bits bits is always a whole number of bytes
  std::uint32_t buf[piece];
  for (std::size_t j0 = 0; j0 < m; j0 += piece) {
    const std::size_t cnt = m - j0 < piece ? m - j0 : piece;
    unpack_bits<std::uint32_t>(packed.subspan(j0 / 8 * bits), bits, std::span(buf, cnt));
    for (std::size_t j = 0; j < cnt; ++j) fn(j0 + j, buf[j]);
  }
}

/// f32 -> fp16 / bf16 bits, RNE, with overflow saturated to the largest finite value
/// (sparse values are never sent as Inf).
std::uint16_t f16_saturate(float v) noexcept;
std::uint16_t bf16_saturate(float v) noexcept;

}  // namespace detail
}  // namespace dtrain::codec
