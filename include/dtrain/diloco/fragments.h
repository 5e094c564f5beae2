// dtrain/diloco/fragments.h: how Streaming DiLoCo (arXiv 2501.18512) splits a model's
// tensors into P fragments and when each fragment synchronizes. Pure functions, used by
// the engine and usable by a framework that wants to show the schedule.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::diloco {

/// Which tensors go into which fragment.
enum class fragment_layout : std::uint8_t {
  /// Tensor i belongs to fragment i mod P: every fragment holds layers from the whole
  /// depth (the paper finds this better than contiguous blocks).
  strided = 0,
  /// Tensor i belongs to fragment floor(i·P / T) for T tensors: P consecutive blocks whose
  /// tensor counts differ by at most one.
  contiguous = 1,
};

/// Fragment of each of `tensors` tensors (result[i] in [0, fragments)).
/// Errors: invalid_argument when fragments == 0 or fragments > tensors (a fragment would
/// be empty). Deterministic.
result<std::vector<std::uint32_t>> assign_fragments(std::size_t tensors, std::uint32_t fragments,
                                                    fragment_layout layout);

/// Sync offset t_p of fragment p: floor(p·H / P) when staggered, 0 otherwise. Fragment p
/// synchronizes after inner step s (s = 1, 2, ...) when s mod H == t_p, so with P = 1 it
/// syncs at H, 2H, ... as plain DiLoCo and with staggering the P fragments' syncs are
/// spread evenly over each window of H steps (peak bandwidth / P).
/// @pre p < fragments, fragments >= 1, inner_steps >= 1.
std::uint32_t sync_offset(std::uint32_t p, std::uint32_t fragments, std::uint32_t inner_steps, bool staggered) noexcept;

/// True when fragment p (offset t_p) synchronizes after inner step `step` (>= 1).
constexpr bool syncs_at(std::uint64_t step, std::uint32_t offset, std::uint32_t inner_steps) noexcept {
  return step > 0 && step % inner_steps == offset;
}

}  // namespace dtrain::diloco
