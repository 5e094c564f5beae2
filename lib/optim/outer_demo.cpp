// DeMo outer rule (arXiv 2411.19870).
#include "dtrain/optim/outer_demo.h"

#include <cmath>

#include "dtrain/codec/error_feedback.h"

namespace dtrain::optim {
namespace {

template <bool Decay>
void sign_step(float* __restrict theta, const float* __restrict a, std::size_t n, float decay, float neg_lr) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const float s = static_cast<float>((a[i] > 0.0f) - (a[i] < 0.0f));
    float t = theta[i];
    if constexpr (Decay) t = t * decay;
    theta[i] = t + neg_lr * s;
  }
}

}  // namespace

result<outer_demo> outer_demo::create(std::size_t n, const demo_options& o) {
  DTRAIN_RETURN_IF_ERROR(check_lr(o.lr));
  if (!(o.beta >= 0 && o.beta <= 1)) return invalid_argument("demo: beta must lie in [0, 1]");
  if (!std::isfinite(o.weight_decay) || o.weight_decay < 0)
    return invalid_argument("demo: weight_decay must be finite and >= 0");
  return outer_demo(n, o);
}

outer_demo::outer_demo(std::size_t n, const demo_options& o) : outer_optimizer(n, o.lr, 1), o_(o), scratch_(n) {}

void outer_demo::write_hyper(byte_writer& w) const noexcept {
  w.put<double>(o_.beta);
  w.put<double>(o_.weight_decay);
}

result<std::size_t> outer_demo::compress(std::span<const float> grad, codec::codec& c, std::span<std::byte> payload) {
  return codec::error_feedback_step(buffer(0), scratch_, static_cast<float>(o_.beta), 1.0f, grad,
                                    codec::nonfinite_policy::reject, c, payload);
}

void outer_demo::apply(std::span<float> params, std::span<const float> grad) noexcept {
  const float neg_lr = static_cast<float>(-lr());
  if (o_.weight_decay != 0) {
    sign_step<true>(params.data(), grad.data(), params.size(), static_cast<float>(1.0 - lr() * o_.weight_decay), neg_lr);
  } else {
    sign_step<false>(params.data(), grad.data(), params.size(), 1.0f, neg_lr);
  }
}

}  // namespace dtrain::optim
