// PowerSGD: warm-started power iteration with Gram-Schmidt, written as plain loops in a
// fixed summation order (not Eigen: its GEMM kernels use FMA on NEON/AVX2 and block
// differently per ISA, so its results are not byte-identical across machines).
#include "dtrain/codec/codec_powersgd.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "dtrain/core/rng.h"

namespace dtrain::codec {
namespace {

// Sum of a[i]*b[i] (b in double, a in float or double) with four interleaved partial
// sums combined as (s0+s1)+(s2+s3)+tail: a fixed order, so the result does not depend
// on the compiler's vectorization choices, and the dependency chain is 4x shorter.
template <class A>
double dot(const A* a, const double* b, std::size_t n) noexcept {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += static_cast<double>(a[i]) * b[i];
    s1 += static_cast<double>(a[i + 1]) * b[i + 1];
    s2 += static_cast<double>(a[i + 2]) * b[i + 2];
    s3 += static_cast<double>(a[i + 3]) * b[i + 3];
  }
  double s = (s0 + s1) + (s2 + s3);
  for (; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

float to_f32_saturated(double v) noexcept {
  constexpr double hi = static_cast<double>(std::numeric_limits<float>::max());
  return static_cast<float>(std::clamp(v, -hi, hi));
}

struct shape {
  std::uint32_t rows, cols, rank;
};

shape read_shape(std::span<const std::byte> params) noexcept {
  byte_reader r(params);
  shape s{};
  s.rows = r.get<std::uint32_t>();
  s.cols = r.get<std::uint32_t>();
  s.rank = r.get<std::uint32_t>();
  return s;
}

bool shape_ok(const shape& s) noexcept {
  if (s.rows == 0 || s.cols == 0 || s.rank == 0) return false;
  if (static_cast<std::uint64_t>(s.rows) * s.cols > powersgd_max_elements) return false;
  return s.rank <= std::min(s.rows, s.cols);
}

}  // namespace

powersgd_codec::powersgd_codec(std::uint32_t rows, std::uint32_t cols, std::uint32_t rank,
                               std::uint64_t seed) noexcept
    : rows_(rows), cols_(cols), rank_(rank), seed_(seed) {
  DTRAIN_ASSERT(shape_ok({rows, cols, rank}));
}

std::string powersgd_codec::spec() const {
  return "powersgd:rows=" + std::to_string(rows_) + ",cols=" + std::to_string(cols_) +
         ",rank=" + std::to_string(rank_) + ",seed=" + std::to_string(seed_);
}

result<std::unique_ptr<codec>> powersgd_codec::from_spec(spec_args& a) {
  constexpr std::uint64_t u32max = std::numeric_limits<std::uint32_t>::max();
  auto rows = a.get_uint("rows", 0, 0, u32max);
  if (!rows.ok()) return rows.status();
  auto cols = a.get_uint("cols", 0, 0, u32max);
  if (!cols.ok()) return cols.status();
  if (*rows == 0 || *cols == 0)
    return invalid_argument("powersgd: 'rows' and 'cols' are required and must be >= 1");
  if (*rows * *cols > powersgd_max_elements)
    return invalid_argument("powersgd: rows*cols = " + std::to_string(*rows * *cols) + " exceeds 2^48");
  const std::uint64_t max_rank = std::min(*rows, *cols);
  auto rank = a.get_uint("rank", std::min<std::uint64_t>(2, max_rank), 1, max_rank);
  if (!rank.ok()) return rank.status();
  auto seed = a.get_uint("seed", 0, 0, std::numeric_limits<std::uint64_t>::max());
  if (!seed.ok()) return seed.status();
  DTRAIN_RETURN_IF_ERROR(a.finish());
  return std::unique_ptr<codec>(std::make_unique<powersgd_codec>(
      static_cast<std::uint32_t>(*rows), static_cast<std::uint32_t>(*cols), static_cast<std::uint32_t>(*rank), *seed));
}

result<std::unique_ptr<codec>> powersgd_codec::from_params(std::span<const std::byte> params, std::uint64_t count) {
  if (params.size() != 12) return data_loss("powersgd payload parameters must be 12 bytes");
  const shape s = read_shape(params);
  if (!shape_ok(s)) return data_loss("powersgd payload has an invalid shape or rank");
  if (static_cast<std::uint64_t>(s.rows) * s.cols != count)
    return data_loss("powersgd payload shape does not match its element count");
  return std::unique_ptr<codec>(std::make_unique<powersgd_codec>(s.rows, s.cols, s.rank, 0));
}

void powersgd_codec::write_params(byte_writer& w) const noexcept {
  w.put<std::uint32_t>(rows_);
  w.put<std::uint32_t>(cols_);
  w.put<std::uint32_t>(rank_);
}

status powersgd_codec::check_params(std::span<const std::byte> params, std::uint64_t count) const {
  const shape s = read_shape(params);
  if (!shape_ok(s) || static_cast<std::uint64_t>(s.rows) * s.cols != count)
    return data_loss("powersgd payload has an invalid shape or rank");
  if (s.rows != rows_ || s.cols != cols_ || s.rank != rank_)
    return failed_precondition("powersgd payload is " + std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                               " rank " + std::to_string(s.rank) + ", this decoder is " + std::to_string(rows_) +
                               "x" + std::to_string(cols_) + " rank " + std::to_string(rank_));
  return {};
}

std::size_t powersgd_codec::body_bytes(std::size_t) const noexcept {
  return std::size_t{4} * rank_ * (std::size_t{rows_} + cols_);
}

status powersgd_codec::check_input(std::span<const float> in) const {
  if (in.size() != std::size_t{rows_} * cols_)
    return invalid_argument("powersgd: input has " + std::to_string(in.size()) + " elements, the codec's shape " +
                            std::to_string(rows_) + "x" + std::to_string(cols_) + " needs " +
                            std::to_string(std::size_t{rows_} * cols_));
  return {};
}

void powersgd_codec::encode_body(std::span<const float> in, std::span<std::byte> body) {
  const std::size_t R = rows_, C = cols_, r = rank_;
  if (q_.empty()) {
    // Uniform in [-1, 1) from the top bits of each Philox word: integer-only, so the
    // start is the same everywhere (Box-Muller normals would need libm).
    q_.resize(r * C);
    p_.resize(r * R);
    qn_.resize(r * C);
    const counter_rng rng(seed_);
    for (std::size_t i = 0; i < q_.size(); ++i)
      q_[i] = static_cast<double>(static_cast<std::int32_t>(rng.at(i))) * 0x1p-31;
  }
  const float* m = in.data();

  // P = M Q_prev.
  for (std::size_t i = 0; i < R; ++i)
    for (std::size_t k = 0; k < r; ++k) p_[k * R + i] = dot(m + i * C, q_.data() + k * C, C);

  // Orthonormalize P's columns: Gram-Schmidt run twice ("twice is enough", Giraud et al.
  // 2005), so columns stay orthogonal even after heavy cancellation. A column that
  // vanishes relative to its norm before projection lies in the span of the earlier
  // ones (M has rank < r, or M = 0) and becomes exactly zero.
  for (std::size_t k = 0; k < r; ++k) {
    double* pk = p_.data() + k * R;
    const double before = std::sqrt(dot(pk, pk, R));
    for (int pass = 0; pass < 2; ++pass)
      for (std::size_t l = 0; l < k; ++l) {
        const double* pl = p_.data() + l * R;
        const double d = dot(pl, pk, R);
        for (std::size_t i = 0; i < R; ++i) pk[i] -= d * pl[i];
      }
    const double after = std::sqrt(dot(pk, pk, R));
    if (!(after > before * 1e-10) || after == 0) {
      std::fill(pk, pk + R, 0.0);
    } else {
      for (std::size_t i = 0; i < R; ++i) pk[i] /= after;
    }
  }

  // Q = M^T P, accumulated row by row of M: each element sums over i in order.
  std::fill(qn_.begin(), qn_.end(), 0.0);
  for (std::size_t i = 0; i < R; ++i) {
    const float* row = m + i * C;
    for (std::size_t k = 0; k < r; ++k) {
      const double pik = p_[k * R + i];
      double* qk = qn_.data() + k * C;
      for (std::size_t j = 0; j < C; ++j) qk[j] += static_cast<double>(row[j]) * pik;
    }
  }

  std::byte* b = body.data();
  for (std::size_t i = 0; i < R; ++i)
    for (std::size_t k = 0; k < r; ++k, b += 4) store_le<float>(b, static_cast<float>(p_[k * R + i]));
  // |Q| <= ||M column||_2 can exceed the float range only for inputs near FLT_MAX: saturate.
  for (std::size_t j = 0; j < C; ++j)
    for (std::size_t k = 0; k < r; ++k, b += 4) store_le<float>(b, to_f32_saturated(qn_[k * C + j]));

  // Warm start for the next encode. A zero column of Q (P column zeroed above) would stay
  // zero forever, so that column keeps its previous direction instead.
  for (std::size_t k = 0; k < r; ++k) {
    const double* src = qn_.data() + k * C;
    if (std::any_of(src, src + C, [](double v) { return v != 0.0; })) std::copy(src, src + C, q_.data() + k * C);
  }
}

status powersgd_codec::decode_body(std::span<const std::byte>, std::span<const std::byte> body, std::span<float> out,
                                   bool accumulate, float weight) const {
  const std::size_t R = rows_, C = cols_, r = rank_;
  const std::byte* pb = body.data();
  const std::byte* qb = pb + 4 * R * r;
  // Validate everything before writing: P has orthonormal (or zero) columns, so every
  // entry lies in [-1, 1]; Q is finite.
  for (std::size_t i = 0; i < R * r; ++i) {
    const float v = load_le<float>(pb + 4 * i);
    if (!(std::fabs(v) <= 1.0f)) return data_loss("powersgd payload: P entry " + std::to_string(i) + " is not in [-1, 1]");
  }
  for (std::size_t i = 0; i < C * r; ++i) {
    const float v = load_le<float>(qb + 4 * i);
    if (!std::isfinite(v)) return data_loss("powersgd payload: Q entry " + std::to_string(i) + " is not finite");
  }
  // out[i][j] = sum_k P[i][k] * Q[j][k], summed in k order in float.
  for (std::size_t i = 0; i < R; ++i) {
    const std::byte* prow = pb + 4 * i * r;
    float* orow = out.data() + i * C;
    for (std::size_t j = 0; j < C; ++j) {
      const std::byte* qrow = qb + 4 * j * r;
      float v = 0.0f;
      for (std::size_t k = 0; k < r; ++k) v += load_le<float>(prow + 4 * k) * load_le<float>(qrow + 4 * k);
      orow[j] = accumulate ? orow[j] + weight * v : v;
    }
  }
  return {};
}

}  // namespace dtrain::codec
