// dtrain/toploc/proof.h: one TOPLOC proof and its byte form.
//
// Layout (toploc v0.1.6, docs/formats/toploc_proof.md): u16 big-endian modulus m, then k
// u16 big-endian coefficients c_0..c_{k-1}, lowest degree first: 2 + 2k bytes, 258 for
// k = 128. Several proofs are simply concatenated. Text form: standard base64 with '='
// padding (libsodium's sodium_bin2base64, ORIGINAL variant).
//
// parse_proof() is the validator's front door and checks everything the reference does
// not (its crashes and silent truncations: ../shared/reference/toploc_shardcast.md
// §1.10): the length, the null proof (m = 0), m < k, every coefficient < p, the proof
// count and trailing bytes. Nothing is read out of bounds and nothing is written on error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::toploc {

/// k = 128 in production: 258 bytes per proof.
inline constexpr std::size_t default_k = 128;

/// A polynomial P over GF(65497) and the modulus m its points were reduced by.
struct proof {
  std::uint32_t modulus = 0;          ///< m in [k, 65497]; 0 only in a null proof
  std::vector<std::uint16_t> coeffs;  ///< c_0..c_{k-1}, each < 65497

  /// P(x mod m): the value the prover committed at index x. @pre modulus != 0.
  std::uint32_t at(std::uint64_t index) const noexcept;

  friend bool operator==(const proof&, const proof&) = default;
};

/// The null proof the reference emits when building fails: modulus 0 and k zero
/// coefficients (2 + 2k zero bytes). parse_proof() rejects it.
proof null_proof(std::size_t k);

/// Bytes of one proof with k coefficients: 2 + 2k.
constexpr std::size_t proof_size(std::size_t k) noexcept { return 2 + 2 * k; }

/// Writes `p` in the byte layout; returns the count written (proof_size(coeffs.size())).
/// @pre out.size() >= proof_size(p.coeffs.size()), p.modulus < 2^16.
std::size_t write_proof(const proof& p, std::span<std::byte> out) noexcept;
/// The byte layout of one proof, or of several concatenated.
std::vector<std::byte> to_bytes(const proof& p);
std::vector<std::byte> to_bytes(std::span<const proof> proofs);

/// Parses one proof of exactly proof_size(k) bytes.
/// Errors (data_loss, with what is wrong and where): a length other than 2 + 2k; modulus
/// 0 (the null proof: the prover reported a failure); modulus below k (k indices cannot
/// have distinct residues) or above 65497; a coefficient >= 65497 (names its position).
/// invalid_argument when k == 0 or k > 65497.
result<proof> parse_proof(std::span<const std::byte> bytes, std::size_t k);

/// Parses `expected_count` concatenated proofs of k coefficients each.
/// Errors (data_loss): a length that is not a multiple of 2 + 2k (odd trailing bytes),
/// a count other than expected_count (missing or extra proofs; the reference silently
/// zips them away), and any error of parse_proof (with the proof's position).
result<std::vector<proof>> parse_proofs(std::span<const std::byte> bytes, std::size_t k,
                                        std::size_t expected_count);

/// Standard base64 with padding of the proof's bytes ("/9kbQitnukt1bQ==").
std::string to_base64(const proof& p);
/// Decodes standard base64 (padding required, no whitespace) and parses one proof.
/// Errors: data_loss for characters outside the alphabet or bad padding, then as
/// parse_proof().
result<proof> proof_from_base64(std::string_view text, std::size_t k);

}  // namespace dtrain::toploc
