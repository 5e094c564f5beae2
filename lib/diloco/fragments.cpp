// Streaming DiLoCo fragment assignment and sync offsets.
#include "dtrain/diloco/fragments.h"

#include <string>

namespace dtrain::diloco {

result<std::vector<std::uint32_t>> assign_fragments(std::size_t tensors, std::uint32_t fragments,
                                                    fragment_layout layout) {
  if (fragments == 0) return invalid_argument("diloco: fragments must be >= 1");
  if (fragments > tensors)
    return invalid_argument("diloco: fragments (" + std::to_string(fragments) + ") exceeds the number of tensors (" +
                            std::to_string(tensors) + "); a fragment would be empty");
  if (tensors > (std::size_t{1} << 32)) return invalid_argument("diloco: more than 2^32 tensors");
  std::vector<std::uint32_t> out(tensors);
  for (std::size_t i = 0; i < tensors; ++i) {
    out[i] = layout == fragment_layout::strided
                 ? static_cast<std::uint32_t>(i % fragments)
                 : static_cast<std::uint32_t>((std::uint64_t{i} * fragments) / tensors);
  }
  return out;
}

std::uint32_t sync_offset(std::uint32_t p, std::uint32_t fragments, std::uint32_t inner_steps,
                          bool staggered) noexcept {
  DTRAIN_ASSERT(fragments >= 1 && inner_steps >= 1 && p < fragments);
  if (!staggered) return 0;
  return static_cast<std::uint32_t>((std::uint64_t{p} * inner_steps) / fragments);
}

}  // namespace dtrain::diloco
