// Outer SGD with torch.optim.SGD semantics.
#include "dtrain/optim/outer_sgd.h"

#include <cmath>

#include "kernels.h"

namespace dtrain::optim {

result<outer_sgd> outer_sgd::create(std::size_t n, const sgd_options& o) {
  DTRAIN_RETURN_IF_ERROR(check_lr(o.lr));
  if (!(o.momentum >= 0 && o.momentum <= 1)) return invalid_argument("sgd: momentum must lie in [0, 1]");
  if (!(o.dampening >= 0 && o.dampening <= 1)) return invalid_argument("sgd: dampening must lie in [0, 1]");
  if (!std::isfinite(o.weight_decay) || o.weight_decay < 0)
    return invalid_argument("sgd: weight_decay must be finite and >= 0");
  if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
    return invalid_argument("sgd: nesterov requires momentum > 0 and dampening = 0");
  return outer_sgd(n, o);
}

outer_sgd::outer_sgd(std::size_t n, const sgd_options& o) : outer_optimizer(n, o.lr, o.momentum != 0 ? 1 : 0), o_(o) {}

void outer_sgd::write_hyper(byte_writer& w) const noexcept {
  w.put<double>(o_.momentum);
  w.put<double>(o_.dampening);
  w.put<double>(o_.weight_decay);
  w.put<std::uint8_t>(static_cast<std::uint8_t>((o_.nesterov ? 1 : 0) | (o_.maximize ? 2 : 0)));
}

void outer_sgd::apply(std::span<float> params, std::span<const float> grad) noexcept {
  using namespace detail;
  float* t = params.data();
  const float* g = grad.data();
  const std::size_t n = params.size();
  const float sign = o_.maximize ? -1.0f : 1.0f;
  const float wd = static_cast<float>(o_.weight_decay);
  const float neg_lr = static_cast<float>(-lr());
  const bool has_wd = o_.weight_decay != 0;
  if (o_.momentum == 0) {
    has_wd ? sgd_plain<true>(t, g, n, sign, wd, neg_lr) : sgd_plain<false>(t, g, n, sign, wd, neg_lr);
    return;
  }
  float* b = buffer(0).data();
  const float mu = static_cast<float>(o_.momentum);
  const float omt = static_cast<float>(1.0 - o_.dampening);
  const bool first = steps() == 0;
  // Eight fixed loops: every branch is decided here, none inside the element loop.
  auto run = [&]<bool F, bool N>() {
    has_wd ? sgd_momentum<F, N, true>(t, b, g, n, sign, wd, mu, omt, neg_lr)
           : sgd_momentum<F, N, false>(t, b, g, n, sign, wd, mu, omt, neg_lr);
  };
  if (first) {
    o_.nesterov ? run.template operator()<true, true>() : run.template operator()<true, false>();
  } else {
    o_.nesterov ? run.template operator()<false, true>() : run.template operator()<false, false>();
  }
}

}  // namespace dtrain::optim
