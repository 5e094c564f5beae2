// Chunk plans for byte files and tensor lists, and erasure stripes (docs/shard.md
// "Chunking").
#include "dtrain/shard/chunker.h"

#include <algorithm>
#include <string>
#include <utility>

namespace dtrain::shard {
namespace {

status too_many(std::uint64_t n) {
  return invalid_argument("the plan would need " + std::to_string(n) + " chunks; at most " +
                          std::to_string(max_chunks) + " fit a manifest (use a larger chunk size)");
}

}  // namespace

tensor_desc make_tensor(std::string name, dtype t, std::vector<std::uint64_t> shape) {
  std::uint64_t n = dtype_size(t);
  for (std::uint64_t d : shape) {
    DTRAIN_ASSERT((d == 0 || n <= std::numeric_limits<std::uint64_t>::max() / d) && "tensor size overflows");
    n *= d;
  }
  return tensor_desc{std::move(name), std::string(dtype_name(t)), std::move(shape), n};
}

result<std::vector<chunk_span>> plan_file_chunks(std::uint64_t total_size, std::uint64_t chunk_size) {
  if (chunk_size == 0) return invalid_argument("plan_file_chunks: chunk size 0");
  const std::uint64_t n = total_size / chunk_size + (total_size % chunk_size != 0 ? 1 : 0);
  if (n > max_chunks) return too_many(n);
  std::vector<chunk_span> plan;
  plan.reserve(static_cast<std::size_t>(n));
  for (std::uint64_t off = 0; off < total_size; off += std::min(chunk_size, total_size - off))
    plan.push_back({off, std::min(chunk_size, total_size - off), no_tensor});
  return plan;
}

result<std::vector<std::uint64_t>> tensor_offsets(std::span<const tensor_desc> tensors) {
  std::vector<std::uint64_t> off(tensors.size() + 1, 0);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].size > std::numeric_limits<std::uint64_t>::max() - off[i])
      return invalid_argument("tensor sizes sum past 2^64 - 1 at tensor " + std::to_string(i) + " (" +
                              tensors[i].name + ")");
    off[i + 1] = off[i] + tensors[i].size;
  }
  return off;
}

result<std::vector<chunk_span>> plan_tensor_chunks(std::span<const tensor_desc> tensors, std::uint64_t chunk_size) {
  if (chunk_size == 0) return invalid_argument("plan_tensor_chunks: chunk size 0");
  auto offsets = tensor_offsets(tensors);
  if (!offsets.ok()) return std::move(offsets).status();
  std::vector<chunk_span> plan;
  // The chunk being packed with small tensors: [open_start, open_end), or none.
  bool open = false;
  chunk_span cur;
  const auto close = [&]() -> status {
    if (open) {
      if (plan.size() >= max_chunks) return too_many(plan.size() + 1);
      plan.push_back(cur);
      open = false;
    }
    return {};
  };
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::uint64_t size = tensors[i].size;
    const std::uint64_t start = (*offsets)[i];
    if (size == 0) continue;
    // 4·size >= C without overflow: size >= ceil(C / 4).
    const bool big = size >= chunk_size / 4 + (chunk_size % 4 != 0 ? 1 : 0);
    if (big) {
      DTRAIN_RETURN_IF_ERROR(close());
      for (std::uint64_t done = 0; done < size;) {
        const std::uint64_t len = std::min(chunk_size, size - done);
        if (plan.size() >= max_chunks) return too_many(plan.size() + 1);
        plan.push_back({start + done, len, i});
        done += len;
      }
      continue;
    }
    if (open && cur.length + size > chunk_size) DTRAIN_RETURN_IF_ERROR(close());
    if (!open) {
      cur = {start, 0, i};
      open = true;
    }
    cur.length += size;
  }
  DTRAIN_RETURN_IF_ERROR(close());
  return plan;
}

result<stripe_layout> plan_stripes(std::span<const std::uint64_t> data_lengths, std::size_t k, std::size_t m) {
  stripe_layout layout;
  layout.data_chunks = data_lengths.size();
  if (m == 0) {
    if (data_lengths.size() > max_chunks) return too_many(data_lengths.size());
    return layout;
  }
  if (k == 0 || k + m > 255)
    return invalid_argument("erasure parameters k = " + std::to_string(k) + ", m = " + std::to_string(m) +
                            ": need k >= 1 and k + m <= 255");
  layout.k = k;
  layout.m = m;
  const std::uint64_t n = data_lengths.size();
  const std::uint64_t stripes = n / k + (n % k != 0 ? 1 : 0);
  if (n + stripes * m > max_chunks) return too_many(n + stripes * m);
  layout.stripe_length.resize(static_cast<std::size_t>(stripes), 0);
  for (std::size_t i = 0; i < data_lengths.size(); ++i)
    layout.stripe_length[i / k] = std::max(layout.stripe_length[i / k], data_lengths[i]);
  return layout;
}

}  // namespace dtrain::shard
