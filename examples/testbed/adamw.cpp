// testbed/adamw.cpp: AdamW as one fused Eigen array expression per moment and parameter.
#include "testbed/adamw.h"

#include <cmath>
#include <string>

#include <Eigen/Core>

namespace dtrain::testbed {

status adamw_options::validate() const {
  if (!std::isfinite(lr) || lr < 0) return invalid_argument("adamw: lr " + std::to_string(lr) + " not finite and >= 0");
  if (!(beta1 >= 0 && beta1 < 1)) return invalid_argument("adamw: beta1 " + std::to_string(beta1) + " not in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) return invalid_argument("adamw: beta2 " + std::to_string(beta2) + " not in [0, 1)");
  if (!std::isfinite(eps) || !(eps > 0))
    return invalid_argument("adamw: eps " + std::to_string(eps) + " not finite and > 0");
  if (!std::isfinite(weight_decay) || weight_decay < 0)
    return invalid_argument("adamw: weight_decay " + std::to_string(weight_decay) + " not finite and >= 0");
  return ok_status();
}

template <class T>
result<basic_adamw<T>> basic_adamw<T>::create(std::size_t n, const adamw_options& options) {
  DTRAIN_RETURN_IF_ERROR(options.validate());
  basic_adamw a;
  a.o_ = options;
  try {
    a.m_.assign(n, T(0));
    a.v_.assign(n, T(0));
  } catch (const std::exception&) {
    return resource_exhausted("adamw: cannot allocate state for " + std::to_string(n) + " parameters");
  }
  return a;
}

template <class T>
status basic_adamw<T>::set_lr(double lr) {
  if (!std::isfinite(lr) || lr < 0)
    return invalid_argument("adamw::set_lr: " + std::to_string(lr) + " not finite and >= 0");
  o_.lr = lr;
  return ok_status();
}

template <class T>
status basic_adamw<T>::set_decay_mask(std::span<const std::uint8_t> mask) {
  if (!mask.empty() && mask.size() != size())
    return invalid_argument("adamw::set_decay_mask: " + std::to_string(mask.size()) + " bytes for " +
                            std::to_string(size()) + " parameters");
  try {
    mask_.assign(mask.begin(), mask.end());
  } catch (const std::exception&) {
    return resource_exhausted("adamw::set_decay_mask: cannot allocate the mask");
  }
  return ok_status();
}

template <class T>
void basic_adamw<T>::reset() noexcept {
  std::fill(m_.begin(), m_.end(), T(0));
  std::fill(v_.begin(), v_.end(), T(0));
  t_ = 0;
  beta1_pow_ = beta2_pow_ = 1;
}

template <class T>
status basic_adamw<T>::step(std::span<T> params, std::span<const T> grads) {
  using arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const auto n = static_cast<Eigen::Index>(size());
  if (params.size() != size() || grads.size() != size())
    return invalid_argument("adamw::step: " + std::to_string(params.size()) + " parameters and " +
                            std::to_string(grads.size()) + " gradients for an optimizer of " + std::to_string(size()));
  const Eigen::Map<const arr> g(grads.data(), n);
  if (!g.allFinite()) return invalid_argument("adamw::step: gradient holds NaN or Inf");

  ++t_;
  beta1_pow_ *= o_.beta1;
  beta2_pow_ *= o_.beta2;
  const double bc1 = 1.0 - beta1_pow_, bc2 = 1.0 - beta2_pow_;
  const T decay = static_cast<T>(1.0 - o_.lr * o_.weight_decay);
  const T w = static_cast<T>(1.0 - o_.beta1);
  const T one_minus_w = static_cast<T>(1.0 - static_cast<double>(w));
  const T beta2 = static_cast<T>(o_.beta2), one_minus_beta2 = static_cast<T>(1.0 - o_.beta2);
  const T bc2_sqrt = static_cast<T>(std::sqrt(bc2));
  const T eps = static_cast<T>(o_.eps);
  const T neg_step = static_cast<T>(-(o_.lr / bc1));

  Eigen::Map<arr> th(params.data(), n), m(m_.data(), n), v(v_.data(), n);
  if (o_.weight_decay != 0) {
    if (mask_.empty()) {
      th *= decay;
    } else {
      const Eigen::Map<const Eigen::Array<std::uint8_t, Eigen::Dynamic, 1>> mk(mask_.data(), n);
      th = (mk != 0).select(th * decay, th);
    }
  }
  // torch's lerp(m, g, w) switches formula at w = 0.5.
  if (w < T(0.5)) {
    m += w * (g - m);
  } else {
    m = g - (g - m) * one_minus_w;
  }
  v = v * beta2 + (one_minus_beta2 * g) * g;
  th += (neg_step * m) / (v.sqrt() / bc2_sqrt + eps);
  return ok_status();
}

template class basic_adamw<float>;
template class basic_adamw<double>;

}  // namespace dtrain::testbed
