// Delayed Nesterov outer optimizer (arXiv 2401.09135).
#include "dtrain/optim/outer_delayed_nesterov.h"

#include <cstddef>

namespace dtrain::optim {
namespace {

template <bool First>
void accumulate(float* __restrict a, const float* __restrict g, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    if constexpr (First) {
      a[i] = g[i];
    } else {
      a[i] = a[i] + g[i];
    }
  }
}

// Between momentum updates: θ ← θ + (−ε)·(g/N).
void plain_step(float* __restrict theta, const float* __restrict g, std::size_t n, float div, float neg_lr) noexcept {
  for (std::size_t i = 0; i < n; ++i) theta[i] = theta[i] + neg_lr * (g[i] / div);
}

// Momentum update plus Nesterov step. Acc: ḡ = (a + g)/N, else ḡ = g/N.
template <bool FirstMomentum, bool Acc>
void momentum_step(float* __restrict theta, float* __restrict m, const float* __restrict a,
                   const float* __restrict g, std::size_t n, float div, float beta, float neg_lr) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    float avg;
    if constexpr (Acc) {
      avg = (a[i] + g[i]) / div;
    } else {
      avg = g[i] / div;
    }
    float mi;
    if constexpr (FirstMomentum) {
      mi = avg;
    } else {
      mi = m[i] * beta + avg;
    }
    m[i] = mi;
    theta[i] = theta[i] + neg_lr * (g[i] / div + beta * mi);
  }
}

}  // namespace

result<outer_delayed_nesterov> outer_delayed_nesterov::create(std::size_t n, const delayed_nesterov_options& o) {
  DTRAIN_RETURN_IF_ERROR(check_lr(o.lr));
  if (!(o.momentum > 0 && o.momentum <= 1)) return invalid_argument("delayed_nesterov: momentum must lie in (0, 1]");
  if (o.delay == 0) return invalid_argument("delayed_nesterov: delay N must be >= 1");
  return outer_delayed_nesterov(n, o);
}

outer_delayed_nesterov::outer_delayed_nesterov(std::size_t n, const delayed_nesterov_options& o)
    : outer_optimizer(n, o.lr, o.delay > 1 ? 2 : 1), o_(o) {}

void outer_delayed_nesterov::write_hyper(byte_writer& w) const noexcept {
  w.put<double>(o_.momentum);
  w.put<std::uint32_t>(o_.delay);
}

void outer_delayed_nesterov::apply(std::span<float> params, std::span<const float> grad) noexcept {
  const std::uint64_t N = o_.delay;
  const std::uint64_t pos = steps() % N;  // 0-based position inside the current period
  const std::size_t n = params.size();
  float* th = params.data();
  const float* g = grad.data();
  float* m = buffer(0).data();
  float* a = N > 1 ? buffer(1).data() : nullptr;
  if (pos + 1 < N) {
    pos == 0 ? accumulate<true>(a, g, n) : accumulate<false>(a, g, n);
    plain_step(th, g, n, static_cast<float>(N), static_cast<float>(-lr()));
    return;
  }
  const float div = static_cast<float>(N);
  const float beta = static_cast<float>(o_.momentum);
  const float neg_lr = static_cast<float>(-lr());
  const bool first_momentum = steps() < N;
  if (N > 1) {
    first_momentum ? momentum_step<true, true>(th, m, a, g, n, div, beta, neg_lr)
                   : momentum_step<false, true>(th, m, a, g, n, div, beta, neg_lr);
  } else {
    first_momentum ? momentum_step<true, false>(th, m, a, g, n, div, beta, neg_lr)
                   : momentum_step<false, false>(th, m, a, g, n, div, beta, neg_lr);
  }
}

}  // namespace dtrain::optim
