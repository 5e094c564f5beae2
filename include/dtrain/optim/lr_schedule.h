// dtrain/optim/lr_schedule.h: learning-rate schedules for the outer (or inner) loop:
// constant, linear warmup, cosine and WSD (warmup-stable-decay). Pure functions of the
// step, so every peer computes the same rate. Formulas: docs/optimizers.md.
#pragma once

#include <cstdint>

#include "dtrain/core/status.h"

namespace dtrain::optim {

enum class schedule_kind : std::uint8_t { constant, linear_warmup, cosine, wsd };
enum class decay_shape : std::uint8_t { linear, cosine, inverse_sqrt_1m };  ///< WSD decay form

struct lr_schedule {
  schedule_kind kind = schedule_kind::constant;
  double peak = 1.0;            ///< rate after warmup
  double min = 0.0;             ///< floor reached at the end of cosine/WSD decay
  std::uint64_t warmup = 0;     ///< steps of linear warmup from peak/warmup to peak
  std::uint64_t total = 0;      ///< total steps (cosine, WSD)
  std::uint64_t decay = 0;      ///< WSD: length of the final decay phase
  decay_shape shape = decay_shape::linear;

  static lr_schedule constant_rate(double lr) { return {schedule_kind::constant, lr}; }
  static lr_schedule linear_warmup(double peak, std::uint64_t warmup) {
    return {schedule_kind::linear_warmup, peak, 0.0, warmup};
  }
  static lr_schedule cosine(double peak, double min, std::uint64_t warmup, std::uint64_t total) {
    return {schedule_kind::cosine, peak, min, warmup, total};
  }
  static lr_schedule wsd(double peak, double min, std::uint64_t warmup, std::uint64_t total, std::uint64_t decay,
                         decay_shape shape = decay_shape::linear) {
    return {schedule_kind::wsd, peak, min, warmup, total, decay, shape};
  }

  /// invalid_argument for negative or non-finite rates, min > peak, or phases longer
  /// than `total`.
  status validate() const;

  /// Rate at 0-based `step`. Warmup: peak·(step+1)/warmup for step < warmup. Cosine:
  /// min + (peak-min)·(1+cos(pi·p))/2 with p the post-warmup progress in [0,1]. WSD:
  /// peak until total-decay, then decays to min by `shape`. Past `total`: min.
  double at(std::uint64_t step) const noexcept;
};

}  // namespace dtrain::optim
