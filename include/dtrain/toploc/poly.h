// dtrain/toploc/poly.h: polynomial interpolation and evaluation over GF(65497).
//
// interpolate() returns the canonical monomial coefficients c_0..c_{n-1} (lowest degree
// first) of the unique P with deg P < n and P(x_i) = y_i mod p. They do not depend on the
// order of the points or on the algorithm, which is what makes our proofs byte-identical
// to the reference's for the same points. The fast path is Newton's divided differences
// with table inverses followed by a Newton-to-monomial expansion, O(n^2) vectorizable
// multiply-adds; the reference path is Lagrange's formula, kept for the parity tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dtrain/core/status.h"

namespace dtrain::toploc {

/// Coefficients of the interpolating polynomial, written to coeffs[0..n) (n = x.size()),
/// each < p. y values are reduced mod p first (bf16 patterns 0xffd9..0xffff alias, as in
/// the reference).
/// Errors: invalid_argument when x.size() != y.size(), x is empty, coeffs.size() < n, an
/// x_i >= p, or two x_i are equal. coeffs is untouched on error.
status interpolate(std::span<const std::uint32_t> x, std::span<const std::uint32_t> y,
                   std::span<std::uint16_t> coeffs);

/// The same result by Lagrange's formula with Fermat inverses, O(n^2) scalar code; for
/// parity tests only.
status interpolate_reference(std::span<const std::uint32_t> x, std::span<const std::uint32_t> y,
                             std::span<std::uint16_t> coeffs);

/// P(x) by Horner's rule; x is reduced mod p. Coefficients must be < p (parse_proof
/// guarantees it). An empty coefficient list is the zero polynomial.
std::uint32_t evaluate(std::span<const std::uint16_t> coeffs, std::uint32_t x) noexcept;

/// out[i] = P(x[i]) for every i, all points at once (vectorized across points).
/// @pre out.size() >= x.size(); every coefficient < p.
void evaluate_many(std::span<const std::uint16_t> coeffs, std::span<const std::uint32_t> x,
                   std::span<std::uint32_t> out) noexcept;

}  // namespace dtrain::toploc
