// lib/toploc/poly.cpp: interpolation over GF(65497) into monomial coefficients, and
// evaluation.
#include "dtrain/toploc/poly.h"

#include <algorithm>
#include <string>
#include <vector>

#include "dtrain/toploc/field.h"
#include "kernels.h"

namespace dtrain::toploc {
namespace {

status check_points(std::span<const std::uint32_t> x, std::span<const std::uint32_t> y,
                    std::span<std::uint16_t> coeffs) {
  if (x.size() != y.size())
    return invalid_argument("interpolate: " + std::to_string(x.size()) + " x values but " +
                            std::to_string(y.size()) + " y values");
  if (x.empty()) return invalid_argument("interpolate: no points");
  if (coeffs.size() < x.size())
    return invalid_argument("interpolate: room for " + std::to_string(coeffs.size()) + " coefficients, needs " +
                            std::to_string(x.size()));
  std::vector<std::uint32_t> sorted(x.begin(), x.end());
  std::sort(sorted.begin(), sorted.end());
  if (sorted.back() >= prime)
    return invalid_argument("interpolate: x = " + std::to_string(sorted.back()) + " is not below p = 65497");
  const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) return invalid_argument("interpolate: x = " + std::to_string(*dup) + " appears twice");
  return ok_status();
}

}  // namespace

// Newton's divided differences (each level one vectorized pass, inverses from the table),
// then the Newton form c_0 + (X - x_0)(c_1 + (X - x_1)(...)) multiplied out from the
// innermost factor. Both steps are O(n^2).
status interpolate(std::span<const std::uint32_t> x, std::span<const std::uint32_t> y,
                   std::span<std::uint16_t> coeffs) {
  DTRAIN_RETURN_IF_ERROR(check_points(x, y, coeffs));
  const std::size_t n = x.size();
  const std::uint16_t* inv = inverse_table().data();
  std::vector<std::uint32_t> a(n + 1), b(n + 1);
  for (std::size_t i = 0; i < n; ++i) a[i] = gf::reduce(y[i]);
  for (std::size_t j = 1; j < n; ++j) {
    detail::divided_difference_level(a.data(), b.data(), x.data(), n, j, inv);
    a.swap(b);
  }
  // a holds the Newton coefficients; expand into b (ping-pong through `poly`/`next`).
  std::vector<std::uint32_t> poly(n + 1), next(n + 1);
  poly[0] = a[n - 1];
  for (std::size_t len = 1; len < n; ++len) {
    const std::size_t i = n - 1 - len;
    detail::times_linear_plus(poly.data(), next.data(), len, x[i], a[i]);
    poly.swap(next);
  }
  for (std::size_t i = 0; i < n; ++i) coeffs[i] = static_cast<std::uint16_t>(poly[i]);
  return ok_status();
}

// Lagrange: P = sum_i y_i · prod_{j != i} (X - x_j) / (x_i - x_j), each basis polynomial
// multiplied out on its own. O(n^3); plain and obviously right.
status interpolate_reference(std::span<const std::uint32_t> x, std::span<const std::uint32_t> y,
                             std::span<std::uint16_t> coeffs) {
  DTRAIN_RETURN_IF_ERROR(check_points(x, y, coeffs));
  const std::size_t n = x.size();
  std::vector<std::uint32_t> sum(n, 0), basis(n + 1);
  for (std::size_t i = 0; i < n; ++i) {
    std::fill(basis.begin(), basis.end(), 0);
    basis[0] = 1;
    std::size_t deg = 0;
    std::uint32_t denom = 1;
    for (std::size_t j = 0; j < n; ++j) {
      if (j == i) continue;
      // basis *= (X - x_j)
      for (std::size_t d = deg + 2; d-- > 0;) {  // d = deg + 1 down to 0
        const std::uint32_t lower = d == 0 ? 0 : basis[d - 1];
        basis[d] = gf::sub(lower, gf::mul(basis[d], x[j]));
      }
      ++deg;
      denom = gf::mul(denom, gf::sub(x[i], x[j]));
    }
    const std::uint32_t scale = gf::mul(gf::reduce(y[i]), gf::inv(denom));
    for (std::size_t d = 0; d < n; ++d) sum[d] = gf::add(sum[d], gf::mul(scale, basis[d]));
  }
  for (std::size_t d = 0; d < n; ++d) coeffs[d] = static_cast<std::uint16_t>(sum[d]);
  return ok_status();
}

std::uint32_t evaluate(std::span<const std::uint16_t> coeffs, std::uint32_t x) noexcept {
  const std::uint32_t xr = gf::reduce(x);
  std::uint32_t acc = 0;
  for (std::size_t j = coeffs.size(); j-- > 0;) acc = gf::add(gf::mul(acc, xr), coeffs[j]);
  return acc;
}

void evaluate_many(std::span<const std::uint16_t> coeffs, std::span<const std::uint32_t> x,
                   std::span<std::uint32_t> out) noexcept {
  const std::size_t n = x.size();
  std::vector<std::uint32_t> xr(n);
  for (std::size_t i = 0; i < n; ++i) xr[i] = gf::reduce(x[i]);
  std::fill_n(out.begin(), n, 0u);
  for (std::size_t j = coeffs.size(); j-- > 0;) detail::horner_step(out.data(), xr.data(), n, coeffs[j]);
}

}  // namespace dtrain::toploc
