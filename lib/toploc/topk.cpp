// lib/toploc/topk.cpp: top-k by magnitude with the rule |x| descending, index ascending.
//
// Fast path for large chunks (docs/toploc.md): the maximum key of every 64-value block
// (one vectorized pass), the k-th largest block maximum t (a lower bound of the k-th
// largest key, since k distinct blocks reach it), then only blocks whose maximum reaches t
// are scanned for keys >= t. At least k candidates survive, and every element of the true
// top-k is among them; an exact selection over (key, index) composites finishes. Small
// chunks skip the filter.
#include "dtrain/toploc/topk.h"

#include <algorithm>
#include <functional>
#include <string>

#include "kernels.h"
#include "topk_select.h"

namespace dtrain::toploc {
namespace detail {
namespace {

constexpr std::size_t block = 64;

// Sorts the candidates' best `kk` to the front in selection order and writes their
// indices.
std::size_t finish(std::span<std::uint64_t> cand, std::size_t kk, std::span<std::uint32_t> out) {
  if (cand.size() > kk) std::nth_element(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(kk - 1), cand.end(), std::greater<>());
  std::sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(kk), std::greater<>());
  for (std::size_t i = 0; i < kk; ++i) out[i] = 0xffffffffu - static_cast<std::uint32_t>(cand[i] & 0xffffffffu);
  return kk;
}

}  // namespace

std::size_t select_topk_into(std::span<const std::uint16_t> x, std::size_t k, std::span<std::uint32_t> out,
                             topk_workspace& ws) {
  const std::size_t n = x.size();
  const std::size_t kk = std::min(k, n);
  const std::size_t blocks = (n + block - 1) / block;
  if (blocks <= kk || n <= 4 * block) {
    // Few values: every one is a candidate.
    ws.candidates.resize(n);
    const std::size_t c = collect_at_least(x.data(), 0, n, 0, ws.candidates.data());
    return finish(std::span(ws.candidates).first(c), kk, out);
  }
  ws.block_max.resize(blocks);
  block_max_keys(x.data(), n, ws.block_max.data());
  ws.scratch.assign(ws.block_max.begin(), ws.block_max.end());
  std::nth_element(ws.scratch.begin(), ws.scratch.begin() + static_cast<std::ptrdiff_t>(kk - 1), ws.scratch.end(),
                   std::greater<>());
  const std::uint16_t t = ws.scratch[kk - 1];
  std::size_t c = 0;
  ws.candidates.resize(std::max<std::size_t>(ws.candidates.size(), 16 * kk + block));
  for (std::size_t b = 0; b < blocks; ++b) {
    if (ws.block_max[b] < t) continue;
    if (ws.candidates.size() < c + block) ws.candidates.resize(2 * ws.candidates.size() + block);
    const std::size_t first = b * block;
    c += collect_at_least(x.data(), first, std::min(block, n - first), t, ws.candidates.data() + c);
  }
  return finish(std::span(ws.candidates).first(c), kk, out);
}

}  // namespace detail

namespace {
status check_args(std::span<const std::uint16_t> x, std::size_t k, std::span<std::uint32_t> out) {
  if (k == 0) return invalid_argument("select_topk: k must be at least 1");
  if (x.size() >= (std::size_t{1} << 32))
    return invalid_argument("select_topk: " + std::to_string(x.size()) + " values; indices are u32 (< 2^32 values)");
  if (out.size() < std::min(k, x.size()))
    return invalid_argument("select_topk: out holds " + std::to_string(out.size()) + " entries, needs " +
                            std::to_string(std::min(k, x.size())));
  return ok_status();
}
}  // namespace

result<std::size_t> select_topk(std::span<const std::uint16_t> x, std::size_t k, std::span<std::uint32_t> out) {
  DTRAIN_RETURN_IF_ERROR(check_args(x, k, out));
  if (x.empty()) return std::size_t{0};
  detail::topk_workspace ws;
  return detail::select_topk_into(x, k, out, ws);
}

result<std::size_t> select_topk_reference(std::span<const std::uint16_t> x, std::size_t k,
                                          std::span<std::uint32_t> out) {
  DTRAIN_RETURN_IF_ERROR(check_args(x, k, out));
  std::vector<std::uint32_t> order(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) order[i] = static_cast<std::uint32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    return (x[a] & 0x7fff) > (x[b] & 0x7fff);  // stable: equal keys keep index order
  });
  const std::size_t kk = std::min(k, x.size());
  std::copy_n(order.begin(), kk, out.begin());
  return kk;
}

}  // namespace dtrain::toploc
