// PRIME-style ring all-reduce average: metadata all-to-all, then per segment a
// reduce-scatter that re-encodes the fp32 partial at each hop, the owner's
// quantize-dequantize, and an all-gather that forwards the owner's bytes unchanged.
#include "dtrain/net/allreduce_ring.h"

#include <algorithm>
#include <string>

#include "collective_detail.h"
#include "dtrain/net/robust_aggregate.h"

namespace dtrain::net {

namespace {

constexpr std::string_view kWho = "ring";

// Tag steps (docs/collectives.md): one for the metadata, then one per hop of each phase;
// the hop counter wraps at 2^14, which is harmless because messages with equal tags
// match in posting order.
constexpr std::uint32_t kStepMeta = 1;
constexpr std::uint32_t step_rs(std::size_t hop) { return 0x4000u | static_cast<std::uint32_t>(hop & 0x3FFFu); }
constexpr std::uint32_t step_ag(std::size_t hop) { return 0x8000u | static_cast<std::uint32_t>(hop & 0x3FFFu); }

// A partial sum or an owner's mean that decodes to NaN/Inf: honest peers never send one
// (encoders refuse non-finite input; an fp16 overflow is the exception docs/collectives.md
// warns about), so it is the sender's corruption, not this caller's input.
status nonfinite_payload(rank_t from) {
  return data_loss("ring: payload from rank " + std::to_string(from) + " decodes to NaN/Inf");
}

bool is_dense(codec::codec_id id) {
  using codec::codec_id;
  switch (id) {
    case codec_id::identity:
    case codec_id::fp16:
    case codec_id::bf16:
    case codec_id::minmax:
    case codec_id::blockwise:
    case codec_id::uniform8:
    case codec_id::quantile8:
    case codec_id::fp4:
      return true;
    default:
      return false;
  }
}

}  // namespace

struct ring_allreduce::batch_holder {
  explicit batch_holder(transport& t) : b(t, kWho) {}
  detail::op_batch b;
};

ring_allreduce::ring_allreduce() = default;
ring_allreduce::~ring_allreduce() = default;

result<std::unique_ptr<ring_allreduce>> ring_allreduce::create(transport& t, std::size_t count,
                                                               const collective_options& o, ring_options ro) {
  DTRAIN_RETURN_IF_ERROR(detail::check_options(o, kWho));
  if (o.robust.trim_fraction > 0.0)
    return invalid_argument(
        "ring: robust.trim_fraction > 0 needs every contribution in one place; use butterfly_allreduce");
  if (ro.max_segment_floats == 0) return invalid_argument("ring: max_segment_floats must be >= 1");
  auto c = detail::make_wire_codec(o.codec, kWho);
  if (!c.ok()) return c.status();
  if (!is_dense((*c)->id()))
    return invalid_argument("ring: codec '" + std::string((*c)->name()) +
                            "' is not dense; a ring re-encodes partial sums at every hop. Use butterfly_allreduce "
                            "(any codec but powersgd) or sparse_allgather (top-k style codecs)");
  auto rc = detail::make_wire_codec(o.codec, kWho);
  if (!rc.ok()) return rc.status();

  std::unique_ptr<ring_allreduce> r(new ring_allreduce());
  r->t_ = &t;
  r->count_ = count;
  r->n_ = t.size();
  r->rank_ = t.rank();
  r->opts_ = o;
  r->codec_ = std::move(c).value();
  r->residual_ = std::move(rc).value();
  const std::size_t n = r->n_;

  // Segments: every chunk is cut into G pieces of at most max_segment_floats floats.
  const std::size_t largest = detail::split(count, n, 0).size;
  r->segments_ = std::max<std::size_t>(1, (largest + ro.max_segment_floats - 1) / ro.max_segment_floats);
  std::size_t payload = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const std::size_t cj = detail::split(count, n, j).size;
    for (std::size_t g = 0; g < std::min<std::size_t>(2, r->segments_); ++g)
      payload = std::max(payload, r->codec_->max_encoded_bytes(detail::split(cj, r->segments_, g).size));
    payload = std::max(payload, r->codec_->max_encoded_bytes(detail::split(cj, r->segments_, r->segments_ - 1).size));
  }
  r->buf_[0].resize(payload);
  r->buf_[1].resize(payload);
  r->scratch_.resize(count);
  r->meta_out_.resize(detail::header_bytes);
  r->meta_in_.resize(n * detail::header_bytes);
  r->meta_len_.resize(n);
  r->weights_.resize(n);
  r->eff_.resize(n);
  r->norms_.resize(n);
  r->scale_.resize(n);
  r->sort_.resize(n);
  r->dropped_.resize(n);
  r->batch_ = std::make_unique<batch_holder>(t);
  r->batch_->b.reserve(2 * n);
  return r;
}

status ring_allreduce::exchange_meta(bool nonfinite, float norm) {
  weights_[rank_] = opts_.weight;
  dropped_[rank_] = nonfinite ? 1 : 0;
  norms_[rank_] = norm;
  if (n_ == 1) return ok_status();
  detail::write_header(meta_out_, {detail::msg_kind::meta, nonfinite ? detail::flag_nonfinite : std::uint16_t{0},
                                   opts_.weight, norm, 0, 0});
  auto& b = batch_->b;
  const tag_t tag = make_tag(opts_.channel, run_seq_, kStepMeta);
  for (rank_t p = 0; p < n_; ++p) {
    if (p == rank_) continue;
    DTRAIN_RETURN_IF_ERROR(
        b.recv(p, tag, std::span(meta_in_).subspan(p * detail::header_bytes, detail::header_bytes), &meta_len_[p]));
  }
  for (rank_t p = 0; p < n_; ++p)
    if (p != rank_) DTRAIN_RETURN_IF_ERROR(b.send(p, tag, meta_out_));
  DTRAIN_RETURN_IF_ERROR(b.wait(deadline_));
  for (rank_t p = 0; p < n_; ++p) {
    if (p == rank_) continue;
    detail::msg_header h;
    DTRAIN_RETURN_IF_ERROR(detail::parse_header(
        std::span<const std::byte>(meta_in_).subspan(p * detail::header_bytes, meta_len_[p]), detail::msg_kind::meta,
        kWho, p, h));
    weights_[p] = h.weight;
    dropped_[p] = (h.flags & detail::flag_nonfinite) ? 1 : 0;
    norms_[p] = h.norm;
    received_ += meta_len_[p];
  }
  sent_ += (n_ - 1) * detail::header_bytes;
  return ok_status();
}

status ring_allreduce::run_segment(std::span<const float> data, std::size_t g) {
  const std::size_t n = n_;
  const rank_t prev = static_cast<rank_t>((rank_ + n - 1) % n), next = static_cast<rank_t>((rank_ + 1) % n);
  auto part = [&](std::size_t j) {
    const detail::range c = detail::split(count_, n, j);
    const detail::range s = detail::split(c.size, segments_, g);
    return detail::range{c.offset + s.offset, s.size};
  };
  auto scratch = [&](detail::range p) { return std::span(scratch_).subspan(p.offset, p.size); };
  auto input = [&](detail::range p) { return data.subspan(p.offset, p.size); };
  auto& b = batch_->b;

  // Reduce-scatter: at hop s this peer sends chunk (r - s - 1) mod n and receives chunk
  // (r - s - 2) mod n, so chunk j starts at peer j + 1 and ends, fully summed, at peer j.
  for (std::size_t s = 0; s + 1 < n; ++s) {
    const std::size_t hop = g * (n - 1) + s;
    const detail::range out = part((rank_ + 2 * n - s - 1) % n);
    const std::size_t in_chunk = (rank_ + 2 * n - s - 2) % n;
    const detail::range in = part(in_chunk);
    if (s == 0) {
      auto p = scratch(out);
      std::fill(p.begin(), p.end(), 0.0f);
      if (coef_ != 0.0f) accumulate_scaled(p, input(out), coef_);
    }
    auto w = codec_->encode(scratch(out), buf_[0]);
    if (!w.ok()) return invalid_argument("ring: cannot encode the partial sum: " + w.status().to_string());
    std::size_t len = 0;
    const tag_t tag = make_tag(opts_.channel, run_seq_, step_rs(hop));
    DTRAIN_RETURN_IF_ERROR(b.recv(prev, tag, buf_[1], &len));
    DTRAIN_RETURN_IF_ERROR(b.send(next, tag, std::span(buf_[0]).first(*w)));
    DTRAIN_RETURN_IF_ERROR(b.wait(deadline_));
    sent_ += *w;
    received_ += len;
    auto st = codec_->decode(std::span(buf_[1]).first(len), scratch(in));
    if (!st.ok()) return detail::corrupt_payload(kWho, prev, st);
    if (!all_finite(scratch(in))) return nonfinite_payload(prev);
    if (coef_ != 0.0f) accumulate_scaled(scratch(in), input(in), coef_);
  }

  // Owner: S -> fl(S / W) -> the codec round trip every peer will decode.
  const detail::range mine = part(rank_);
  divide_by(scratch(mine), wsum_);
  auto w0 = codec_->encode(scratch(mine), buf_[0]);
  if (!w0.ok()) return invalid_argument("ring: cannot encode the reduced chunk: " + w0.status().to_string());
  auto st0 = codec_->decode(std::span(buf_[0]).first(*w0), scratch(mine));
  if (!st0.ok()) return internal_error("ring: cannot decode its own payload: " + st0.to_string());

  // All-gather: forward the bytes received at the previous hop, unchanged.
  std::size_t cur = 0, cur_len = *w0;
  for (std::size_t s = 0; s + 1 < n; ++s) {
    const std::size_t hop = g * (n - 1) + s;
    const detail::range in = part((rank_ + 2 * n - s - 1) % n);
    std::size_t len = 0;
    const tag_t tag = make_tag(opts_.channel, run_seq_, step_ag(hop));
    DTRAIN_RETURN_IF_ERROR(b.recv(prev, tag, buf_[1 - cur], &len));
    DTRAIN_RETURN_IF_ERROR(b.send(next, tag, std::span(buf_[cur]).first(cur_len)));
    DTRAIN_RETURN_IF_ERROR(b.wait(deadline_));
    sent_ += cur_len;
    received_ += len;
    auto st = codec_->decode(std::span(buf_[1 - cur]).first(len), scratch(in));
    if (!st.ok()) return detail::corrupt_payload(kWho, prev, st);
    if (!all_finite(scratch(in))) return nonfinite_payload(prev);
    cur = 1 - cur;
    cur_len = len;
  }
  return ok_status();
}

status ring_allreduce::compute_residual(std::span<const float> data, std::span<float> residual) {
  if (dropped_[rank_]) {  // nothing of this peer was sent
    std::copy(data.begin(), data.end(), residual.begin());
    return ok_status();
  }
  for (std::size_t j = 0; j < n_; ++j) {
    const detail::range c = detail::split(count_, n_, j);
    for (std::size_t g = 0; g < segments_; ++g) {
      const detail::range s = detail::split(c.size, segments_, g);
      auto x = data.subspan(c.offset + s.offset, s.size);
      auto r = residual.subspan(c.offset + s.offset, s.size);
      auto w = residual_->encode(x, buf_[0]);
      if (!w.ok()) return internal_error("ring: residual encode failed: " + w.status().to_string());
      std::copy(x.begin(), x.end(), r.begin());
      auto st = residual_->decode_accumulate(std::span(buf_[0]).first(*w), r, -1.0f);
      if (!st.ok()) return internal_error("ring: residual decode failed: " + st.to_string());
    }
  }
  return ok_status();
}

status ring_allreduce::average(std::span<float> data, std::uint64_t /*round*/, std::span<float> residual) {
  if (data.size() != count_)
    return invalid_argument("ring: data holds " + std::to_string(data.size()) + " floats, expected " +
                            std::to_string(count_));
  if (!residual.empty() && residual.size() != count_)
    return invalid_argument("ring: residual holds " + std::to_string(residual.size()) + " floats, expected " +
                            std::to_string(count_));
  deadline_ = after(opts_.timeout);
  run_seq_ = seq_++;
  sent_ = received_ = 0;

  const bool nonfinite = !all_finite(data);
  const float norm = (opts_.robust.clip_to_median_norm && !nonfinite) ? l2_norm(data) : 0.0f;
  DTRAIN_RETURN_IF_ERROR(exchange_meta(nonfinite, norm));

  // From here on every peer holds the same metadata and takes the same decisions.
  for (std::size_t p = 0; p < n_; ++p)
    if (dropped_[p] && !opts_.robust.reject_nonfinite)
      return invalid_argument("ring: the input of rank " + std::to_string(p) +
                              " holds NaN/Inf and robust.reject_nonfinite is off");
  const weight_plan plan = plan_weights(weights_, dropped_, eff_);
  if (plan.contributors == 0) return invalid_argument("ring: every contribution holds NaN/Inf; nothing to average");
  if (opts_.robust.clip_to_median_norm)
    median_clip_scales(norms_, eff_, scale_, sort_);
  else
    std::fill(scale_.begin(), scale_.end(), 1.0f);
  coef_ = eff_[rank_] * scale_[rank_];
  wsum_ = plan.weight_sum;

  if (n_ == 1) {
    // One peer: the owner rule alone, y = D(C(x)), segment by segment.
    for (std::size_t g = 0; g < segments_; ++g) {
      const detail::range s = detail::split(count_, segments_, g);
      auto w = codec_->encode(data.subspan(s.offset, s.size), buf_[0]);
      if (!w.ok()) return invalid_argument("ring: cannot encode the input: " + w.status().to_string());
      auto st = codec_->decode(std::span(buf_[0]).first(*w), std::span(scratch_).subspan(s.offset, s.size));
      if (!st.ok()) return internal_error("ring: cannot decode its own payload: " + st.to_string());
    }
  } else {
    for (std::size_t g = 0; g < segments_; ++g) DTRAIN_RETURN_IF_ERROR(run_segment(data, g));
  }

  if (!residual.empty()) DTRAIN_RETURN_IF_ERROR(compute_residual(data, residual));
  std::copy(scratch_.begin(), scratch_.end(), data.begin());
  report_ = {plan.contributors, plan.dropped, static_cast<double>(plan.weight_sum), sent_, received_};
  return ok_status();
}

}  // namespace dtrain::net
