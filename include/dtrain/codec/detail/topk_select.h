// dtrain/codec/detail/topk_select.h: exact top-k selection inside one chunk (at most
// 65536 elements) with a reusable workspace. Tie rule: larger |x| first, then smaller
// index. Used by the topk, dct_topk codecs; not part of the stable API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace dtrain::codec::detail {

/// Largest chunk topk_selector accepts.
inline constexpr std::size_t topk_max_chunk = 65536;

/// Finds the k entries of a chunk with the largest magnitude (or key). Allocates its
/// workspace on the first call for a given chunk size, never in steady state. Not
/// thread-safe: one selector per encoding thread.
class topk_selector {
 public:
  /// Writes to idx the indices of the min(k, x.size()) elements with the largest |x|,
  /// ties broken by smaller index, sorted by index ascending; returns how many.
  /// +0 and -0 tie. `next` (optional) is memory the caller reads next (the next chunk):
  /// it is prefetched while this chunk is processed; it does not affect the result.
  /// @pre x.size() <= topk_max_chunk, every x finite, idx.size() >= min(k, x.size()).
  std::size_t select_abs(std::span<const float> x, std::size_t k, std::span<std::uint32_t> idx,
                         std::span<const float> next = {});


 private:
  std::size_t select_sampled(const float* xs, std::size_t n, std::size_t k, std::uint32_t hi, std::uint32_t* out,
                             std::span<const float> next);
  std::size_t select_full(const float* xs, std::size_t n, std::size_t k, std::uint32_t hi, std::uint32_t* out);
  std::size_t finish_candidates(const float* xs, std::uint32_t* cand, std::size_t nc, std::size_t k,
                                std::uint32_t hi, std::uint32_t lo, std::uint32_t* out);

  std::vector<std::uint8_t> bins_;      // per element: distance-to-max bucket
  std::vector<std::uint32_t> above_;    // indices strictly above the threshold bucket
  std::vector<std::uint32_t> cand_;     // indices inside the threshold bucket
  std::vector<std::uint32_t> cand_keys_;
};

}  // namespace dtrain::codec::detail
