// dtrain/shard/resume.h: the client's resume file, <out>/v<N>.partial/resume: which data
// chunks of the partial checkpoint file are verified, tied to one manifest by its digest.
// Byte layout: docs/formats/shard_resume.md.
//   "DTSR" | u16 format version | u16 flags | u64 checkpoint version |
//   manifest digest[32] | u64 data chunk count n | bitmap[ceil(n/8)]     (little-endian)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/shard/chunk_hash.h"

namespace dtrain::shard {

/// "DTSR" as the first four bytes (a u32 LE of this value).
inline constexpr std::uint32_t resume_magic = 0x52535444u;
/// The format version this build writes and reads.
inline constexpr std::uint16_t resume_format_version = 1;
/// Bytes before the bitmap.
inline constexpr std::size_t resume_header_bytes = 56;

struct resume_state {
  std::uint64_t version = 0;       ///< the checkpoint version (the manifest's)
  chunk_digest manifest_digest{};  ///< resume_manifest_digest of the signed manifest bytes
  /// One entry per data chunk: 1 = its bytes in the partial checkpoint file were verified.
  std::vector<std::uint8_t> done;

  friend bool operator==(const resume_state&, const resume_state&) = default;
};

/// BLAKE2b-256 of the signed manifest bytes: a resume file for another manifest (another
/// origin, a re-published version) does not match and is ignored.
chunk_digest resume_manifest_digest(std::span<const std::byte> manifest_bytes) noexcept;

/// The file's bytes (56 + ceil(n/8)). Deterministic.
std::vector<std::byte> encode_resume(const resume_state& s);

/// Parses a resume file. Errors: data_loss for a wrong magic, a length that does not match
/// the chunk count, unknown flags or set bits past n; unimplemented for a format version
/// above 1. Checks the length before allocating.
result<resume_state> parse_resume(std::span<const std::byte> bytes);

}  // namespace dtrain::shard
