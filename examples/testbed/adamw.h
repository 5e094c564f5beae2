// testbed/adamw.h: the inner optimizer of the testbed, AdamW with the semantics of
// torch.optim.AdamW (Loshchilov & Hutter, arXiv 1711.05101; torch `_single_tensor_adamw`).
// For learning-rate schedules use dtrain::optim::lr_schedule (optim/lr_schedule.h):
// `opt.set_lr(schedule.at(opt.steps()))` before each step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::testbed {

struct adamw_options {
  double lr = 3e-3;           ///< finite, >= 0; tuned for gpt_config::small() (torch: 1e-3)
  double beta1 = 0.9;         ///< in [0, 1)
  double beta2 = 0.95;        ///< in [0, 1)
  double eps = 1e-8;          ///< finite, > 0
  double weight_decay = 0.1;  ///< λ, finite, >= 0

  /// invalid_argument naming the first bad field.
  status validate() const;
};

/// AdamW over one flat buffer of n parameters. Per element, at step t = steps() + 1:
///   θ ← θ·(1 − lr·λ·mask)                        (decoupled decay; mask 1 unless set)
///   m ← m + (1 − β1)·(g − m)                     (torch's lerp for weights < 0.5)
///   v ← β2·v + ((1 − β2)·g)·g
///   θ ← θ − (lr / (1 − β1^t))·m / (√v / √(1 − β2^t) + eps)
/// Scalars are formed in double and cast to T once per step; β^t is a running product
/// (no libm pow), so results are bit-identical on every IEEE-754 machine. Moments start
/// at zero. Not thread-safe; allocates only in create() and set_decay_mask().
template <class T>
class basic_adamw {
 public:
  /// Errors: invalid_argument from options.validate(); resource_exhausted if the state
  /// (2n values) cannot be allocated.
  static result<basic_adamw> create(std::size_t n, const adamw_options& options);

  std::size_t size() const noexcept { return m_.size(); }
  const adamw_options& options() const noexcept { return o_; }
  /// Completed steps (t of the last step).
  std::uint64_t steps() const noexcept { return t_; }
  double lr() const noexcept { return o_.lr; }
  /// Learning rate of the next step(). invalid_argument (lr unchanged) for a negative or
  /// non-finite rate.
  status set_lr(double lr);

  /// Restricts weight decay to elements whose mask byte is non-zero (e.g. the weight
  /// matrices only: testbed::decay_mask(model.param_layout())). An empty mask decays
  /// every element again. invalid_argument when mask is non-empty and its size != n.
  status set_decay_mask(std::span<const std::uint8_t> mask);

  /// One AdamW step. Does not allocate. Errors, checked before any write (params and
  /// state unchanged): invalid_argument when a size differs from size() or grads holds
  /// NaN/±Inf. @pre params and grads do not overlap.
  status step(std::span<T> params, std::span<const T> grads);

  /// Zeroes both moments and the step count (bias correction restarts); keeps lr and
  /// the decay mask.
  void reset() noexcept;

  /// First and second moments (read-only; for tests and checkpoints).
  std::span<const T> first_moment() const noexcept { return m_; }
  std::span<const T> second_moment() const noexcept { return v_; }

 private:
  basic_adamw() = default;
  adamw_options o_;
  std::uint64_t t_ = 0;
  double beta1_pow_ = 1, beta2_pow_ = 1;  // β^t
  std::vector<T> m_, v_;
  std::vector<std::uint8_t> mask_;  // empty: decay everything
};

using adamw = basic_adamw<float>;

extern template class basic_adamw<float>;
extern template class basic_adamw<double>;

}  // namespace dtrain::testbed
