// Outer Adam / AdamW with torch semantics.
#include "dtrain/optim/outer_adam.h"

#include <cmath>
#include <cstdint>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace dtrain::optim {
namespace {

// b^t by repeated squaring: IEEE multiplications only, so identical on every machine.
double ipow(double b, std::uint64_t t) noexcept {
  double r = 1.0;
  while (t) {
    if (t & 1) r *= b;
    b *= b;
    t >>= 1;
  }
  return r;
}

struct adam_scalars {
  float sign, wd, decay, w, one_minus_w, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step;
};

// One element, in torch's order; the SSE loop below computes exactly this, four at a time.
template <bool Coupled, bool Decoupled, bool Ams, bool SmallW>
inline void adam_one(float& theta, float& m, float& v, float* vmax, float grad, const adam_scalars& s) noexcept {
  float g = s.sign * grad;
  float t = theta;
  if constexpr (Decoupled) t = t * s.decay;
  if constexpr (Coupled) g = g + s.wd * t;
  float mi;
  if constexpr (SmallW) {
    mi = m + s.w * (g - m);
  } else {
    mi = g - (g - m) * s.one_minus_w;
  }
  const float vi = v * s.beta2 + (s.one_minus_beta2 * g) * g;
  m = mi;
  v = vi;
  float vd = vi;
  if constexpr (Ams) {
    vd = vi > *vmax ? vi : *vmax;
    *vmax = vd;
  }
  const float denom = std::sqrt(vd) / s.bc2_sqrt + s.eps;
  theta = t + (s.neg_step * mi) / denom;
}

template <bool Coupled, bool Decoupled, bool Ams, bool SmallW>
void adam_loop(float* __restrict theta, float* __restrict m, float* __restrict v, float* __restrict vmax,
               const float* __restrict grad, std::size_t n, adam_scalars s) noexcept {
  std::size_t i = 0;
#ifdef __SSE2__
  // GCC will not vectorize sqrt while it may set errno (it never does here: v >= 0), so
  // this loop is spelled in SSE (baseline on x86-64). Same IEEE operations in the same
  // order as adam_one: identical bits.
  const __m128 sign = _mm_set1_ps(s.sign), wd = _mm_set1_ps(s.wd), decay = _mm_set1_ps(s.decay);
  const __m128 w = _mm_set1_ps(s.w), omw = _mm_set1_ps(s.one_minus_w), b2 = _mm_set1_ps(s.beta2);
  const __m128 omb2 = _mm_set1_ps(s.one_minus_beta2), bc2 = _mm_set1_ps(s.bc2_sqrt), eps = _mm_set1_ps(s.eps);
  const __m128 step = _mm_set1_ps(s.neg_step);
  for (; i + 4 <= n; i += 4) {
    __m128 g = _mm_mul_ps(sign, _mm_loadu_ps(grad + i));
    __m128 t = _mm_loadu_ps(theta + i);
    if constexpr (Decoupled) t = _mm_mul_ps(t, decay);
    if constexpr (Coupled) g = _mm_add_ps(g, _mm_mul_ps(wd, t));
    const __m128 m0 = _mm_loadu_ps(m + i);
    __m128 mi;
    if constexpr (SmallW) {
      mi = _mm_add_ps(m0, _mm_mul_ps(w, _mm_sub_ps(g, m0)));
    } else {
      mi = _mm_sub_ps(g, _mm_mul_ps(_mm_sub_ps(g, m0), omw));
    }
    const __m128 vi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(v + i), b2), _mm_mul_ps(_mm_mul_ps(omb2, g), g));
    _mm_storeu_ps(m + i, mi);
    _mm_storeu_ps(v + i, vi);
    __m128 vd = vi;
    if constexpr (Ams) {
      vd = _mm_max_ps(vi, _mm_loadu_ps(vmax + i));  // vi > vmax ? vi : vmax, as adam_one
      _mm_storeu_ps(vmax + i, vd);
    }
    const __m128 denom = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vd), bc2), eps);
    _mm_storeu_ps(theta + i, _mm_add_ps(t, _mm_div_ps(_mm_mul_ps(step, mi), denom)));
  }
#endif
  for (; i < n; ++i)
    adam_one<Coupled, Decoupled, Ams, SmallW>(theta[i], m[i], v[i], Ams ? vmax + i : nullptr, grad[i], s);
}

}  // namespace

result<outer_adam> outer_adam::create(std::size_t n, const adam_options& o) {
  DTRAIN_RETURN_IF_ERROR(check_lr(o.lr));
  if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1))
    return invalid_argument("adam: betas must lie in [0, 1)");
  if (!std::isfinite(o.eps) || !(o.eps > 0)) return invalid_argument("adam: eps must be finite and > 0");
  if (!std::isfinite(o.weight_decay) || o.weight_decay < 0)
    return invalid_argument("adam: weight_decay must be finite and >= 0");
  return outer_adam(n, o);
}

outer_adam::outer_adam(std::size_t n, const adam_options& o) : outer_optimizer(n, o.lr, o.amsgrad ? 3 : 2), o_(o) {}

void outer_adam::write_hyper(byte_writer& w) const noexcept {
  w.put<double>(o_.beta1);
  w.put<double>(o_.beta2);
  w.put<double>(o_.eps);
  w.put<double>(o_.weight_decay);
  w.put<std::uint8_t>(
      static_cast<std::uint8_t>((o_.decoupled ? 1 : 0) | (o_.amsgrad ? 2 : 0) | (o_.maximize ? 4 : 0)));
}

void outer_adam::apply(std::span<float> params, std::span<const float> grad) noexcept {
  const std::uint64_t t = steps() + 1;
  const double bc1 = 1.0 - ipow(o_.beta1, t);
  const double bc2 = 1.0 - ipow(o_.beta2, t);
  adam_scalars s{};
  s.sign = o_.maximize ? -1.0f : 1.0f;
  s.wd = static_cast<float>(o_.weight_decay);
  s.decay = static_cast<float>(1.0 - lr() * o_.weight_decay);
  s.w = static_cast<float>(1.0 - o_.beta1);
  s.one_minus_w = static_cast<float>(1.0 - static_cast<double>(s.w));
  s.beta2 = static_cast<float>(o_.beta2);
  s.one_minus_beta2 = static_cast<float>(1.0 - o_.beta2);
  s.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  s.eps = static_cast<float>(o_.eps);
  s.neg_step = static_cast<float>(-(lr() / bc1));

  float* th = params.data();
  const float* g = grad.data();
  const std::size_t n = params.size();
  float* m = buffer(0).data();
  float* v = buffer(1).data();
  float* vm = o_.amsgrad ? buffer(2).data() : nullptr;
  const bool has_wd = o_.weight_decay != 0;
  const bool coupled = has_wd && !o_.decoupled, decoupled = has_wd && o_.decoupled;
  const bool small_w = std::fabs(s.w) < 0.5f;  // torch's lerp switches formula at 0.5
  auto run = [&]<bool C, bool D>() {
    if (o_.amsgrad) {
      small_w ? adam_loop<C, D, true, true>(th, m, v, vm, g, n, s) : adam_loop<C, D, true, false>(th, m, v, vm, g, n, s);
    } else {
      small_w ? adam_loop<C, D, false, true>(th, m, v, vm, g, n, s)
              : adam_loop<C, D, false, false>(th, m, v, vm, g, n, s);
    }
  };
  if (coupled) {
    run.template operator()<true, false>();
  } else if (decoupled) {
    run.template operator()<false, true>();
  } else {
    run.template operator()<false, false>();
  }
}

}  // namespace dtrain::optim
