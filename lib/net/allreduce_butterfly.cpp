// Butterfly all-reduce average: contributions to the chunk owners (step 1), robust fp32
// aggregation at each owner, the owners' encoded means to everyone (step 2). A failing
// owner still sends every peer a result-tag message (a failure notice), so the others
// learn of the failure without waiting for the deadline.
#include "dtrain/net/allreduce_butterfly.h"

#include <algorithm>
#include <string>

#include "collective_detail.h"
#include "dtrain/net/robust_aggregate.h"

namespace dtrain::net {

namespace {
constexpr std::string_view kWho = "butterfly";
constexpr std::uint32_t kStepContribution = 1;
constexpr std::uint32_t kStepResult = 2;
}  // namespace

struct butterfly_allreduce::batches {
  explicit batches(transport& t) : contrib(t, kWho), results(t, kWho) {}
  detail::op_batch contrib;  // step 1: receives from every peer, sends to every owner
  detail::op_batch results;  // step 2: receives from every owner, this owner's sends
};

butterfly_allreduce::butterfly_allreduce() = default;
butterfly_allreduce::~butterfly_allreduce() = default;

result<std::unique_ptr<butterfly_allreduce>> butterfly_allreduce::create(transport& t, std::size_t count,
                                                                         const collective_options& o) {
  DTRAIN_RETURN_IF_ERROR(detail::check_options(o, kWho));
  auto c = detail::make_wire_codec(o.codec, kWho);
  if (!c.ok()) return c.status();
  if ((*c)->id() == codec::codec_id::powersgd)
    return invalid_argument("butterfly: codec 'powersgd' needs a 2-D shape and the butterfly cuts the vector "
                            "into chunks; use sparse_allgather with rows * cols == count");

  std::unique_ptr<butterfly_allreduce> b(new butterfly_allreduce());
  b->t_ = &t;
  b->count_ = count;
  b->n_ = t.size();
  b->rank_ = t.rank();
  b->opts_ = o;
  b->codec_ = std::move(c).value();
  const std::size_t n = b->n_;

  b->msg_off_.resize(n + 1);
  for (std::size_t j = 0; j < n; ++j)
    b->msg_off_[j + 1] =
        b->msg_off_[j] + detail::header_bytes + b->codec_->max_encoded_bytes(detail::split(count, n, j).size);
  const std::size_t mine = detail::split(count, n, b->rank_).size;
  const std::size_t slot = detail::header_bytes + b->codec_->max_encoded_bytes(mine);
  b->contrib_out_.resize(b->msg_off_[n]);
  b->contrib_len_.resize(n);
  b->contrib_in_.resize(n * slot);
  b->in_len_.resize(n);
  b->result_out_.resize(slot);
  b->result_in_.resize(b->msg_off_[n]);
  b->result_len_in_.resize(n);
  b->rows_.resize(n * mine);
  b->scratch_.resize(count);
  for (auto* v : {&b->weights_, &b->eff_, &b->norms_, &b->scale_, &b->coef_, &b->sort_}) v->resize(n);
  b->dropped_.resize(n);
  b->include_.resize(n);
  b->row_spans_.resize(n);
  b->batch_ = std::make_unique<batches>(t);
  b->batch_->contrib.reserve(2 * n);
  b->batch_->results.reserve(2 * n);
  return b;
}

std::span<std::byte> butterfly_allreduce::out_msg(std::size_t j) noexcept {
  return std::span(contrib_out_).subspan(msg_off_[j], msg_off_[j + 1] - msg_off_[j]);
}
std::span<std::byte> butterfly_allreduce::in_contribution(std::size_t i) noexcept {
  return std::span(contrib_in_).subspan(i * result_out_.size(), result_out_.size());
}
std::span<std::byte> butterfly_allreduce::in_result(std::size_t j) noexcept {
  return std::span(result_in_).subspan(msg_off_[j], msg_off_[j + 1] - msg_off_[j]);
}

status butterfly_allreduce::aggregate() {
  const std::size_t n = n_;
  const detail::range mine = detail::split(count_, n, rank_);
  fail_peer_ = rank_;
  for (std::size_t i = 0; i < n; ++i) {
    auto row = std::span(rows_).subspan(i * mine.size, mine.size);
    row_spans_[i] = row;
    const std::span<const std::byte> msg =
        i == rank_ ? out_msg(rank_).first(contrib_len_[rank_]) : in_contribution(i).first(in_len_[i]);
    detail::msg_header h;
    auto st = detail::parse_header(msg, detail::msg_kind::contribution, kWho, static_cast<rank_t>(i), h);
    if (!st.ok()) {
      fail_peer_ = static_cast<std::uint32_t>(i);
      return st;
    }
    weights_[i] = h.weight;
    if (h.flags & detail::flag_nonfinite) {
      dropped_[i] = 1;
      if (msg.size() != detail::header_bytes) {
        fail_peer_ = static_cast<std::uint32_t>(i);
        return data_loss("butterfly: message from rank " + std::to_string(i) + " flags NaN/Inf but carries a payload");
      }
      continue;
    }
    st = codec_->decode(msg.subspan(detail::header_bytes), row);
    if (!st.ok()) {
      fail_peer_ = static_cast<std::uint32_t>(i);
      return detail::corrupt_payload(kWho, static_cast<rank_t>(i), st);
    }
    dropped_[i] = all_finite(row) ? 0 : 1;
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (dropped_[i] && !opts_.robust.reject_nonfinite) {
      fail_peer_ = static_cast<std::uint32_t>(i);
      return invalid_argument("butterfly: the contribution of rank " + std::to_string(i) +
                              " holds NaN/Inf and robust.reject_nonfinite is off");
    }
  }
  const weight_plan plan = plan_weights(weights_, dropped_, eff_);
  if (plan.contributors == 0) return invalid_argument("butterfly: every contribution holds NaN/Inf; nothing to average");
  if (opts_.robust.clip_to_median_norm) {
    for (std::size_t i = 0; i < n; ++i) norms_[i] = dropped_[i] ? 0.0f : l2_norm(row_spans_[i]);
    median_clip_scales(norms_, eff_, scale_, sort_);
  } else {
    std::fill(scale_.begin(), scale_.end(), 1.0f);
  }
  auto y = std::span(scratch_).subspan(mine.offset, mine.size);
  if (opts_.robust.trim_fraction > 0.0) {
    for (std::size_t i = 0; i < n; ++i) include_[i] = eff_[i] > 0.0f ? 1 : 0;
    trimmed_mean(row_spans_, scale_, include_, trim_count(opts_.robust.trim_fraction, plan.contributors), y, sort_);
  } else {
    for (std::size_t i = 0; i < n; ++i) coef_[i] = eff_[i] * scale_[i];
    weighted_mean(row_spans_, coef_, plan.weight_sum, y);
  }
  auto w = codec_->encode(y, std::span(result_out_).subspan(detail::header_bytes));
  if (!w.ok()) return invalid_argument("butterfly: cannot encode the mean of chunk " + std::to_string(rank_) + ": " +
                                       w.status().to_string());
  result_len_ = detail::header_bytes + *w;
  auto st = codec_->decode(std::span(result_out_).subspan(detail::header_bytes, *w), y);
  if (!st.ok()) return internal_error("butterfly: cannot decode its own payload: " + st.to_string());
  own_contributors_ = static_cast<std::uint32_t>(plan.contributors);
  own_dropped_ = static_cast<std::uint32_t>(plan.dropped);
  own_weight_sum_ = plan.weight_sum;
  detail::write_header(result_out_, {detail::msg_kind::result, 0, plan.weight_sum, 0.0f, own_contributors_,
                                     own_dropped_});
  return ok_status();
}

status butterfly_allreduce::notify_failure(const status& why, std::uint32_t peer) {
  // Every live peer sends every other one exactly one result-tag message, a result or a
  // notice like this one, so waiting for all of them ends as soon as the peers are done.
  detail::write_header(result_out_, {detail::msg_kind::result, detail::flag_failed, 0.0f, 0.0f,
                                     static_cast<std::uint32_t>(why.code()), peer});
  auto& b = batch_->results;
  const tag_t tag = make_tag(opts_.channel, run_seq_, kStepResult);
  for (rank_t j = 0; j < n_; ++j)
    if (j != rank_) b.try_send(j, tag, std::span(result_out_).first(detail::header_bytes));
  b.settle(deadline_);
  return why;
}

status butterfly_allreduce::result_error(rank_t owner, std::uint32_t code, std::uint32_t peer) const {
  if (code == 0 || code > static_cast<std::uint32_t>(status_code::internal))
    return data_loss("butterfly: owner " + std::to_string(owner) + " sent a failure notice with bad code " +
                     std::to_string(code));
  const auto c = static_cast<status_code>(code);
  return status(c, "butterfly: owner " + std::to_string(owner) + " failed with " + std::string(code_name(c)) +
                       " (rank " + std::to_string(peer) + ")");
}

status butterfly_allreduce::average(std::span<float> data, std::uint64_t /*round*/, std::span<float> residual) {
  if (data.size() != count_)
    return invalid_argument("butterfly: data holds " + std::to_string(data.size()) + " floats, expected " +
                            std::to_string(count_));
  if (!residual.empty() && residual.size() != count_)
    return invalid_argument("butterfly: residual holds " + std::to_string(residual.size()) + " floats, expected " +
                            std::to_string(count_));
  deadline_ = after(opts_.timeout);
  run_seq_ = seq_++;
  sent_ = received_ = 0;
  const std::size_t n = n_;

  // This peer's message for every owner (its own included): header + encoded raw chunk.
  const bool nonfinite = !all_finite(data);
  for (std::size_t j = 0; j < n; ++j) {
    auto m = out_msg(j);
    detail::write_header(m, {detail::msg_kind::contribution, nonfinite ? detail::flag_nonfinite : std::uint16_t{0},
                             opts_.weight, 0.0f, 0, 0});
    contrib_len_[j] = detail::header_bytes;
    if (nonfinite) continue;
    const detail::range c = detail::split(count_, n, j);
    auto w = codec_->encode(data.subspan(c.offset, c.size), m.subspan(detail::header_bytes));
    if (!w.ok())
      return invalid_argument("butterfly: cannot encode chunk " + std::to_string(j) + ": " + w.status().to_string());
    contrib_len_[j] += *w;
  }

  auto& a = batch_->contrib;
  auto& b = batch_->results;
  const tag_t tc = make_tag(opts_.channel, run_seq_, kStepContribution);
  const tag_t tr = make_tag(opts_.channel, run_seq_, kStepResult);
  auto post = [&]() -> status {
    for (rank_t i = 0; i < n; ++i)
      if (i != rank_) DTRAIN_RETURN_IF_ERROR(a.recv(i, tc, in_contribution(i), &in_len_[i]));
    for (rank_t j = 0; j < n; ++j)
      if (j != rank_) DTRAIN_RETURN_IF_ERROR(b.recv(j, tr, in_result(j), &result_len_in_[j]));
    for (rank_t j = 0; j < n; ++j)
      if (j != rank_) DTRAIN_RETURN_IF_ERROR(a.send(j, tc, out_msg(j).first(contrib_len_[j])));
    return ok_status();
  };
  if (auto st = post(); !st.ok()) {
    a.cancel();
    b.cancel();
    return st;
  }
  if (auto st = a.wait(deadline_); !st.ok()) return notify_failure(st, rank_);
  for (std::size_t i = 0; i < n; ++i) {
    if (i == rank_) continue;
    sent_ += contrib_len_[i];
    received_ += in_len_[i];
  }

  if (auto st = aggregate(); !st.ok()) return notify_failure(st, fail_peer_);
  for (rank_t j = 0; j < n; ++j)
    if (j != rank_) DTRAIN_RETURN_IF_ERROR(b.send(j, tr, std::span(result_out_).first(result_len_)));
  DTRAIN_RETURN_IF_ERROR(b.wait(deadline_));
  sent_ += (n - 1) * result_len_;

  // The owners' results in rank order; the report comes from the chunk that dropped most.
  std::size_t best_contributors = own_contributors_, best_dropped = own_dropped_;
  float best_weight = own_weight_sum_;
  rank_t best_owner = rank_;
  for (rank_t j = 0; j < n; ++j) {
    if (j == rank_) continue;
    received_ += result_len_in_[j];
    const auto msg = std::span<const std::byte>(in_result(j)).first(result_len_in_[j]);
    detail::msg_header h;
    DTRAIN_RETURN_IF_ERROR(detail::parse_header(msg, detail::msg_kind::result, kWho, j, h));
    if (h.flags & detail::flag_failed) {
      if (msg.size() != detail::header_bytes)
        return data_loss("butterfly: failure notice from rank " + std::to_string(j) + " carries a payload");
      return result_error(j, h.a, h.b);
    }
    if (h.a > n || h.b > n || h.a + h.b > n)
      return data_loss("butterfly: result from rank " + std::to_string(j) + " reports impossible counts");
    const detail::range c = detail::split(count_, n, j);
    auto st = codec_->decode(msg.subspan(detail::header_bytes), std::span(scratch_).subspan(c.offset, c.size));
    if (!st.ok()) return detail::corrupt_payload(kWho, j, st);
    // An honest owner's mean is finite (unless it overflowed the codec's range); never
    // hand NaN/Inf to the caller as a result.
    if (!all_finite(std::span<const float>(scratch_).subspan(c.offset, c.size)))
      return data_loss("butterfly: result from rank " + std::to_string(j) + " decodes to NaN/Inf");
    if (h.b > best_dropped || (h.b == best_dropped && j < best_owner)) {
      best_contributors = h.a;
      best_dropped = h.b;
      best_weight = h.weight;
      best_owner = j;
    }
  }

  if (!residual.empty()) {
    if (nonfinite) {
      std::copy(data.begin(), data.end(), residual.begin());
    } else {
      for (std::size_t j = 0; j < n; ++j) {
        const detail::range c = detail::split(count_, n, j);
        auto r = residual.subspan(c.offset, c.size);
        auto x = data.subspan(c.offset, c.size);
        std::copy(x.begin(), x.end(), r.begin());
        auto st = codec_->decode_accumulate(out_msg(j).subspan(detail::header_bytes, contrib_len_[j] - detail::header_bytes),
                                            r, -1.0f);
        if (!st.ok()) return internal_error("butterfly: cannot decode its own payload: " + st.to_string());
      }
    }
  }
  std::copy(scratch_.begin(), scratch_.end(), data.begin());
  report_ = {best_contributors, best_dropped, static_cast<double>(best_weight), sent_, received_};
  return ok_status();
}

}  // namespace dtrain::net
