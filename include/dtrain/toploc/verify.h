// dtrain/toploc/verify.h: checking proofs against the verifier's own hidden states.
//
// For each chunk the verifier recomputes its top-k indices idx' on its own activations
// v', evaluates the prover's polynomial at idx'_i mod m, and compares each value Y_i with
// v'[idx'_i] as floating-point fields, the sign ignored:
//   - exponent mismatches: how many Y_i have another exponent than v'[idx'_i];
//   - mantissa errors |mant(Y_i) - mant(v'[idx'_i])| over the exponent matches, in bf16
//     ULPs (units of 2^-7 of the binade). fp16 mantissas have 10 bits; their errors are
//     divided by 8 so the same thresholds apply (docs/toploc.md).
// An index the prover did not commit evaluates to a pseudo-random field element, whose
// exponent matches with probability about 1/256, so another model, prompt or precision
// shows as about k mismatches.
//
// Median definitions (both reported, the policy picks one):
//   - median_upper: sorted[n / 2], the upper median; the reference's C++ verifier;
//   - median_middle: the middle value, or the mean of the two middle values when n is
//     even; Python's statistics.median, the reference's Python verifier.
// With no exponent match at all, mean and both medians are +infinity (the reference
// reports 2^64).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/toploc/chunking.h"
#include "dtrain/toploc/proof.h"

namespace dtrain::toploc {

/// What the comparison of one chunk found.
struct chunk_check {
  std::size_t compared = 0;             ///< values compared: min(k, values in the chunk)
  std::size_t exponent_mismatches = 0;
  double mantissa_error_mean = 0;       ///< +inf when no exponent matched
  double mantissa_error_median_upper = 0;
  double mantissa_error_median_middle = 0;

  std::size_t exponent_matches() const noexcept { return compared - exponent_mismatches; }
};

/// Which median a policy tests.
enum class median_rule : std::uint8_t { upper, middle };

/// When a chunk is accepted. The defaults are the published thresholds of the TOPLOC
/// paper's experiments: at least 90 of 128 exponents match, mantissa error mean <= 10 and
/// median <= 8 (../shared/vectors/toploc.json, acceptance_policy_published). For chunks
/// that compare n != 128 values the match requirement scales: matches · 128 >= 90 · n.
struct acceptance_policy {
  std::size_t min_exponent_matches = 90;  ///< out of `per`
  std::size_t per = 128;
  double max_mantissa_error_mean = 10;
  double max_mantissa_error_median = 8;
  median_rule median = median_rule::upper;

  bool accepts(const chunk_check& c) const noexcept;
};

/// Checks proofs chunk by chunk with a reusable workspace. One per thread.
class chunk_verifier {
 public:
  explicit chunk_verifier(std::size_t k);
  chunk_verifier(chunk_verifier&&) noexcept;
  chunk_verifier& operator=(chunk_verifier&&) noexcept;
  ~chunk_verifier();

  /// Compares `p` with one chunk of the verifier's hidden states (its rows flattened).
  /// Errors: invalid_argument for an empty chunk, a chunk of 2^32 values or more, or a
  /// proof whose coefficient count is not k; data_loss for a proof with modulus 0, a
  /// modulus below min(k, values) or above 65497, or a coefficient >= 65497 (proofs from
  /// parse_proof() never fail these).
  result<chunk_check> check(const proof& p, const hidden_states& chunk);

  std::size_t k() const noexcept;

 private:
  struct workspace;
  std::unique_ptr<workspace> ws_;
};

/// Checks every proof against its chunk of `states` (plan_chunks(states.tokens, opt)),
/// on opt.threads threads.
/// Errors: as build_proofs() for the states and options; data_loss when proofs.size() is
/// not the planned chunk count; then the first error of any chunk.
result<std::vector<chunk_check>> verify_proofs(const hidden_states& states, std::span<const proof> proofs,
                                               const proof_options& opt);
/// The same from concatenated proof bytes, parsed with parse_proofs() (so a wrong count,
/// odd trailing bytes or any malformed proof is a data_loss error, never a crash).
result<std::vector<chunk_check>> verify_proofs_bytes(const hidden_states& states, std::span<const std::byte> proofs,
                                                     const proof_options& opt);

/// Indices of the chunks `policy` rejects (empty: everything accepted).
std::vector<std::size_t> failing_chunks(std::span<const chunk_check> checks, const acceptance_policy& policy);

}  // namespace dtrain::toploc
