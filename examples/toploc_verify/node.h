// toploc_verify/node.h: an inference node that answers a request and proves it with
// TOPLOC, building the proofs with proof_stream as its tokens come out, as a server
// would; and the validator's side, one prefill pass over the claimed tokens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/toploc/chunking.h"
#include "dtrain/toploc/verify.h"
#include "testbed/tiny_gpt.h"

namespace dtrain::toploc_demo {

/// How a node serves one request.
struct serve_options {
  std::size_t new_tokens = 24;           ///< completion length
  double temperature = 0.8;              ///< 0: greedy
  std::uint64_t seed = 0;                ///< sampling stream (counter_rng(seed, request))
  std::uint64_t request = 0;
  /// Relative noise on every hidden value before it is proven and used: x·(1 + noise·u),
  /// u uniform on [-1, 1) from counter_rng(seed ^ noise stream, request). Simulates other
  /// hardware; 0 for none.
  double noise = 0;
  /// k and tokens_per_chunk; prefill_tokens is set to the prompt length by serve().
  toploc::proof_options proof;
};

/// What a node sends back: the claimed tokens (the request's prompt, then the
/// completion) and the concatenated proof bytes.
struct response {
  std::vector<std::uint8_t> tokens;
  std::size_t prompt_tokens = 0;
  std::vector<std::byte> proofs;
  /// The fp32 hidden states the node proved (tokens x d_model), for the demo's statistics
  /// only; a real node keeps them to itself.
  std::vector<float> hidden;
};

/// Generates a completion of `used_prompt` with `model` and proves it. The node claims
/// `claimed_prompt` (an honest node: the same tokens); the completion is the model's own.
/// Rows are produced as a server would: one pass over the prompt (its rows go to the
/// proof stream together), then per new token a pass that yields that token's row, which
/// is streamed and then used to sample the next token (logits = row · head.w). The tiny
/// GPT has no KV cache, so each step recomputes the prefix and keeps the last row: other
/// matrix shapes than the validator's single pass, so not always the same fp32 bits.
/// @pre used_prompt.size() == claimed_prompt.size(), prompt + new_tokens <= context.
/// Errors: those of the model and of toploc::proof_stream.
template <class T>
result<response> serve(testbed::basic_tiny_gpt<T>& model, std::span<const std::uint8_t> claimed_prompt,
                       std::span<const std::uint8_t> used_prompt, const serve_options& opt);

extern template result<response> serve(testbed::basic_tiny_gpt<float>&, std::span<const std::uint8_t>,
                                       std::span<const std::uint8_t>, const serve_options&);
extern template result<response> serve(testbed::basic_tiny_gpt<double>&, std::span<const std::uint8_t>,
                                       std::span<const std::uint8_t>, const serve_options&);

/// The validator's check of one response: its own model's hidden states of the claimed
/// tokens in one prefill pass (as TOPLOC validators do), then verify_proofs_bytes() with
/// prefill_tokens = the claimed prompt length. `hidden_out` receives those hidden states.
/// Errors: those of the model and of verify_proofs_bytes() (data_loss for malformed
/// proof bytes or a wrong proof count).
result<std::vector<toploc::chunk_check>> validate(testbed::tiny_gpt& validator, const response& r,
                                                  const toploc::proof_options& opt, std::vector<float>& hidden_out);

}  // namespace dtrain::toploc_demo
