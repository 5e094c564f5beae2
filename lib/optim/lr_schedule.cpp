// Learning-rate schedules.
#include "dtrain/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace dtrain::optim {

status lr_schedule::validate() const {
  if (!std::isfinite(peak) || !std::isfinite(min) || peak < 0 || min < 0)
    return invalid_argument("lr_schedule: rates must be finite and >= 0");
  if (min > peak) return invalid_argument("lr_schedule: min exceeds peak");
  if ((kind == schedule_kind::cosine || kind == schedule_kind::wsd) && total == 0)
    return invalid_argument("lr_schedule: cosine and WSD need total > 0");
  if ((kind == schedule_kind::cosine || kind == schedule_kind::wsd) && warmup > total)
    return invalid_argument("lr_schedule: warmup longer than total");
  if (kind == schedule_kind::wsd && warmup + decay > total)
    return invalid_argument("lr_schedule: warmup + decay longer than total");
  return {};
}

double lr_schedule::at(std::uint64_t step) const noexcept {
  if (kind == schedule_kind::constant) return peak;
  if (step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  switch (kind) {
    case schedule_kind::constant:
    case schedule_kind::linear_warmup:
      return peak;
    case schedule_kind::cosine: {
      if (step >= total) return min;
      const double span = static_cast<double>(total - warmup);
      const double p = span > 0 ? static_cast<double>(step - warmup) / span : 1.0;
      return min + (peak - min) * 0.5 * (1.0 + std::cos(M_PI * p));
    }
    case schedule_kind::wsd: {
      if (step >= total) return min;
      const std::uint64_t decay_start = total - decay;
      if (step < decay_start) return peak;
      const double p = static_cast<double>(step - decay_start + 1) / static_cast<double>(decay);
      double f = 1.0 - p;  // linear
      if (shape == decay_shape::cosine) f = 0.5 * (1.0 + std::cos(M_PI * p));
      if (shape == decay_shape::inverse_sqrt_1m) f = 1.0 - std::sqrt(p);
      return min + (peak - min) * std::clamp(f, 0.0, 1.0);
    }
  }
  return peak;
}

}  // namespace dtrain::optim
