// dtrain/toploc/topk.h: the k largest activations by magnitude, with a fixed tie rule.
//
// Activations arrive as 16-bit float patterns (bf16 or fp16). For both formats the
// pattern with the sign bit cleared orders like |x| (sign-magnitude), so the key of an
// element is `bits & 0x7fff`. NaN patterns have larger keys than Inf and are therefore
// selected first, like torch.topk(abs(v)) on the CPU. The order is total and documented:
// larger key first, then lower index. Ties are common in bf16 (7 mantissa bits), and
// fixing the rule is what makes proofs reproducible across implementations (the
// reference leaves it to torch; docs/toploc.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dtrain/core/status.h"

namespace dtrain::toploc {

/// Writes the indices of the min(k, x.size()) elements of `x` with the largest
/// magnitude to `out`, in selection order: key (bits & 0x7fff) descending, then index
/// ascending. Returns the count written.
/// Errors: invalid_argument when k == 0, out.size() < min(k, x.size()) or x.size() >=
/// 2^32 (indices are u32).
/// Uses an AVX2 kernel when the CPU has it, else portable code; both give the same
/// answer (the order is total).
result<std::size_t> select_topk(std::span<const std::uint16_t> x, std::size_t k, std::span<std::uint32_t> out);

/// The plain reference: a full sort by the same order. O(n log n); for tests.
result<std::size_t> select_topk_reference(std::span<const std::uint16_t> x, std::size_t k,
                                          std::span<std::uint32_t> out);

}  // namespace dtrain::toploc
