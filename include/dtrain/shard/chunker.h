// dtrain/shard/chunker.h: where a checkpoint is cut into chunks, for a byte file (fixed
// size) or a list of named tensors (boundaries at big tensors, small tensors packed), and
// how the chunks are grouped into erasure-coding stripes. Rules: docs/shard.md "Chunking".
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dtrain/core/dtype.h"
#include "dtrain/core/status.h"

namespace dtrain::shard {

/// 4 MiB: the default chunk size.
inline constexpr std::uint64_t default_chunk_size = std::uint64_t{4} << 20;
/// Most chunks (data plus parity) a checkpoint may have: the manifest counts them in u32.
inline constexpr std::uint64_t max_chunks = std::numeric_limits<std::uint32_t>::max();
/// first_tensor of a chunk of a plain byte file (no tensor table).
inline constexpr std::uint64_t no_tensor = std::numeric_limits<std::uint64_t>::max();

/// One tensor of a checkpoint. Tensors are laid out contiguously in list order: tensor i
/// starts where tensor i-1 ends. `dtype` is free text for the manifest ("f32", "bf16",
/// "int8", ...); `size` is the tensor's byte size (not checked against shape).
struct tensor_desc {
  std::string name;                  ///< UTF-8, at most 65535 bytes
  std::string dtype;                 ///< at most 255 bytes
  std::vector<std::uint64_t> shape;  ///< at most 255 dimensions
  std::uint64_t size = 0;            ///< bytes

  friend bool operator==(const tensor_desc&, const tensor_desc&) = default;
};

/// A tensor_desc for a dtrain dtype: dtype_name(t) and size = product(shape) · dtype_size(t).
/// @pre the product does not overflow 64 bits (asserted).
tensor_desc make_tensor(std::string name, dtype t, std::vector<std::uint64_t> shape);

/// One chunk of a plan: bytes [offset, offset + length) of the checkpoint.
struct chunk_span {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  /// Index of the tensor holding the chunk's first byte; no_tensor for a byte file.
  std::uint64_t first_tensor = no_tensor;

  friend bool operator==(const chunk_span&, const chunk_span&) = default;
};

/// A byte file of `total_size` bytes cut every `chunk_size` bytes (the last chunk may be
/// shorter; a 0-byte file has no chunks). Deterministic.
/// Errors: invalid_argument for chunk_size 0 or more than max_chunks chunks.
result<std::vector<chunk_span>> plan_file_chunks(std::uint64_t total_size, std::uint64_t chunk_size = default_chunk_size);

/// Chunks for contiguous tensors. With C = chunk_size, a tensor is *big* when its size
/// is >= C/4 (exactly: 4·size >= C) and non-zero. Each big tensor starts a new chunk and
/// is cut every C bytes, its last piece ending at the tensor's end, so its chunks (and
/// their hashes) depend only on the tensor itself. Runs of small tensors between big ones
/// are packed greedily: a small tensor that would push the current chunk past C starts a
/// new one. Zero-byte tensors take no space and never start a chunk. Every chunk holds
/// 1..C bytes. Deterministic.
/// Errors: invalid_argument for chunk_size 0, a total size past 2^64 - 1, or more than
/// max_chunks chunks.
result<std::vector<chunk_span>> plan_tensor_chunks(std::span<const tensor_desc> tensors,
                                                   std::uint64_t chunk_size = default_chunk_size);

/// Offset of each tensor (running sum of sizes), and the total as the last element
/// (tensors.size() + 1 values). Errors: invalid_argument when the sum overflows 64 bits.
result<std::vector<std::uint64_t>> tensor_offsets(std::span<const tensor_desc> tensors);

/// Erasure-coding stripes over n data chunks: stripe s holds data chunks
/// [s·k, min((s+1)·k, n)) and m parity chunks. All chunks of a stripe are coded at the
/// stripe's length, the largest data chunk length in it: shorter chunks are zero-padded
/// to it, and a short last stripe (fewer than k data chunks) is coded as if the missing
/// data chunks were all-zero chunks of that length (never sent, never hashed). Parity
/// chunks have the stripe's length.
/// Global chunk indices: data chunks 0..n-1, then parity chunk j of stripe s is
/// n + s·m + j. With m == 0 there is no erasure coding and no stripes.
struct stripe_layout {
  std::size_t k = 0;
  std::size_t m = 0;
  std::size_t data_chunks = 0;
  /// Length of each stripe (empty when m == 0).
  std::vector<std::uint64_t> stripe_length;

  std::size_t stripes() const noexcept { return stripe_length.size(); }
  std::size_t parity_chunks() const noexcept { return stripes() * m; }
  std::size_t total_chunks() const noexcept { return data_chunks + parity_chunks(); }
  /// First data chunk of stripe s and how many data chunks it holds (<= k).
  std::size_t stripe_first(std::size_t s) const noexcept { return s * k; }
  std::size_t stripe_data_count(std::size_t s) const noexcept {
    return data_chunks - s * k < k ? data_chunks - s * k : k;
  }
  /// Global index of parity chunk j of stripe s.
  std::size_t parity_index(std::size_t s, std::size_t j) const noexcept { return data_chunks + s * m + j; }
};

/// The stripes for data chunks of the given lengths. m == 0: no stripes (k is ignored and
/// stored as 0). Errors: invalid_argument unless (m == 0) or (k >= 1, m >= 1,
/// k + m <= 255), or when data plus parity chunks exceed max_chunks.
result<stripe_layout> plan_stripes(std::span<const std::uint64_t> data_lengths, std::size_t k, std::size_t m);

}  // namespace dtrain::shard
