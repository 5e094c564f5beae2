// dtrain/optim/outer_sparseloco.h: the SparseLoCo outer rule (arXiv 2508.15706): DiLoCo
// without outer momentum, where an error-feedback accumulator takes momentum's place and
// only a compressed (e.g. top-k, 2-bit) view of it is communicated.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "dtrain/codec/codec.h"
#include "dtrain/optim/optimizer.h"

namespace dtrain::optim {

struct sparseloco_options {
  double lr = 1.0;     ///< α, applied on the global side (see below)
  double beta = 0.95;  ///< error-feedback decay β in [0, 1]
};

/// Local side, compress(Δ): e ← β·e + Δ; payload = codec.encode(e); e ← e − decode(payload).
/// Global side, step(θ, ĝ) with ĝ the mean of all peers' decoded payloads: θ ← θ + (−α)·ĝ.
/// Templar folds α into the accumulator (e ← β·e + α·Δ, θ ← θ − ĝ); for a constant α the
/// two are the same up to rounding (everything is linear in α; exactly the same payload
/// support for scale-invariant selectors like top-k). Putting α on the global side lets an
/// lr_schedule change it without rescaling e. State: e.
class outer_sparseloco final : public outer_optimizer {
 public:
  /// Errors: invalid_argument for lr negative/non-finite or β outside [0, 1].
  static result<outer_sparseloco> create(std::size_t n, const sparseloco_options& o);

  optimizer_kind kind() const noexcept override { return optimizer_kind::sparseloco; }
  const sparseloco_options& options() const noexcept { return o_; }

  /// Local side: folds the pseudo-gradient `delta` into e, encodes e with `c` into
  /// `payload` (size it with c.max_encoded_bytes(size())) and keeps the residual.
  /// Returns the payload bytes written. Works with any codec; deterministic if the codec is.
  /// Errors: invalid_argument (size mismatch, NaN/Inf in delta, codec precondition),
  /// resource_exhausted (payload too small), out_of_range (the codec's output is not
  /// finite, e.g. fp16 overflow: do not send that payload), internal (the codec failed to
  /// decode its own payload). On error e is unchanged. Does not allocate (beyond what the codec does).
  result<std::size_t> compress(std::span<const float> delta, codec::codec& c, std::span<std::byte> payload);

  /// The error-feedback accumulator e.
  std::span<const float> error() const noexcept { return buffer(0); }

 protected:
  void apply(std::span<float> params, std::span<const float> grad) noexcept override;
  std::size_t hyper_bytes() const noexcept override { return 8; }
  void write_hyper(byte_writer& w) const noexcept override;

 private:
  outer_sparseloco(std::size_t n, const sparseloco_options& o);
  sparseloco_options o_;
  std::vector<float> scratch_;
};

/// out ← (Σ_i decode(payloads[i])) / k, k = payloads.size() >= 1, summed in the given
/// order (float addition is not associative: every peer must use the same order, e.g.
/// by rank). Decodes any dtrain payload (decode_accumulate_any).
/// Errors: invalid_argument for no payloads; those of decode_accumulate_any (data_loss,
/// failed_precondition, unimplemented, invalid_argument for a count != out.size()).
/// On error `out` is unspecified (it is scratch, not state).
status decode_mean(std::span<const std::span<const std::byte>> payloads, std::span<float> out);

}  // namespace dtrain::optim
