// The aggregation arithmetic shared by ring, butterfly and sparse all-gather. Plain loops
// in a fixed order: the results feed consensus, so no reassociation, no FMA (the build
// passes -ffp-contract=off) and no libm beyond sqrt.
#include "dtrain/net/robust_aggregate.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "dtrain/core/assert.h"

namespace dtrain::net {

bool all_finite(std::span<const float> x) noexcept {
  // Exponent all ones <=> NaN or Inf; OR-reduce a flag so the loop vectorises.
  std::uint32_t bad = 0;
  for (float v : x) {
    const auto b = std::bit_cast<std::uint32_t>(v);
    bad |= static_cast<std::uint32_t>((b & 0x7F800000u) == 0x7F800000u);
  }
  return bad == 0;
}

float l2_norm(std::span<const float> x) noexcept {
  double s = 0.0;
  for (float v : x) s += static_cast<double>(v) * static_cast<double>(v);
  return static_cast<float>(std::sqrt(s));
}

weight_plan plan_weights(std::span<const float> weights, std::span<const std::uint8_t> dropped,
                         std::span<float> eff) noexcept {
  DTRAIN_ASSERT(weights.size() == dropped.size() && weights.size() == eff.size());
  weight_plan p;
  bool any_positive = false;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    DTRAIN_ASSERT(std::isfinite(weights[i]) && weights[i] >= 0.0f);
    if (dropped[i]) {
      ++p.dropped;
      eff[i] = 0.0f;
    } else {
      eff[i] = weights[i];
      any_positive = any_positive || weights[i] > 0.0f;
    }
  }
  // Every kept peer is a listener: fall back to the plain mean of the kept peers.
  if (!any_positive)
    for (std::size_t i = 0; i < weights.size(); ++i) eff[i] = dropped[i] ? 0.0f : 1.0f;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    if (eff[i] > 0.0f) {
      ++p.contributors;
      p.weight_sum += eff[i];
    }
  }
  return p;
}

namespace {

// Total order on floats (-0 < +0), as unsigned keys.
inline std::uint32_t order_key(float v) noexcept {
  const auto b = std::bit_cast<std::uint32_t>(v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

inline bool less_total(float a, float b) noexcept { return order_key(a) < order_key(b); }

// Sorts ascending in the total order. Equal keys are equal bit patterns, so the sorted
// sequence is unique whatever the algorithm; insertion sort for the usual few peers.
inline void sort_total(std::span<float> v) noexcept {
  if (v.size() > 32) {
    std::sort(v.begin(), v.end(), less_total);
    return;
  }
  for (std::size_t i = 1; i < v.size(); ++i) {
    const float x = v[i];
    std::size_t j = i;
    for (; j > 0 && less_total(x, v[j - 1]); --j) v[j] = v[j - 1];
    v[j] = x;
  }
}

}  // namespace

float median_clip_scales(std::span<const float> norms, std::span<const float> eff, std::span<float> scale,
                         std::span<float> scratch) noexcept {
  const std::size_t n = norms.size();
  DTRAIN_ASSERT(eff.size() == n && scale.size() == n && scratch.size() >= n);
  std::size_t c = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (eff[i] > 0.0f) scratch[c++] = norms[i];
  if (c == 0) {
    std::fill(scale.begin(), scale.end(), 1.0f);
    return 0.0f;
  }
  auto s = scratch.first(c);
  sort_total(s);
  const float m = s[(c - 1) / 2];
  for (std::size_t i = 0; i < n; ++i) scale[i] = norms[i] > m ? m / norms[i] : 1.0f;
  return m;
}

void accumulate_scaled(std::span<float> acc, std::span<const float> x, float c) noexcept {
  DTRAIN_ASSERT(acc.size() == x.size());
  float* a = acc.data();
  const float* p = x.data();
  const std::size_t n = acc.size();
  if (c == 1.0f) {
    for (std::size_t k = 0; k < n; ++k) a[k] += p[k];
  } else {
    for (std::size_t k = 0; k < n; ++k) a[k] += c * p[k];
  }
}

void accumulate_coincident(std::span<float> acc, std::span<float> wsum, std::span<const float> x, float c,
                           float w) noexcept {
  DTRAIN_ASSERT(acc.size() == x.size() && wsum.size() == x.size());
  for (std::size_t k = 0; k < x.size(); ++k) {
    if (x[k] != 0.0f) {
      acc[k] += c * x[k];
      wsum[k] += w;
    }
  }
}

void divide_by(std::span<float> acc, float w) noexcept {
  DTRAIN_ASSERT(w > 0.0f);
  for (float& v : acc) v = v / w;
}

void finish_coincident(std::span<float> acc, std::span<const float> wsum) noexcept {
  DTRAIN_ASSERT(acc.size() == wsum.size());
  for (std::size_t k = 0; k < acc.size(); ++k) acc[k] = wsum[k] > 0.0f ? acc[k] / wsum[k] : 0.0f;
}

void weighted_mean(std::span<const std::span<const float>> rows, std::span<const float> coef, float w,
                   std::span<float> out) noexcept {
  DTRAIN_ASSERT(rows.size() == coef.size());
  std::fill(out.begin(), out.end(), 0.0f);
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (coef[i] != 0.0f) accumulate_scaled(out, rows[i], coef[i]);
  divide_by(out, w);
}

std::size_t trim_count(double fraction, std::size_t m) noexcept {
  DTRAIN_ASSERT(fraction >= 0.0 && fraction < 0.5);
  return static_cast<std::size_t>(std::floor(fraction * static_cast<double>(m)));
}

void trimmed_mean(std::span<const std::span<const float>> rows, std::span<const float> scale,
                  std::span<const std::uint8_t> include, std::size_t trim, std::span<float> out,
                  std::span<float> scratch) noexcept {
  const std::size_t n = rows.size();
  DTRAIN_ASSERT(scale.size() == n && include.size() == n && scratch.size() >= n);
  std::size_t m = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (include[i]) {
      DTRAIN_ASSERT(rows[i].size() == out.size());
      ++m;
    }
  }
  DTRAIN_ASSERT(m > 2 * trim);
  const auto keep = static_cast<float>(m - 2 * trim);
  auto v = scratch.first(m);
  for (std::size_t k = 0; k < out.size(); ++k) {
    std::size_t c = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (include[i]) v[c++] = scale[i] * rows[i][k];
    sort_total(v);
    float s = 0.0f;
    for (std::size_t j = trim; j < m - trim; ++j) s += v[j];
    out[k] = s / keep;
  }
}

}  // namespace dtrain::net
