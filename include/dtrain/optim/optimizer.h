// dtrain/optim/optimizer.h: the outer-optimizer interface. An outer optimizer owns its
// state for n fp32 parameters (allocated once, at construction), applies an outer
// gradient to a flat parameter buffer, and saves/loads its state (state_io.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dtrain/core/bytes.h"
#include "dtrain/core/status.h"

namespace dtrain::optim {

/// Wire identifiers of optimizer state files. Stable: never renumber, only append.
enum class optimizer_kind : std::uint8_t {
  sgd = 1,               ///< torch.optim.SGD (momentum, dampening, Nesterov)
  adam = 2,              ///< torch.optim.Adam / AdamW (flag in the hyperparameters)
  delayed_nesterov = 3,  ///< Delayed Nesterov (arXiv 2401.09135)
  sparseloco = 4,        ///< SparseLoCo error-feedback outer rule (arXiv 2508.15706)
  demo = 5,              ///< DeMo sign update (arXiv 2411.19870)
};

/// Base of every outer optimizer. Not thread-safe: one thread steps one instance (use
/// one instance per disjoint slice of the parameters to step in parallel).
class outer_optimizer {
 public:
  virtual ~outer_optimizer() = default;

  virtual optimizer_kind kind() const noexcept = 0;
  /// Number of parameters this instance was built for.
  std::size_t size() const noexcept { return n_; }
  /// Completed step() calls (restored by load_state).
  std::uint64_t steps() const noexcept { return steps_; }
  /// Current learning rate.
  double lr() const noexcept { return lr_; }
  /// Sets the learning rate used by the next step(), e.g. from an lr_schedule:
  /// `opt.set_lr(schedule.at(opt.steps()))`.
  /// Errors: invalid_argument for a negative or non-finite rate (lr unchanged).
  status set_lr(double lr);

  /// Applies one outer step: params ← update(params, grad), where `grad` is the outer
  /// gradient (for DiLoCo the mean pseudo-gradient Δ = θ_old − θ_new). Deterministic:
  /// same state and inputs give the same bits on every IEEE-754 machine.
  /// Errors: invalid_argument when params.size() or grad.size() differs from size(), or
  /// grad holds NaN/±Inf (checked before any write: params and state stay unchanged).
  /// Does not allocate. @pre params and grad do not overlap.
  status step(std::span<float> params, std::span<const float> grad);

  /// Exact size of the blob save_state() writes (docs/formats/optimizer_state.md).
  std::size_t state_bytes() const noexcept;
  /// Writes the versioned, checksummed state and returns the bytes written.
  /// Errors: resource_exhausted if out.size() < state_bytes() (out untouched).
  result<std::size_t> save_state(std::span<std::byte> out) const;
  /// Restores a blob written by save_state() of an optimizer of the same kind, size and
  /// hyperparameters; the learning rate and step count come from the blob.
  /// Errors: data_loss (truncated, over-long, bad magic/checksum, non-finite values),
  /// unimplemented (newer format version), failed_precondition (other kind, size,
  /// hyperparameters). Everything is validated first: on error nothing is changed.
  status load_state(std::span<const std::byte> in);

 protected:
  /// @param buffers  number of n-float state buffers to allocate (zero-filled).
  outer_optimizer(std::size_t n, double lr, std::size_t buffers);
  outer_optimizer(const outer_optimizer&) = default;
  outer_optimizer& operator=(const outer_optimizer&) = default;
  outer_optimizer(outer_optimizer&&) noexcept = default;
  outer_optimizer& operator=(outer_optimizer&&) noexcept = default;

  /// The update itself, on validated input; steps() still holds the pre-step count.
  virtual void apply(std::span<float> params, std::span<const float> grad) noexcept = 0;
  /// Bytes of hyperparameters (fixed per instance) and their encoding.
  virtual std::size_t hyper_bytes() const noexcept = 0;
  virtual void write_hyper(byte_writer& w) const noexcept = 0;

  /// State buffer i (0 <= i < buffer_count()), n floats each, one slab.
  std::span<float> buffer(std::size_t i) noexcept { return {slab_.data() + i * n_, n_}; }
  std::span<const float> buffer(std::size_t i) const noexcept { return {slab_.data() + i * n_, n_}; }
  std::size_t buffer_count() const noexcept { return buffers_; }

  /// invalid_argument unless lr is finite and >= 0.
  static status check_lr(double lr);

 private:
  std::size_t n_ = 0;
  std::size_t buffers_ = 0;
  std::uint64_t steps_ = 0;
  double lr_ = 0;
  std::vector<float> slab_;
};

}  // namespace dtrain::optim
