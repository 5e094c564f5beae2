// lib/toploc/topk_select.h (private): top-k selection with a caller-owned workspace, for
// the provers and verifiers that run it once per chunk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace dtrain::toploc::detail {

struct topk_workspace {
  std::vector<std::uint16_t> block_max;
  std::vector<std::uint16_t> scratch;
  std::vector<std::uint64_t> candidates;
};

/// Writes the indices of the min(k, n) largest-magnitude elements (selection order) to
/// out. @pre k >= 1, out.size() >= min(k, x.size()), x.size() < 2^32, x non-empty.
std::size_t select_topk_into(std::span<const std::uint16_t> x, std::size_t k, std::span<std::uint32_t> out,
                             topk_workspace& ws);

}  // namespace dtrain::toploc::detail
