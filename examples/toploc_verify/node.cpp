// toploc_verify/node.cpp: serving with streamed TOPLOC proofs, and validating them.
#include "toploc_verify/node.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "dtrain/core/rng.h"

namespace dtrain::toploc_demo {
namespace {

// The sampling stream and the noise stream of a request must not overlap.
constexpr std::uint64_t noise_stream_key = 0x6e6f697365ull;  // "noise"

// The next token from one hidden row: logits = row · head.w (d x vocab, input-major), then
// argmax (temperature 0, lowest id on ties) or a draw from softmax(logits / temperature).
std::uint8_t next_token(std::span<const float> row, std::span<const float> head, std::size_t vocab,
                        double temperature, counter_rng& rng, std::vector<double>& logits) {
  std::fill(logits.begin(), logits.end(), 0.0);
  for (std::size_t i = 0; i < row.size(); ++i)
    for (std::size_t j = 0; j < vocab; ++j)
      logits[j] += static_cast<double>(row[i]) * static_cast<double>(head[i * vocab + j]);
  std::size_t best = 0;
  for (std::size_t j = 1; j < vocab; ++j)
    if (logits[j] > logits[best]) best = j;
  if (temperature == 0) return static_cast<std::uint8_t>(best);
  double sum = 0;
  const double top = logits[best];
  for (double& l : logits) {
    l = std::exp((l - top) / temperature);
    sum += l;
  }
  const double u = static_cast<double>(rng.next_u32()) * 0x1p-32 * sum;
  double acc = 0;
  for (std::size_t j = 0; j < vocab; ++j) {
    acc += logits[j];
    if (u < acc) return static_cast<std::uint8_t>(j);
  }
  return static_cast<std::uint8_t>(vocab - 1);
}

// The head matrix as floats, whatever the model's scalar type.
template <class T>
std::vector<float> head_weights(const testbed::basic_tiny_gpt<T>& model) {
  for (const auto& t : model.param_layout())
    if (t.name == "head.w") {
      const auto w = model.params().subspan(t.offset, t.size());
      std::vector<float> out(w.size());
      std::transform(w.begin(), w.end(), out.begin(), [](T x) { return static_cast<float>(x); });
      return out;
    }
  DTRAIN_ASSERT(false && "tiny_gpt has a head.w tensor");
  return {};
}

}  // namespace

template <class T>
result<response> serve(testbed::basic_tiny_gpt<T>& model, std::span<const std::uint8_t> claimed_prompt,
                       std::span<const std::uint8_t> used_prompt, const serve_options& opt) {
  const testbed::gpt_config& cfg = model.config();
  const std::size_t d = cfg.d_model, p = used_prompt.size();
  DTRAIN_ASSERT(p == claimed_prompt.size() && p > 0 && p + opt.new_tokens <= cfg.context);
  toploc::proof_options popt = opt.proof;
  popt.prefill_tokens = p;
  auto stream = toploc::proof_stream::create(d, dtype::f32, popt);
  if (!stream.ok()) return stream.status();

  const std::vector<float> head = head_weights(model);
  counter_rng sampler(opt.seed, opt.request);
  const counter_rng noise(opt.seed ^ noise_stream_key, opt.request);
  std::uint64_t noise_index = 0;
  std::vector<double> logits(cfg.vocab);
  std::vector<T> pass(cfg.context * d);
  std::vector<std::uint8_t> seq(used_prompt.begin(), used_prompt.end());
  response r;
  r.prompt_tokens = p;
  r.hidden.reserve((p + opt.new_tokens) * d);

  // Runs the model over seq, appends the last `rows` rows (with the node's noise) to
  // r.hidden and the proof stream, and returns them.
  auto step = [&](std::size_t rows) -> result<std::span<const float>> {
    const std::size_t len = seq.size();
    DTRAIN_RETURN_IF_ERROR(model.forward_hidden(seq, std::span<T>(pass).first(len * d)));
    const std::size_t first = r.hidden.size();
    for (std::size_t i = (len - rows) * d; i < len * d; ++i) {
      auto x = static_cast<float>(pass[i]);
      if (opt.noise > 0) {
        const double u = 2.0 * static_cast<double>(noise.uniform_at(noise_index++)) - 1.0;
        x = static_cast<float>(static_cast<double>(x) * (1.0 + opt.noise * u));
      }
      r.hidden.push_back(x);
    }
    const std::span<const float> added = std::span<const float>(r.hidden).subspan(first);
    DTRAIN_RETURN_IF_ERROR(stream->add(toploc::hidden_states::f32(added, rows, d)));
    return added.last(d);
  };

  auto last = step(p);  // the prefill: every prompt row at once
  if (!last.ok()) return last.status();
  for (std::size_t i = 0; i < opt.new_tokens; ++i) {
    seq.push_back(next_token(*last, head, cfg.vocab, opt.temperature, sampler, logits));
    last = step(1);  // the new token's row; the last one is proven but samples nothing
    if (!last.ok()) return last.status();
  }
  DTRAIN_RETURN_IF_ERROR(stream->finish());

  r.tokens.assign(claimed_prompt.begin(), claimed_prompt.end());
  r.tokens.insert(r.tokens.end(), seq.begin() + static_cast<std::ptrdiff_t>(p), seq.end());
  r.proofs = toploc::to_bytes(stream->proofs());
  return r;
}

template result<response> serve(testbed::basic_tiny_gpt<float>&, std::span<const std::uint8_t>,
                                std::span<const std::uint8_t>, const serve_options&);
template result<response> serve(testbed::basic_tiny_gpt<double>&, std::span<const std::uint8_t>,
                                std::span<const std::uint8_t>, const serve_options&);

result<std::vector<toploc::chunk_check>> validate(testbed::tiny_gpt& validator, const response& r,
                                                  const toploc::proof_options& opt, std::vector<float>& hidden_out) {
  const std::size_t d = validator.config().d_model, n = r.tokens.size();
  hidden_out.resize(n * d);
  DTRAIN_RETURN_IF_ERROR(validator.forward_hidden(r.tokens, hidden_out));
  toploc::proof_options popt = opt;
  popt.prefill_tokens = r.prompt_tokens;
  return toploc::verify_proofs_bytes(toploc::hidden_states::f32(hidden_out, n, d), r.proofs, popt);
}

}  // namespace dtrain::toploc_demo
