// lib/optim/kernels.h (private): the fused per-element loops shared by the outer
// optimizers. Every loop is one branch-free pass over restrict pointers so that the
// compiler vectorizes it; the per-call choices are template parameters.
#pragma once

#include <cstddef>

namespace dtrain::optim::detail {

/// Torch-ordered SGD with momentum. First: b ← g (torch clones on the first step).
template <bool First, bool Nesterov, bool WeightDecay>
void sgd_momentum(float* __restrict theta, float* __restrict b, const float* __restrict grad, std::size_t n,
                  float sign, float wd, float mu, float one_minus_tau, float neg_lr) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    float g = sign * grad[i];  // sign is ±1: exact
    if constexpr (WeightDecay) g = g + wd * theta[i];
    float bi;
    if constexpr (First) {
      bi = g;
    } else {
      bi = b[i] * mu + one_minus_tau * g;
    }
    b[i] = bi;
    float d;
    if constexpr (Nesterov) {
      d = g + mu * bi;
    } else {
      d = bi;
    }
    theta[i] = theta[i] + neg_lr * d;
  }
}

/// SGD without momentum: θ ← θ + (−lr)(±g [+ λθ]).
template <bool WeightDecay>
void sgd_plain(float* __restrict theta, const float* __restrict grad, std::size_t n, float sign, float wd,
               float neg_lr) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    float g = sign * grad[i];
    if constexpr (WeightDecay) g = g + wd * theta[i];
    theta[i] = theta[i] + neg_lr * g;
  }
}

/// θ ← θ + s·g (s = −lr·scale).
inline void axpy(float* __restrict theta, const float* __restrict grad, std::size_t n, float s) noexcept {
  for (std::size_t i = 0; i < n; ++i) theta[i] = theta[i] + s * grad[i];
}

}  // namespace dtrain::optim::detail
