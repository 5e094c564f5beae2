// dtrain/shard/encoder.h: one-shot encoding of a checkpoint (a byte span, or contiguous
// named tensors) into an unsigned manifest, its data chunks (views into the input) and
// its Reed-Solomon parity chunks (owned). Sign the manifest with sign_manifest().
// Rules: docs/shard.md "Encoding".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/shard/chunk_hash.h"
#include "dtrain/shard/chunker.h"
#include "dtrain/shard/delta.h"
#include "dtrain/shard/manifest.h"

namespace dtrain::shard {

/// The version a delta-coded checkpoint is coded against (docs/shard.md "Delta coding").
struct delta_reference {
  std::uint64_t version = 0;         ///< the base's version number: 1 <= version < the new version
  std::span<const std::byte> bytes;  ///< the base version's checkpoint bytes (read during encode() only)
};

struct encode_options {
  std::uint64_t chunk_size = default_chunk_size;
  hash_algo algo = hash_algo::blake2b_256;
  /// Erasure coding: k data chunks + m parity chunks per stripe; m = 0 disables it (k is
  /// then ignored). RS(10, 4) tolerates any 4 lost chunks per stripe for 40% more bytes.
  std::size_t k = 0;
  std::size_t m = 0;
  std::uint64_t version = 1;       ///< the checkpoint's version number
  std::uint64_t created_unix = 0;  ///< written as is (the caller's clock: keeps encoding deterministic)
  /// Delta coding against an earlier version: each data chunk travels as zstd(chunk XOR
  /// the base's bytes at the same offsets) when that is smaller, else raw; parity is then
  /// computed over what travels. Receivers need the base's bytes to decode. nullopt: off.
  std::optional<delta_reference> delta_base;
  int zstd_level = default_zstd_level;  ///< used only with delta_base (check_zstd_level)
};

/// An encoded checkpoint. data_chunks[i] views bytes [chunks[i].offset, + length) of the
/// input (the plain chunk), so the input must outlive it; coded_chunks[i] (delta coding
/// only) holds data chunk i's delta-coded bytes, empty when it travels raw;
/// parity_chunks[s·m + j] is parity j of stripe s.
struct encoded_checkpoint {
  manifest man;  ///< complete but unsigned (origin is zero until sign_manifest writes it)
  std::vector<std::span<const std::byte>> data_chunks;
  std::vector<std::vector<std::byte>> coded_chunks;  ///< empty without delta coding
  std::vector<std::vector<std::byte>> parity_chunks;

  /// Bytes of global chunk i (data, then parity) as they travel: what chunk/<i> holds and
  /// the decoder's add_chunk expects (delta-coded bytes for a delta-coded data chunk).
  std::span<const std::byte> chunk(std::size_t i) const noexcept {
    if (i < data_chunks.size())
      return i < coded_chunks.size() && !coded_chunks[i].empty() ? std::span<const std::byte>(coded_chunks[i])
                                                                  : data_chunks[i];
    return parity_chunks[i - data_chunks.size()];
  }
};

/// Encodes a byte file: plan_file_chunks, each chunk hashed with opts.algo, parity per
/// stripe (plan_stripes), the Merkle root. Deterministic. Allocates the parity chunks and
/// one stripe of padding scratch.
/// With opts.delta_base, also one zstd compression per data chunk (delta.h).
/// Errors: invalid_argument for a bad chunk size or erasure parameters (as plan_*), and,
/// with delta_base, a base version of 0 or not below opts.version, or a bad zstd level.
result<encoded_checkpoint> encode(std::span<const std::byte> bytes, const encode_options& opts);

/// Encodes contiguous tensors: `bytes` is the tensors' bytes in list order (size = sum of
/// sizes), chunked with plan_tensor_chunks; the manifest carries the tensor table.
/// Errors: invalid_argument as encode(), when bytes.size() differs from the sum of the
/// sizes, or a name, dtype or shape the manifest cannot hold (check_manifest's limits).
result<encoded_checkpoint> encode_tensors(std::span<const tensor_desc> tensors, std::span<const std::byte> bytes,
                                          const encode_options& opts);

}  // namespace dtrain::shard
