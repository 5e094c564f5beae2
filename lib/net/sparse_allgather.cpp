// Sparse all-gather average: one payload per peer to every other peer (step 1), then the
// same rank-ordered decode and reduction on every peer.
#include "dtrain/net/sparse_allgather.h"

#include <algorithm>
#include <string>

#include "collective_detail.h"
#include "dtrain/codec/codec_powersgd.h"
#include "dtrain/codec/codec_randomk.h"
#include "dtrain/net/robust_aggregate.h"

namespace dtrain::net {

namespace {
constexpr std::string_view kWho = "sparse_allgather";
constexpr std::uint32_t kStepGather = 1;
}  // namespace

struct sparse_allgather::batch_holder {
  explicit batch_holder(transport& t) : b(t, kWho) {}
  detail::op_batch b;
};

sparse_allgather::sparse_allgather() = default;
sparse_allgather::~sparse_allgather() = default;

result<std::unique_ptr<sparse_allgather>> sparse_allgather::create(transport& t, std::size_t count,
                                                                   const collective_options& o, sparse_mean mean) {
  DTRAIN_RETURN_IF_ERROR(detail::check_options(o, kWho));
  if (o.robust.trim_fraction > 0.0)
    return invalid_argument("sparse_allgather: robust.trim_fraction > 0 is not supported; use butterfly_allreduce");
  if (mean != sparse_mean::all && mean != sparse_mean::coincident)
    return invalid_argument("sparse_allgather: unknown sparse_mean");
  auto c = detail::make_wire_codec(o.codec, kWho);
  if (!c.ok()) return c.status();
  if (const auto* p = dynamic_cast<const codec::powersgd_codec*>(c->get())) {
    if (static_cast<std::uint64_t>(p->rows()) * p->cols() != count)
      return invalid_argument("sparse_allgather: codec powersgd needs rows * cols == count (" +
                              std::to_string(p->rows()) + " * " + std::to_string(p->cols()) +
                              " != " + std::to_string(count) + ")");
  }

  std::unique_ptr<sparse_allgather> s(new sparse_allgather());
  s->t_ = &t;
  s->count_ = count;
  s->n_ = t.size();
  s->rank_ = t.rank();
  s->opts_ = o;
  s->mean_ = mean;
  s->codec_ = std::move(c).value();
  const std::size_t n = s->n_;
  const std::size_t msg = detail::header_bytes + s->codec_->max_encoded_bytes(count);
  s->out_.resize(msg);
  s->in_.resize(n * msg);
  s->in_len_.resize(n);
  s->row_.resize(count);
  s->acc_.resize(count);
  if (mean == sparse_mean::coincident) s->wsum_.resize(count);
  for (auto* v : {&s->weights_, &s->eff_, &s->norms_, &s->scale_, &s->sort_}) v->resize(n);
  s->dropped_.resize(n);
  s->batch_ = std::make_unique<batch_holder>(t);
  s->batch_->b.reserve(2 * n);
  return s;
}

std::span<const std::byte> sparse_allgather::message(std::size_t i) const noexcept {
  if (i == rank_) return std::span(out_).first(out_len_);
  return std::span(in_).subspan(i * out_.size(), in_len_[i]);
}

status sparse_allgather::decode_row(std::size_t i) {
  auto st = codec_->decode(message(i).subspan(detail::header_bytes), row_);
  return st.ok() ? st : detail::corrupt_payload(kWho, static_cast<rank_t>(i), st);
}

void sparse_allgather::accumulate_row(std::size_t i) {
  const float c = eff_[i] * scale_[i];
  if (mean_ == sparse_mean::coincident)
    accumulate_coincident(acc_, wsum_, row_, c, eff_[i]);
  else
    accumulate_scaled(acc_, row_, c);
}

status sparse_allgather::average(std::span<float> data, std::uint64_t round, std::span<float> residual) {
  if (data.size() != count_)
    return invalid_argument("sparse_allgather: data holds " + std::to_string(data.size()) + " floats, expected " +
                            std::to_string(count_));
  if (!residual.empty() && residual.size() != count_)
    return invalid_argument("sparse_allgather: residual holds " + std::to_string(residual.size()) +
                            " floats, expected " + std::to_string(count_));
  const deadline d = after(opts_.timeout);
  const std::uint32_t seq = seq_++;
  sent_ = received_ = 0;
  const std::size_t n = n_;

  const bool nonfinite = !all_finite(data);
  detail::write_header(out_, {detail::msg_kind::gather, nonfinite ? detail::flag_nonfinite : std::uint16_t{0},
                              opts_.weight, 0.0f, 0, 0});
  out_len_ = detail::header_bytes;
  if (!nonfinite) {
    if (auto* rk = dynamic_cast<codec::randomk_codec*>(codec_.get())) rk->set_round(round);
    auto w = codec_->encode(data, std::span(out_).subspan(detail::header_bytes));
    if (!w.ok()) return invalid_argument("sparse_allgather: cannot encode the input: " + w.status().to_string());
    out_len_ += *w;
  }

  auto& b = batch_->b;
  const tag_t tag = make_tag(opts_.channel, seq, kStepGather);
  for (rank_t i = 0; i < n; ++i)
    if (i != rank_) DTRAIN_RETURN_IF_ERROR(b.recv(i, tag, std::span(in_).subspan(i * out_.size(), out_.size()), &in_len_[i]));
  for (rank_t i = 0; i < n; ++i)
    if (i != rank_) DTRAIN_RETURN_IF_ERROR(b.send(i, tag, std::span(out_).first(out_len_)));
  DTRAIN_RETURN_IF_ERROR(b.wait(d));
  for (std::size_t i = 0; i < n; ++i) {
    if (i == rank_) continue;
    sent_ += out_len_;
    received_ += in_len_[i];
  }

  // From here on every peer computes the same thing from the same bytes.
  for (std::size_t i = 0; i < n; ++i) {
    detail::msg_header h;
    DTRAIN_RETURN_IF_ERROR(
        detail::parse_header(message(i), detail::msg_kind::gather, kWho, static_cast<rank_t>(i), h));
    weights_[i] = h.weight;
    dropped_[i] = (h.flags & detail::flag_nonfinite) ? 1 : 0;
    if (dropped_[i] && message(i).size() != detail::header_bytes)
      return data_loss("sparse_allgather: message from rank " + std::to_string(i) +
                       " flags NaN/Inf but carries a payload");
  }
  // Pass 1 decodes every payload (validating it), finds payloads that decode to NaN/Inf,
  // takes the norms for clipping and, when the header-based plan survives, already
  // accumulates. Otherwise pass 2 accumulates again under the final plan.
  weight_plan plan = plan_weights(weights_, dropped_, eff_);
  std::fill(scale_.begin(), scale_.end(), 1.0f);
  std::fill(acc_.begin(), acc_.end(), 0.0f);
  std::fill(wsum_.begin(), wsum_.end(), 0.0f);
  bool final_plan = !opts_.robust.clip_to_median_norm;
  for (std::size_t i = 0; i < n; ++i) {
    if (dropped_[i]) continue;
    DTRAIN_RETURN_IF_ERROR(decode_row(i));
    if (!all_finite(row_)) {
      dropped_[i] = 1;
      final_plan = false;
      continue;
    }
    if (opts_.robust.clip_to_median_norm) norms_[i] = l2_norm(row_);
    if (final_plan && eff_[i] > 0.0f) accumulate_row(i);
  }
  for (std::size_t i = 0; i < n; ++i)
    if (dropped_[i] && !opts_.robust.reject_nonfinite)
      return invalid_argument("sparse_allgather: the contribution of rank " + std::to_string(i) +
                              " holds NaN/Inf and robust.reject_nonfinite is off");
  if (!final_plan) {
    plan = plan_weights(weights_, dropped_, eff_);
    if (plan.contributors > 0) {
      if (opts_.robust.clip_to_median_norm) median_clip_scales(norms_, eff_, scale_, sort_);
      std::fill(acc_.begin(), acc_.end(), 0.0f);
      std::fill(wsum_.begin(), wsum_.end(), 0.0f);
      for (std::size_t i = 0; i < n; ++i) {
        if (eff_[i] <= 0.0f) continue;
        DTRAIN_RETURN_IF_ERROR(decode_row(i));
        accumulate_row(i);
      }
    }
  }
  if (plan.contributors == 0)
    return invalid_argument("sparse_allgather: every contribution holds NaN/Inf; nothing to average");
  if (mean_ == sparse_mean::coincident)
    finish_coincident(acc_, wsum_);
  else
    divide_by(acc_, plan.weight_sum);

  if (!residual.empty()) {
    std::copy(data.begin(), data.end(), residual.begin());
    if (!nonfinite) {
      auto st = codec_->decode_accumulate(message(rank_).subspan(detail::header_bytes), residual, -1.0f);
      if (!st.ok()) return internal_error("sparse_allgather: cannot decode its own payload: " + st.to_string());
    }
  }
  std::copy(acc_.begin(), acc_.end(), data.begin());
  report_ = {plan.contributors, plan.dropped, static_cast<double>(plan.weight_sum), sent_, received_};
  return ok_status();
}

}  // namespace dtrain::net
