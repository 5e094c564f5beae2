// dtrain/net/robust_aggregate.h: the arithmetic the global averaging collectives share:
// effective weights, non-finite detection, median-norm clipping, the weighted mean in
// rank order, DeMo's coincident mean and the coordinate-wise trimmed mean. Every routine
// is deterministic (fixed order of float operations, no libm except sqrt) and allocates
// nothing; scratch comes from the caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace dtrain::net {

/// True when `x` holds no NaN and no +-Inf. Deterministic.
bool all_finite(std::span<const float> x) noexcept;

/// L2 norm of `x`: the squares are summed in double in index order, followed by one
/// correctly rounded sqrt and a rounding to float. Deterministic on every IEEE machine.
/// @pre x is finite (a non-finite x gives a non-finite or meaningless norm).
float l2_norm(std::span<const float> x) noexcept;

/// What plan_weights() decided.
struct weight_plan {
  std::size_t contributors = 0;  ///< peers whose effective weight is > 0
  std::size_t dropped = 0;       ///< peers marked dropped
  float weight_sum = 0.0f;       ///< W: fp32 sum of the effective weights, rank order
};

/// Effective weights of one aggregation, in rank order: eff[i] = 0 for a dropped peer,
/// else weights[i]; if every kept weight is 0 (all listeners), each kept peer gets 1, so
/// the result is the plain mean (collective_options::weight). A plan with
/// contributors == 0 means there is nothing to average (every peer dropped); callers
/// turn it into an error.
/// @pre weights.size() == dropped.size() == eff.size(); every weight finite and >= 0.
weight_plan plan_weights(std::span<const float> weights, std::span<const std::uint8_t> dropped,
                         std::span<float> eff) noexcept;

/// Median-norm clipping (Templar / SparseLoCo): m = the lower median of norms[i] over the
/// peers with eff[i] > 0 (element (c-1)/2 of the c sorted norms); scale[i] = fl(m /
/// norms[i]) when norms[i] > m, else 1 (also for peers with eff[i] == 0). Returns m (0
/// when no peer has eff[i] > 0). Deterministic.
/// @pre all spans have the same size n, scratch.size() >= n; norms finite and >= 0.
float median_clip_scales(std::span<const float> norms, std::span<const float> eff, std::span<float> scale,
                         std::span<float> scratch) noexcept;

/// acc[k] = fl(acc[k] + fl(c * x[k])) for every k; with c == 1 this adds x exactly as
/// given. @pre acc.size() == x.size(); they may not overlap.
void accumulate_scaled(std::span<float> acc, std::span<const float> x, float c) noexcept;

/// DeMo's coincident accumulation: for every k with x[k] != 0 (an exact zero counts as
/// "not sent"): acc[k] += fl(c * x[k]) and wsum[k] += w. @pre equal sizes, no overlap.
void accumulate_coincident(std::span<float> acc, std::span<float> wsum, std::span<const float> x, float c,
                           float w) noexcept;

/// acc[k] = fl(acc[k] / w), a true division (not a multiplication by 1/w), so a sum S that
/// is exact gives fl(S / W). @pre w > 0.
void divide_by(std::span<float> acc, float w) noexcept;

/// acc[k] = fl(acc[k] / wsum[k]) where wsum[k] > 0, else 0 (no peer sent index k).
void finish_coincident(std::span<float> acc, std::span<const float> wsum) noexcept;

/// Weighted mean in rank order: out[k] = fl(S_k / w) with S_k the fp32 sum, starting from
/// +0 and in ascending i, of fl(coef[i] * rows[i][k]) over the rows with coef[i] != 0.
/// This is the reduction every global average in dtrain performs (the ring performs the
/// same sum hop by hop). @pre every row and out have one size; coef.size() ==
/// rows.size(); w > 0; out does not overlap a row.
void weighted_mean(std::span<const std::span<const float>> rows, std::span<const float> coef, float w,
                   std::span<float> out) noexcept;

/// Values trimmed from each end of a coordinate: floor(fraction * m), computed in double.
/// @pre 0 <= fraction < 0.5, so that 2 * trim_count(fraction, m) < m for m >= 1.
std::size_t trim_count(double fraction, std::size_t m) noexcept;

/// Coordinate-wise trimmed mean (Yin et al., arXiv 1803.01498): for each k, the values
/// v_i = fl(scale[i] * rows[i][k]) of the rows with include[i] != 0 are sorted ascending
/// (a total order: -0 before +0), the `trim` smallest and `trim` largest are dropped, and
/// out[k] = fl(sum of the rest, ascending, from +0) / (m - 2 trim)). Weights play no part.
/// @pre equal row sizes == out.size(); scale, include and rows of one size;
///      scratch.size() >= rows.size(); m = count of include[i] != 0 satisfies m > 2 trim.
void trimmed_mean(std::span<const std::span<const float>> rows, std::span<const float> scale,
                  std::span<const std::uint8_t> include, std::size_t trim, std::span<float> out,
                  std::span<float> scratch) noexcept;

}  // namespace dtrain::net
