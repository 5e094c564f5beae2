// dtrain/toploc/chunking.h: which hidden states each proof covers, and the builders.
//
// The hidden states are the output of the model's final norm (the input of the LM head),
// `tokens` rows of `hidden` values. With prefill_tokens = P > 0 the first P rows form one
// prefill proof; the remaining rows form decode proofs of tokens_per_chunk rows (32 in
// production), the last one possibly partial. P = 0 is the reference's skip_prefill:
// every row is a decode row. Each proof covers its rows flattened (row-major), so a
// selected index lies in [0, rows · hidden).
//
// Input types: bf16 and fp16 bit patterns are used as they are. fp32 is converted to bf16
// by round-to-nearest-even first (documented scheme; the reference rejects fp32), so a
// fp32 model proves and verifies exactly like the same values given as bf16.
//
// A chunk with fewer than k values selects all of them; its proof still has k
// coefficients (the unused high ones are 0), so every proof is 2 + 2k bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dtrain/core/dtype.h"
#include "dtrain/core/status.h"
#include "dtrain/toploc/proof.h"

namespace dtrain::toploc {

/// A borrowed row-major matrix of hidden states (tokens x hidden) of one dtype.
struct hidden_states {
  dtype type = dtype::bf16;
  const void* data = nullptr;  ///< u16 patterns for bf16/f16, float for f32
  std::size_t tokens = 0;
  std::size_t hidden = 0;

  static hidden_states bf16(std::span<const std::uint16_t> bits, std::size_t tokens, std::size_t hidden) noexcept {
    return {dtype::bf16, bits.data(), tokens, hidden};
  }
  static hidden_states f16(std::span<const std::uint16_t> bits, std::size_t tokens, std::size_t hidden) noexcept {
    return {dtype::f16, bits.data(), tokens, hidden};
  }
  static hidden_states f32(std::span<const float> values, std::size_t tokens, std::size_t hidden) noexcept {
    return {dtype::f32, values.data(), tokens, hidden};
  }
  /// Rows [first, first + count) as a view of the same matrix. @pre first + count <= tokens.
  hidden_states rows(std::size_t first, std::size_t count) const noexcept;
};

/// How hidden states are cut into proofs, and how many values each proof commits.
struct proof_options {
  std::size_t k = default_k;            ///< values per proof (128 in production)
  std::size_t tokens_per_chunk = 32;    ///< decode rows per proof (decode_batching_size)
  std::size_t prefill_tokens = 0;       ///< rows of the prefill proof; 0 = skip_prefill
  unsigned threads = 0;                 ///< batch calls: 0 = hardware threads, 1 = caller only

  /// invalid_argument when k is 0 or above 65497 or tokens_per_chunk is 0.
  status validate() const;
};

/// One proof's rows: [first_token, first_token + tokens).
struct chunk_range {
  std::size_t first_token = 0;
  std::size_t tokens = 0;
  friend bool operator==(const chunk_range&, const chunk_range&) = default;
};

/// The chunks `total_tokens` rows are cut into: the prefill chunk (when prefill_tokens >
/// 0 and there are rows), then decode chunks; count = [P > 0] + ceil((T - P) / c). When
/// total_tokens < prefill_tokens the rows so far form one (short) prefill chunk.
std::vector<chunk_range> plan_chunks(std::size_t total_tokens, const proof_options& opt);

/// Builds proofs for chunks one at a time, reusing its workspace (no allocation after
/// the first chunk of a given size). One per thread.
class chunk_prover {
 public:
  explicit chunk_prover(std::size_t k);
  chunk_prover(chunk_prover&&) noexcept;
  chunk_prover& operator=(chunk_prover&&) noexcept;
  ~chunk_prover();

  /// The proof of one chunk given as flat 16-bit patterns (bf16 or fp16 alike):
  /// top-k by magnitude, injective modulus, interpolation. `out` is overwritten.
  /// Errors: invalid_argument for an empty chunk or one of 2^32 values or more;
  /// out_of_range when no injective modulus >= k exists (see modulus.h). out is left
  /// unchanged on error.
  status build(std::span<const std::uint16_t> chunk, proof& out);
  /// The same for fp32 values, converted to bf16 first (round to nearest even).
  status build(std::span<const float> chunk, proof& out);
  /// Any dtype: the chunk's rows flattened.
  status build(const hidden_states& chunk, proof& out);

  std::size_t k() const noexcept;

 private:
  struct workspace;
  std::unique_ptr<workspace> ws_;
};

/// All proofs of `states` under `opt`, one per plan_chunks() entry, built on
/// opt.threads threads (chunks are independent; the result does not depend on the
/// thread count).
/// Errors: those of proof_options::validate(), invalid_argument for a null data pointer
/// with tokens > 0, hidden == 0, or tokens == 0; then the first error of any chunk.
result<std::vector<proof>> build_proofs(const hidden_states& states, const proof_options& opt);

/// The same as concatenated bytes (build_proofs_bytes) and base64 strings.
result<std::vector<std::byte>> build_proofs_bytes(const hidden_states& states, const proof_options& opt);
result<std::vector<std::string>> build_proofs_base64(const hidden_states& states, const proof_options& opt);

/// The streaming builder: a server feeds hidden states row by row (or several rows at a
/// time) as it generates, and a proof is emitted as soon as its chunk is complete. The
/// proofs equal build_proofs() over all rows with the same options, bit for bit.
///   auto s = proof_stream::create(4096, dtype::bf16, opt);
///   s->add(prompt_rows); for each token: s->add(row); s->finish(); s->proofs()
class proof_stream {
 public:
  /// Errors: those of opt.validate(); invalid_argument for hidden == 0.
  static result<proof_stream> create(std::size_t hidden, dtype type, const proof_options& opt);

  proof_stream(proof_stream&&) noexcept;
  proof_stream& operator=(proof_stream&&) noexcept;
  ~proof_stream();

  /// Appends rows; states.type and states.hidden must match create()'s.
  /// Errors: invalid_argument on a mismatch; failed_precondition after finish(); then
  /// the chunk's build error (the stream is then failed and rejects further calls).
  status add(const hidden_states& rows);
  /// Builds the final partial chunk, if any. Calling it twice is failed_precondition.
  status finish();

  /// Proofs emitted so far, in chunk order.
  std::span<const proof> proofs() const noexcept;
  /// Moves the emitted proofs out (the stream keeps counting chunks).
  std::vector<proof> take_proofs();
  /// Rows accepted so far.
  std::size_t tokens() const noexcept;

 private:
  struct state;
  explicit proof_stream(std::unique_ptr<state> s);
  std::unique_ptr<state> s_;
};

}  // namespace dtrain::toploc
