// dtrain/shard/manifest.h: the signed manifest of a checkpoint version: sizes, chunking,
// erasure parameters, tensor table, per-chunk digests, their Merkle root, and the
// origin's Ed25519 signature. Writing (sign_manifest) and the verify-before-use opener
// (open_manifest). Byte layout: docs/formats/shard_manifest.md.
//   "DTSM" | u16 version | header | tensor table | data chunk table | parity table |
//   Merkle root[32] | origin key[32] | Ed25519 signature[64] over context ‖ all preceding bytes
// Format version 1 is written for plain manifests; version 2 (delta-coded against an
// earlier version: docs/shard.md "Delta coding") only adds per-chunk encoding, wire length
// and wire digest to the data chunk table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/crypto/identity.h"
#include "dtrain/shard/chunk_hash.h"
#include "dtrain/shard/chunker.h"

namespace dtrain::shard {

/// "DTSM" as the first four bytes (a u32 LE of this value).
inline constexpr std::uint32_t manifest_magic = 0x4d535444u;
/// The format version written for a manifest without delta coding (delta == none).
inline constexpr std::uint16_t manifest_format_version = 1;
/// The format version written for a delta-coded manifest; the highest this build reads.
inline constexpr std::uint16_t manifest_format_version_delta = 2;
/// Bytes of the fixed header (magic to parity count) and of the fixed trailer (Merkle
/// root, origin key, signature).
inline constexpr std::size_t manifest_header_bytes = 64;
inline constexpr std::size_t manifest_trailer_bytes = 32 + 32 + 64;
/// The domain-separation string the signature covers before the manifest's bytes (25
/// bytes, the NUL included): a manifest signature is never a valid signature of any
/// other dtrain message made with the same key.
inline constexpr std::string_view manifest_signing_context{"dtrain.shard.manifest.v1\0", 25};
/// The signing context of format version 2 (same length).
inline constexpr std::string_view manifest_signing_context_v2{"dtrain.shard.manifest.v2\0", 25};
/// The signing context of a format version: v2's for 2, v1's for anything else.
constexpr std::string_view manifest_signing_context_for(std::uint16_t format) noexcept {
  return format == manifest_format_version_delta ? manifest_signing_context_v2 : manifest_signing_context;
}

/// Delta coding of the chunks against an earlier version (the codec byte).
enum class delta_codec : std::uint8_t {
  none = 0,      ///< chunks are the checkpoint's bytes
  xor_zstd = 1,  ///< XOR against the base version's bytes at the same offsets, then zstd (per chunk, see chunk_encoding)
};

/// How one data chunk of a delta-coded manifest travels (the per-chunk encoding byte).
enum class chunk_encoding : std::uint8_t {
  raw = 0,       ///< the chunk's own bytes (delta coding would not have made it smaller)
  xor_zstd = 1,  ///< one zstd frame of (chunk XOR the base's bytes at the same offsets), content size = chunk length
};

/// A tensor of the checkpoint: tensor_desc plus its offset in the checkpoint bytes.
struct tensor_entry {
  std::string name;                  ///< UTF-8, 0..65535 bytes
  std::string dtype;                 ///< printable ASCII, 0..255 bytes
  std::vector<std::uint64_t> shape;  ///< 0..255 dimensions
  std::uint64_t offset = 0;
  std::uint64_t size = 0;

  friend bool operator==(const tensor_entry&, const tensor_entry&) = default;
};

/// A data chunk: checkpoint bytes [offset, offset + length) and their digest.
struct data_chunk_entry {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  chunk_digest digest{};

  friend bool operator==(const data_chunk_entry&, const data_chunk_entry&) = default;
};

/// The wire form of a data chunk of a delta-coded manifest: what chunk/<i> holds and what
/// add_chunk() takes. raw: wire_length and wire_digest equal the chunk's length and digest;
/// xor_zstd: 1 <= wire_length < length, wire_digest = the digest of the coded bytes.
struct delta_chunk_entry {
  chunk_encoding encoding = chunk_encoding::raw;
  std::uint64_t wire_length = 0;
  chunk_digest wire_digest{};

  friend bool operator==(const delta_chunk_entry&, const delta_chunk_entry&) = default;
};

/// A parity chunk: of stripe `stripe`, `length` bytes (the stripe's length), its digest.
struct parity_chunk_entry {
  std::uint64_t stripe = 0;
  std::uint64_t length = 0;
  chunk_digest digest{};

  friend bool operator==(const parity_chunk_entry&, const parity_chunk_entry&) = default;
};

/// Everything a manifest states. open_manifest() returns only manifests for which
/// check_manifest() holds; sign_manifest() refuses any other.
struct manifest {
  std::uint64_t version = 0;           ///< checkpoint version number (the publisher's counter)
  std::uint64_t created_unix = 0;      ///< creation time, Unix seconds (informational)
  std::uint64_t total_size = 0;        ///< checkpoint bytes
  std::uint64_t chunk_size = 0;        ///< the plan's C: every data chunk holds 1..C bytes
  hash_algo algo = hash_algo::blake2b_256;
  std::uint8_t k = 0;                  ///< data chunks per stripe (0 when m == 0)
  std::uint8_t m = 0;                  ///< parity chunks per stripe; 0 = no erasure coding
  std::uint64_t delta_base = 0;        ///< version the chunks are a delta against; 0 = none
  delta_codec delta = delta_codec::none;
  std::vector<tensor_entry> tensors;   ///< empty for a plain byte file
  std::vector<data_chunk_entry> chunks;   ///< the plain (decoded) chunks: offset, length, digest
  /// Empty unless delta != none; then one entry per data chunk: how chunk i travels.
  std::vector<delta_chunk_entry> delta_chunks;
  std::vector<parity_chunk_entry> parity;  ///< stripe s's parity j at index s·m + j (over the wire bytes)
  chunk_digest merkle_root{};          ///< manifest_merkle_root(*this)
  crypto::peer_id origin;              ///< the signer (written by sign_manifest)

  friend bool operator==(const manifest&, const manifest&) = default;

  /// Data chunks then parity chunks: the decoder's chunk indices.
  std::size_t total_chunks() const noexcept { return chunks.size() + parity.size(); }
  /// True when data chunk i travels delta-coded (xor_zstd).
  bool delta_coded(std::size_t i) const noexcept {
    return i < delta_chunks.size() && delta_chunks[i].encoding == chunk_encoding::xor_zstd;
  }
  /// The digest of global chunk i *as served* (the file chunk/<i>, the bytes add_chunk
  /// takes): a data chunk's wire digest when the manifest is delta-coded (equal to its
  /// plain digest when it travels raw), else chunks[i].digest; parity: its digest. Verify
  /// fetched bytes against this; chunks[i].digest is the digest after delta decoding.
  const chunk_digest& digest(std::size_t i) const noexcept {
    if (i < chunks.size()) return i < delta_chunks.size() ? delta_chunks[i].wire_digest : chunks[i].digest;
    return parity[i - chunks.size()].digest;
  }
  /// The byte length of global chunk i as served (wire length for a delta-coded
  /// manifest's data chunks; chunks[i].length is the decoded length).
  std::uint64_t chunk_length(std::size_t i) const noexcept {
    if (i < chunks.size()) return i < delta_chunks.size() ? delta_chunks[i].wire_length : chunks[i].length;
    return parity[i - chunks.size()].length;
  }
};

/// merkle_root() over every served chunk digest (m.digest(i)) in global chunk order: data
/// chunks 0..n-1, then parity chunks in stripe order (stripe 0's m parity chunks, then
/// stripe 1's, ...). Without delta coding these are the chunk digests themselves.
chunk_digest manifest_merkle_root(const manifest& m);

/// The erasure layout of m's data chunks (plan_stripes over their served lengths
/// m.chunk_length(i), m.k, m.m: parity is computed over the bytes that travel).
/// Errors: as plan_stripes.
result<stripe_layout> manifest_stripes(const manifest& m);

/// Checks the rules every valid manifest obeys, without the signature: known hash algo
/// with xxh3_128 digests zero in bytes 16..31; k = 0 when m = 0, else k >= 1 and
/// k + m <= 255; delta codec known, delta_base = 0 exactly when the codec is none, and
/// delta_base < version; delta_chunks empty without delta, else one per data chunk with a
/// known encoding, raw ones repeating the chunk's length and digest, xor_zstd ones of
/// 1..length-1 wire bytes; chunk_size >= 1; tensors contiguous from 0 to total_size (or no
/// tensors), names valid UTF-8, dtypes printable ASCII, size limits of the format; data
/// chunks of 1..chunk_size bytes tiling [0, total_size) in order; one parity table entry
/// per stripe and parity chunk, with the right stripe index and the stripe's length; the
/// Merkle root. Returns the first broken rule as data_loss with a message naming it.
status check_manifest(const manifest& m);

/// The bytes of `m` signed by `origin` (m.origin is ignored: the signer's key is
/// written): format version 1, or 2 when m is delta-coded (with the v2 signing context). Deterministic: Ed25519 signs deterministically, so the same manifest and key
/// give the same bytes, and open_manifest(sign_manifest(m)) == m with origin set.
/// Errors: invalid_argument (nothing signed) when check_manifest(m) fails.
result<std::vector<std::byte>> sign_manifest(const manifest& m, const crypto::identity& origin);

/// Verify before use. In this order:
///  1. structure (data_loss unless said otherwise): magic; format version 0 is data_loss,
///     above 2 is unimplemented; version 1 with a delta codec, or 2 without, is data_loss; each count and length field is checked against the bytes
///     that remain before anything is allocated or read, so a hostile count cannot make it
///     allocate more than the input's size; no trailing bytes;
///  2. the signature of the embedded origin key over manifest_signing_context_for(format) ‖ all bytes
///     before the signature (permission_denied);
///  3. the origin is one of `trusted_origins` (permission_denied). FOOTGUN: an empty span
///     trusts any key, so the signature then only proves the bytes were not altered after
///     *someone* signed them; pass the publisher's key wherever it is known;
///  4. consistency: check_manifest (data_loss): the chunks tile [0, total_size), the
///     parity table matches the stripes, the Merkle root matches the digests.
/// Deterministic; thread-safe.
result<manifest> open_manifest(std::span<const std::byte> bytes, std::span<const crypto::peer_id> trusted_origins);

}  // namespace dtrain::shard
