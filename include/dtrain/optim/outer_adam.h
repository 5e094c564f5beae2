// dtrain/optim/outer_adam.h: Adam and AdamW as outer optimizers, with the semantics of
// torch.optim.Adam / AdamW (`_single_tensor_adam`): bias corrections, eps after the
// square root, coupled (Adam) or decoupled (AdamW) weight decay, amsgrad, maximize.
#pragma once

#include <cstddef>

#include "dtrain/optim/optimizer.h"

namespace dtrain::optim {

struct adam_options {
  double lr = 1e-3;
  double beta1 = 0.9;       ///< in [0, 1)
  double beta2 = 0.999;     ///< in [0, 1)
  double eps = 1e-8;        ///< > 0
  double weight_decay = 0;  ///< λ >= 0
  bool decoupled = false;   ///< false: Adam (g ← g + λθ); true: AdamW (θ ← θ(1 − lr·λ))
  bool amsgrad = false;
  bool maximize = false;

  static adam_options adamw(double lr = 1e-3, double weight_decay = 1e-2) {
    adam_options o;
    o.lr = lr;
    o.weight_decay = weight_decay;
    o.decoupled = true;
    return o;
  }
};

/// Per element in float, step t = steps() + 1, torch's operation order:
///   g ← −g if maximize
///   AdamW: θ ← θ·float(1 − lr·λ)       Adam: g ← g + λθ     (only when λ ≠ 0)
///   m ← lerp(m, g, 1−β1)  (m + w(g − m) for w < 0.5, else g − (g − m)(1 − w))
///   v ← v·β2 + ((1−β2)·g)·g
///   v_max ← max(v_max, v) if amsgrad
///   denom ← sqrt(v or v_max) / float(sqrt(1 − β2^t)) + eps
///   θ ← θ + (−lr/(1 − β1^t))·m / denom
/// Bias corrections are computed in double with β^t by repeated squaring (no libm pow),
/// so every machine gets the same bits. State: m, v (and v_max with amsgrad).
class outer_adam final : public outer_optimizer {
 public:
  /// Errors: invalid_argument for lr/λ negative or non-finite, β outside [0, 1),
  /// eps not finite and > 0.
  static result<outer_adam> create(std::size_t n, const adam_options& o);

  optimizer_kind kind() const noexcept override { return optimizer_kind::adam; }
  const adam_options& options() const noexcept { return o_; }

 protected:
  void apply(std::span<float> params, std::span<const float> grad) noexcept override;
  std::size_t hyper_bytes() const noexcept override { return 4 * 8 + 1; }
  void write_hyper(byte_writer& w) const noexcept override;

 private:
  outer_adam(std::size_t n, const adam_options& o);
  adam_options o_;
};

}  // namespace dtrain::optim
