// dtrain/toploc/envelope.h: the signed envelope. It binds a run of TOPLOC proofs to the
// model, the token IDs, the chunk position and chunking parameters, and the node that
// built them, under that node's Ed25519 signature, so a proof cannot be replayed for
// another model, another token sequence, another position or by another node.
//
// Byte layout (every field little-endian except the proofs, which keep their own
// big-endian layout from proof.h): docs/formats/toploc_envelope.md.
//   "DTTE" | u16 version | model hash[32] | token-ID hash[32] | u32 first chunk |
//   u32 chunk count n | u16 k | u16 tokens_per_chunk | u32 prefill_tokens | node key[32] |
//   n proofs of 2 + 2k bytes | Ed25519 signature[64] over context ‖ all preceding bytes
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/crypto/blake2b.h"
#include "dtrain/crypto/identity.h"
#include "dtrain/toploc/proof.h"

namespace dtrain::toploc {

/// "DTTE" as the first four bytes (a u32 LE of this value).
inline constexpr std::uint32_t envelope_magic = 0x45545444u;
/// The format version this build writes and reads.
inline constexpr std::uint16_t envelope_version = 1;
/// Bytes before the first proof, and the trailing signature.
inline constexpr std::size_t envelope_header_bytes = 118;
inline constexpr std::size_t envelope_signature_bytes = 64;
/// Offset of the node's public key inside the header.
inline constexpr std::size_t envelope_node_offset = 86;
/// The domain-separation string the signature covers before the envelope's bytes
/// (26 bytes, the terminating NUL included), so an envelope signature can never be
/// mistaken for a signature of any other dtrain message made with the same key.
inline constexpr std::string_view envelope_signing_context{"dtrain.toploc.envelope.v1\0", 26};

/// Bytes of an envelope holding `count` proofs of k coefficients: 182 + count · (2 + 2k).
constexpr std::size_t envelope_size(std::size_t k, std::size_t count) noexcept {
  return envelope_header_bytes + count * proof_size(k) + envelope_signature_bytes;
}

/// The model's identity: BLAKE2b-256 of its weights exactly as serialised (the caller
/// picks the serialisation; prover and verifier must use the same). For weights that do
/// not fit in memory, feed the same bytes to a crypto::blake2b_256_state: same digest.
crypto::digest256 model_hash(std::span<const std::byte> weights_bytes) noexcept;

/// BLAKE2b-256 of the token sequence the hidden states were computed over (prompt and
/// completion, as the model saw them): u64 LE count, then each ID as u32 LE. Binding the
/// IDs rather than text avoids re-templating mismatches. Deterministic; allocation-free.
crypto::digest256 token_ids_hash(std::span<const std::uint32_t> ids) noexcept;

/// What an envelope states besides its proofs and signer.
struct envelope_header {
  crypto::digest256 model_hash{};      ///< model_hash() of the weights
  crypto::digest256 token_ids_hash{};  ///< token_ids_hash() of the sequence
  std::uint32_t first_chunk = 0;       ///< index (in plan_chunks order) of the first proof
  std::uint16_t k = 128;               ///< coefficients per proof, 1..65497
  std::uint16_t tokens_per_chunk = 32; ///< decode rows per proof, >= 1
  std::uint32_t prefill_tokens = 0;    ///< rows of the prefill proof; 0 = skip_prefill

  friend bool operator==(const envelope_header&, const envelope_header&) = default;
};

/// An opened envelope: its header, its signer and its proofs (chunk first_chunk + i is
/// proofs[i]).
struct envelope {
  envelope_header header;
  crypto::peer_id node;
  std::vector<proof> proofs;
};

/// The signed bytes of an envelope with `proofs` as chunks header.first_chunk, ...,
/// signed by `signer`. Deterministic: the same inputs and key give the same bytes.
/// Errors (invalid_argument, nothing is signed): k = 0 or above 65497, tokens_per_chunk
/// = 0, no proofs, first_chunk + proofs.size() beyond 2^32, or a proof that
/// parse_proof() would reject (coefficient count other than k, modulus outside
/// [k, 65497] including the null proof, a coefficient >= 65497), named by position.
result<std::vector<std::byte>> seal_envelope(const envelope_header& header, std::span<const proof> proofs,
                                             const crypto::identity& signer);

/// What the verifier expects an envelope to be bound to.
struct envelope_expectation {
  crypto::digest256 model_hash{};      ///< the verifier's own model_hash()
  crypto::digest256 token_ids_hash{};  ///< token_ids_hash() of the sequence it will replay
  std::optional<std::uint32_t> first_chunk;  ///< when set, the envelope must start here
  /// When non-empty, the signer must be one of these keys (a single expected node is a
  /// span of one). Borrowed: must stay valid during the call. Empty: any signer.
  std::span<const crypto::peer_id> allowed_nodes;
  std::uint16_t k = 128;
  std::uint16_t tokens_per_chunk = 32;
  std::uint32_t prefill_tokens = 0;
  /// When set, the envelope's chunks must lie inside plan_chunks(total_tokens, ...) of the
  /// expected chunking: first_chunk + count <= that plan's size.
  std::optional<std::size_t> total_tokens;
};

/// Checks and opens an envelope. Verify before use: in this order, and nothing is
/// allocated from a size the input has not been checked against, nothing read out of
/// bounds:
///  1. structure (data_loss unless said otherwise): at least 6 bytes with the magic;
///     version 0 is data_loss, a version above 1 is unimplemented (whatever follows);
///     k in 1..65497, tokens_per_chunk >= 1, chunk count >= 1 and first_chunk + count
///     <= 2^32; the length is exactly envelope_size(k, count) (truncated or trailing);
///  2. the signature by the embedded node key over envelope_signing_context ‖ the bytes
///     before it (permission_denied);
///  3. the binding: model hash ("envelope is for another model"), token-ID hash, first
///     chunk, allowed signer, chunks inside total_tokens (all permission_denied: the
///     proofs are authentic but for something else, i.e. a replay); k, tokens_per_chunk
///     and prefill_tokens (failed_precondition: the two sides disagree on parameters);
///  4. the proofs, with parse_proofs() (data_loss: a node signed malformed proofs).
/// Hashes are compared in constant time. Deterministic; thread-safe.
result<envelope> open_envelope(std::span<const std::byte> bytes, const envelope_expectation& expect);

}  // namespace dtrain::toploc
