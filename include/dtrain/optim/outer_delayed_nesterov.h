// dtrain/optim/outer_delayed_nesterov.h: Delayed Nesterov (DN) outer optimizer from
// Async Local-SGD (Liu et al., arXiv 2401.09135): the momentum buffer changes only once
// every N outer steps; the steps in between are plain, momentum-free gradient steps
// scaled by 1/N, so a whole period moves θ as one Nesterov step on the period's average.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dtrain/optim/optimizer.h"

namespace dtrain::optim {

struct delayed_nesterov_options {
  double lr = 0.7;           ///< ε, the outer learning rate
  double momentum = 0.9;     ///< β in (0, 1]
  std::uint32_t delay = 1;   ///< N >= 1: momentum update period
};

/// Steps are counted from 1 (t = steps() + 1). With g_t the outer gradient:
///   if t mod N ≠ 0:  a ← g_t (first step of a period) or a ← a + g_t;
///                    θ ← θ + (−ε)·(g_t/N)                      (no momentum)
///   if t mod N = 0:  ḡ ← (a + g_t)/N  (ḡ ← g_t/N when N = 1)
///                    m ← ḡ on the first update, else m ← β·m + ḡ
///                    θ ← θ + (−ε)·(g_t/N + β·m)                (Nesterov correction)
/// Over a period θ moves by −ε·(ḡ + β·m): one Nesterov step on the period's average
/// gradient, but every push is applied at once and none amplifies the momentum.
/// With N = 1 this is bit-for-bit torch SGD(nesterov, momentum β, lr ε) (outer_sgd).
/// State: m, plus the accumulator a when N > 1.
class outer_delayed_nesterov final : public outer_optimizer {
 public:
  /// Errors: invalid_argument for lr negative/non-finite, β outside (0, 1], N = 0.
  static result<outer_delayed_nesterov> create(std::size_t n, const delayed_nesterov_options& o);

  optimizer_kind kind() const noexcept override { return optimizer_kind::delayed_nesterov; }
  const delayed_nesterov_options& options() const noexcept { return o_; }

 protected:
  void apply(std::span<float> params, std::span<const float> grad) noexcept override;
  std::size_t hyper_bytes() const noexcept override { return 8 + 4; }
  void write_hyper(byte_writer& w) const noexcept override;

 private:
  outer_delayed_nesterov(std::size_t n, const delayed_nesterov_options& o);
  delayed_nesterov_options o_;
};

}  // namespace dtrain::optim
