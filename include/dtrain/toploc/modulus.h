// dtrain/toploc/modulus.h: the injective modulus. Proofs evaluate the polynomial at
// idx mod m rather than at idx, so indices of any size map to field points; m is the
// largest value <= 65497 for which the residues of the selected indices are distinct.
// Because m <= p, distinct residues are distinct field points.
#pragma once

#include <cstdint>
#include <span>

#include "dtrain/core/status.h"

namespace dtrain::toploc {

/// Largest m in [max(1, idx.size()), 65497] with all idx[i] mod m distinct.
/// Errors: invalid_argument when idx holds a duplicate (no modulus can separate them)
/// or is empty; out_of_range when no m in that range works (only possible when indices
/// exceed 2^16 and collide for every candidate; never seen in practice).
/// Usually m = 65497 on the first try; each further candidate costs O(idx.size()).
result<std::uint32_t> injective_modulus(std::span<const std::uint32_t> idx);

}  // namespace dtrain::toploc
