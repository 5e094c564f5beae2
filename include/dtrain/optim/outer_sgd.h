// dtrain/optim/outer_sgd.h: outer SGD with the exact semantics of torch.optim.SGD
// (momentum, dampening, Nesterov, coupled weight decay, maximize). DiLoCo's outer
// optimizer is sgd_options::diloco(): Nesterov, lr 0.7, momentum 0.9 (arXiv 2311.08105).
#pragma once

#include <cstddef>

#include "dtrain/optim/optimizer.h"

namespace dtrain::optim {

struct sgd_options {
  double lr = 1e-3;
  double momentum = 0;      ///< μ in [0, 1]
  double dampening = 0;     ///< τ in [0, 1]
  double weight_decay = 0;  ///< λ >= 0, coupled (g ← g + λθ)
  bool nesterov = false;    ///< requires μ > 0 and τ = 0
  bool maximize = false;

  /// DiLoCo's outer optimizer: Nesterov, lr 0.7, momentum 0.9.
  static sgd_options diloco() { return {0.7, 0.9, 0, 0, true, false}; }
  /// lr 1, momentum 0: θ ← θ − Δ, i.e. plain averaging (FedAvg) on the mean pseudo-gradient.
  static sgd_options fedavg() { return {1.0, 0, 0, 0, false, false}; }
};

/// torch.optim.SGD (`_single_tensor_sgd`), per element in float, same operation order:
///   g ← −g if maximize;  g ← g + λθ if λ ≠ 0
///   if μ ≠ 0: b ← g on the first step, else b ← μb + (1−τ)g;  d ← g + μb if nesterov else b
///   θ ← θ + (−lr)·d
/// Hyperparameters enter as float(value), as torch casts Python scalars for fp32 tensors.
/// State: one momentum buffer when μ ≠ 0, none otherwise.
class outer_sgd final : public outer_optimizer {
 public:
  /// Errors: invalid_argument for lr/λ negative or non-finite, μ or τ outside [0, 1],
  /// or nesterov with μ = 0 or τ ≠ 0 (torch raises ValueError for the same).
  static result<outer_sgd> create(std::size_t n, const sgd_options& o);

  optimizer_kind kind() const noexcept override { return optimizer_kind::sgd; }
  const sgd_options& options() const noexcept { return o_; }

 protected:
  void apply(std::span<float> params, std::span<const float> grad) noexcept override;
  std::size_t hyper_bytes() const noexcept override { return 3 * 8 + 1; }
  void write_hyper(byte_writer& w) const noexcept override;

 private:
  outer_sgd(std::size_t n, const sgd_options& o);
  sgd_options o_;
};

}  // namespace dtrain::optim
