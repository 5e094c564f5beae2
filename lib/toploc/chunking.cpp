// lib/toploc/chunking.cpp: chunk plans, the per-chunk prover, batch and streaming builds.
#include "dtrain/toploc/chunking.h"

#include <algorithm>
#include <string>

#include "chunk_data.h"
#include "dtrain/toploc/field.h"
#include "dtrain/toploc/modulus.h"
#include "dtrain/toploc/poly.h"
#include "parallel.h"
#include "topk_select.h"

namespace dtrain::toploc {

hidden_states hidden_states::rows(std::size_t first, std::size_t count) const noexcept {
  const std::size_t elem = dtype_size(type);
  return {type, static_cast<const std::byte*>(data) + first * hidden * elem, count, hidden};
}

status proof_options::validate() const {
  if (k == 0 || k > prime) return invalid_argument("toploc: k = " + std::to_string(k) + " is outside [1, 65497]");
  if (tokens_per_chunk == 0) return invalid_argument("toploc: tokens_per_chunk must be at least 1");
  return ok_status();
}

std::vector<chunk_range> plan_chunks(std::size_t total_tokens, const proof_options& opt) {
  std::vector<chunk_range> out;
  std::size_t at = 0;
  if (opt.prefill_tokens > 0 && total_tokens > 0) {
    const std::size_t p = std::min(opt.prefill_tokens, total_tokens);
    out.push_back({0, p});
    at = p;
  }
  const std::size_t step = std::max<std::size_t>(opt.tokens_per_chunk, 1);
  for (; at < total_tokens; at += step) out.push_back({at, std::min(step, total_tokens - at)});
  return out;
}

namespace detail {

status check_states(const hidden_states& s) {
  if (s.hidden == 0) return invalid_argument("toploc: hidden size is 0");
  if (s.tokens == 0) return invalid_argument("toploc: no tokens");
  if (s.data == nullptr) return invalid_argument("toploc: hidden states data is null");
  if (s.type != dtype::bf16 && s.type != dtype::f16 && s.type != dtype::f32)
    return invalid_argument("toploc: unknown dtype");
  if (s.tokens > (std::size_t{1} << 48) / s.hidden) return invalid_argument("toploc: hidden states too large");
  return ok_status();
}

std::span<const std::uint16_t> chunk_bits(const hidden_states& chunk, std::vector<std::uint16_t>& scratch) {
  const std::size_t n = chunk.tokens * chunk.hidden;
  if (chunk.type == dtype::f32) {
    const auto* f = static_cast<const float*>(chunk.data);
    scratch.resize(n);
    for (std::size_t i = 0; i < n; ++i) scratch[i] = f32_to_bf16_bits(f[i]);
    return scratch;
  }
  return {static_cast<const std::uint16_t*>(chunk.data), n};
}

}  // namespace detail

struct chunk_prover::workspace {
  std::size_t k;
  detail::topk_workspace topk;
  std::vector<std::uint32_t> idx, x, y;
  std::vector<std::uint16_t> coeffs, converted;
};

chunk_prover::chunk_prover(std::size_t k) : ws_(std::make_unique<workspace>()) { ws_->k = k; }
chunk_prover::chunk_prover(chunk_prover&&) noexcept = default;
chunk_prover& chunk_prover::operator=(chunk_prover&&) noexcept = default;
chunk_prover::~chunk_prover() = default;
std::size_t chunk_prover::k() const noexcept { return ws_->k; }

status chunk_prover::build(std::span<const std::uint16_t> chunk, proof& out) {
  workspace& w = *ws_;
  if (w.k == 0 || w.k > prime) return invalid_argument("toploc: k = " + std::to_string(w.k) + " is outside [1, 65497]");
  if (chunk.empty()) return invalid_argument("toploc: empty chunk");
  if (chunk.size() >= (std::size_t{1} << 32))
    return invalid_argument("toploc: a chunk of " + std::to_string(chunk.size()) + " values (indices are u32)");
  const std::size_t kk = std::min(w.k, chunk.size());
  w.idx.resize(kk);
  detail::select_topk_into(chunk, w.k, w.idx, w.topk);
  auto m = injective_modulus(w.idx);
  if (!m.ok()) return std::move(m).status();
  w.x.resize(kk);
  w.y.resize(kk);
  for (std::size_t i = 0; i < kk; ++i) {
    w.x[i] = w.idx[i] % *m;
    w.y[i] = chunk[w.idx[i]];
  }
  w.coeffs.assign(w.k, 0);
  DTRAIN_RETURN_IF_ERROR(interpolate(w.x, w.y, w.coeffs));
  out.modulus = *m;
  out.coeffs.assign(w.coeffs.begin(), w.coeffs.end());
  return ok_status();
}

status chunk_prover::build(std::span<const float> chunk, proof& out) {
  return build(hidden_states::f32(chunk, 1, chunk.size()), out);
}

status chunk_prover::build(const hidden_states& chunk, proof& out) {
  DTRAIN_RETURN_IF_ERROR(detail::check_states(chunk));
  return build(detail::chunk_bits(chunk, ws_->converted), out);
}

result<std::vector<proof>> build_proofs(const hidden_states& states, const proof_options& opt) {
  DTRAIN_RETURN_IF_ERROR(opt.validate());
  DTRAIN_RETURN_IF_ERROR(detail::check_states(states));
  const std::vector<chunk_range> plan = plan_chunks(states.tokens, opt);
  std::vector<proof> out(plan.size());
  DTRAIN_RETURN_IF_ERROR(detail::run_chunks(
      plan.size(), opt.threads, [&] { return chunk_prover(opt.k); },
      [&](chunk_prover& prover, std::size_t c) -> status {
        status st = prover.build(states.rows(plan[c].first_token, plan[c].tokens), out[c]);
        if (!st.ok()) return dtrain::status(st.code(), "chunk " + std::to_string(c) + ": " + st.message());
        return st;
      }));
  return out;
}

result<std::vector<std::byte>> build_proofs_bytes(const hidden_states& states, const proof_options& opt) {
  auto proofs = build_proofs(states, opt);
  if (!proofs.ok()) return std::move(proofs).status();
  return to_bytes(*proofs);
}

result<std::vector<std::string>> build_proofs_base64(const hidden_states& states, const proof_options& opt) {
  auto proofs = build_proofs(states, opt);
  if (!proofs.ok()) return std::move(proofs).status();
  std::vector<std::string> out;
  out.reserve(proofs->size());
  for (const proof& p : *proofs) out.push_back(to_base64(p));
  return out;
}

// ---- proof_stream -------------------------------------------------------------------

struct proof_stream::state {
  std::size_t hidden = 0;
  dtype type = dtype::bf16;
  proof_options opt;
  chunk_prover prover{1};
  std::vector<std::uint16_t> pending;  // rows of the open chunk, as 16-bit patterns
  std::size_t pending_rows = 0;
  std::size_t rows_seen = 0;
  std::size_t chunks_done = 0;
  std::vector<proof> proofs;
  bool finished = false;
  status failed;

  // Rows the open chunk needs before it is complete.
  std::size_t chunk_rows() const {
    return chunks_done == 0 && opt.prefill_tokens > 0 ? opt.prefill_tokens : opt.tokens_per_chunk;
  }
  status close_chunk() {
    proof p;
    status st = prover.build(std::span<const std::uint16_t>(pending.data(), pending_rows * hidden), p);
    if (!st.ok()) {
      failed = dtrain::status(st.code(), "chunk " + std::to_string(chunks_done) + ": " + st.message());
      return failed;
    }
    proofs.push_back(std::move(p));
    ++chunks_done;
    pending_rows = 0;
    return ok_status();
  }
};

proof_stream::proof_stream(std::unique_ptr<state> s) : s_(std::move(s)) {}
proof_stream::proof_stream(proof_stream&&) noexcept = default;
proof_stream& proof_stream::operator=(proof_stream&&) noexcept = default;
proof_stream::~proof_stream() = default;

result<proof_stream> proof_stream::create(std::size_t hidden, dtype type, const proof_options& opt) {
  DTRAIN_RETURN_IF_ERROR(opt.validate());
  if (hidden == 0) return invalid_argument("proof_stream: hidden size is 0");
  if (type != dtype::bf16 && type != dtype::f16 && type != dtype::f32)
    return invalid_argument("proof_stream: unknown dtype");
  auto s = std::make_unique<state>();
  s->hidden = hidden;
  s->type = type;
  s->opt = opt;
  s->prover = chunk_prover(opt.k);
  return proof_stream(std::move(s));
}

status proof_stream::add(const hidden_states& rows) {
  state& s = *s_;
  if (!s.failed.ok()) return s.failed;
  if (s.finished) return failed_precondition("proof_stream: add() after finish()");
  if (rows.type != s.type || rows.hidden != s.hidden)
    return invalid_argument("proof_stream: rows of " + std::string(dtype_name(rows.type)) + " x " +
                            std::to_string(rows.hidden) + ", the stream takes " + std::string(dtype_name(s.type)) +
                            " x " + std::to_string(s.hidden));
  if (rows.tokens == 0) return ok_status();
  DTRAIN_RETURN_IF_ERROR(detail::check_states(rows));
  for (std::size_t r = 0; r < rows.tokens; ++r) {
    const std::size_t need = s.chunk_rows();
    if (s.pending.size() < need * s.hidden) s.pending.resize(need * s.hidden);
    std::uint16_t* dst = s.pending.data() + s.pending_rows * s.hidden;
    if (s.type == dtype::f32) {
      const float* src = static_cast<const float*>(rows.data) + r * s.hidden;
      for (std::size_t i = 0; i < s.hidden; ++i) dst[i] = f32_to_bf16_bits(src[i]);
    } else {
      const std::uint16_t* src = static_cast<const std::uint16_t*>(rows.data) + r * s.hidden;
      std::copy_n(src, s.hidden, dst);
    }
    ++s.pending_rows;
    ++s.rows_seen;
    if (s.pending_rows == need) DTRAIN_RETURN_IF_ERROR(s.close_chunk());
  }
  return ok_status();
}

status proof_stream::finish() {
  state& s = *s_;
  if (!s.failed.ok()) return s.failed;
  if (s.finished) return failed_precondition("proof_stream: finish() called twice");
  s.finished = true;
  if (s.pending_rows > 0) return s.close_chunk();
  return ok_status();
}

std::span<const proof> proof_stream::proofs() const noexcept { return s_->proofs; }
std::vector<proof> proof_stream::take_proofs() { return std::exchange(s_->proofs, {}); }
std::size_t proof_stream::tokens() const noexcept { return s_->rows_seen; }

}  // namespace dtrain::toploc
