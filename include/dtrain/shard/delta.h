// dtrain/shard/delta.h: delta coding of one data chunk against the previous checkpoint
// version (manifest codec xor_zstd, chunk encoding xor_zstd): the chunk XOR the base
// version's bytes at the same offsets (zeros past the base's end), compressed as one zstd
// frame. The encoder keeps a chunk delta-coded only when that is smaller than the chunk.
// Decoding writes into a buffer of exactly the chunk's length, so a frame that would
// decode to more (a "zstd bomb") is data_loss, never a larger allocation.
// Rules and wire form: docs/shard.md "Delta coding", docs/formats/shard_manifest.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::shard {

/// The default zstd compression level of delta coding.
inline constexpr int default_zstd_level = 3;

/// ok for a level zstd accepts (ZSTD_minCLevel() .. ZSTD_maxCLevel(), 0 = zstd's default);
/// invalid_argument otherwise.
status check_zstd_level(int level);

/// The delta-coded form of `chunk`, the checkpoint's bytes at [offset, offset + size):
/// one zstd frame (content size recorded) of chunk XOR base[offset, offset + size), where
/// base bytes past base.size() count as zero. nullopt when the frame would not be smaller
/// than the chunk (the chunk then travels raw). Deterministic for a given zstd build and
/// level; thread-safe (one compression context per thread, reused).
/// Errors: invalid_argument for a bad level or an empty chunk; internal if zstd fails.
result<std::optional<std::vector<std::byte>>> delta_encode_chunk(std::span<const std::byte> chunk,
                                                                  std::span<const std::byte> base,
                                                                  std::uint64_t offset, int level = default_zstd_level);

/// Inverts delta_encode_chunk: `out` receives the chunk (its size is the chunk's length
/// from the manifest, the hard cap on the decoded size). `coded` must be exactly one zstd
/// frame (no skippable or trailing bytes) whose recorded content size is out.size();
/// it is decompressed into `out` (no other buffer of that size is allocated), then XORed
/// with base[offset, offset + out.size()) (zeros past the base's end). `out` may be the
/// base's own bytes at `offset` (in-place update); any other overlap is undefined.
/// The result is NOT verified here: check it against the manifest's plain digest (the
/// decoder does). Thread-safe (one decompression context per thread, reused).
/// Errors: data_loss naming the problem (not a zstd frame, content size missing or not
/// out.size(), corrupt data, more or fewer bytes than out.size()); nothing is promised
/// about `out`'s contents after an error.
status delta_decode_chunk(std::span<const std::byte> coded, std::span<const std::byte> base, std::uint64_t offset,
                          std::span<std::byte> out);

}  // namespace dtrain::shard
