// D-PSGD neighbour averaging: one frame out to every out-neighbour, one in from every
// in-neighbour, then the W-weighted mix (or a trimmed mean) in ascending peer order.
#include "dtrain/net/neighbor_average.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "collective_detail.h"
#include "dtrain/net/robust_aggregate.h"
#include "gossip_frame.h"

namespace dtrain::net {

namespace {
constexpr const char* kWho = "neighbor_average";
constexpr std::size_t kHeader = gossip_detail::frame_header_bytes(1);
}  // namespace

neighbor_average::neighbor_average() = default;
neighbor_average::~neighbor_average() = default;

result<std::unique_ptr<neighbor_average>> neighbor_average::create(transport& t, std::size_t count,
                                                                   const collective_options& o,
                                                                   topology::schedule s,
                                                                   const neighbor_options& no) {
  DTRAIN_RETURN_IF_ERROR(detail::check_options(o, kWho));
  if (o.weight != 1.0f) {
    return invalid_argument(std::string(kWho) +
                            ": weight must be 1 (weighted gossip does not reach the weighted mean; use push_sum)");
  }
  DTRAIN_RETURN_IF_ERROR(gossip_detail::check_schedule(s, t.size(), gossip_detail::stochastic::rows, kWho));
  auto c = detail::make_wire_codec(o.codec, kWho);
  if (!c.ok()) return c.status();

  std::unique_ptr<neighbor_average> a(new neighbor_average());
  a->t_ = &t;
  a->count_ = count;
  a->o_ = o;
  a->nopt_ = no;
  a->schedule_ = std::move(s);
  a->codec_ = std::move(*c);
  a->lossless_ = a->codec_->id() == codec::codec_id::identity;
  std::size_t max_in = 0, max_out = 0;
  a->views_.reserve(a->schedule_.period());
  for (const auto& m : a->schedule_.rounds) {
    a->views_.push_back(topology::view_of(m, t.rank()));
    max_in = std::max(max_in, a->views_.back().recv.size());
    max_out = std::max(max_out, a->views_.back().send.size());
  }
  a->frame_cap_ = kHeader + a->codec_->max_encoded_bytes(count);
  a->send_frame_.resize(a->frame_cap_);
  a->recv_frames_.resize(max_in * a->frame_cap_);
  a->decoded_.resize(max_in * count);
  a->self_dec_.resize(a->lossless_ ? 0 : count);
  a->acc_.resize(count);
  const std::size_t terms = max_in + 1;
  a->rows_.resize(terms);
  a->wrow_.resize(terms);
  a->alive_.resize(terms);
  for (auto* v : {&a->coef_, &a->eff_, &a->norms_, &a->scale_, &a->scratch_}) v->resize(terms);
  a->ex_ = std::make_unique<gossip_detail::gossip_exchange>();
  a->ex_->reserve(max_in, max_out);
  return a;
}

status neighbor_average::average(std::span<float> data, std::uint64_t round, std::span<float> residual) {
  using namespace gossip_detail;
  if (data.size() != count_) {
    return invalid_argument(std::string(kWho) + ": data has " + std::to_string(data.size()) +
                            " floats, expected " + std::to_string(count_));
  }
  if (!residual.empty() && residual.size() != count_) {
    return invalid_argument(std::string(kWho) + ": residual has " + std::to_string(residual.size()) +
                            " floats, expected 0 or " + std::to_string(count_));
  }
  const tag_t tag = make_tag(o_.channel, seq_++, 0);
  const deadline d = after(o_.timeout);
  const topology::node_view& v = view(round);
  const std::size_t nin = v.recv.size();

  // 1. The own frame: the payload, or a flag saying why there is none.
  status local;  // this node's own error, returned after the exchange
  bool own_ok = all_finite(data);
  std::uint8_t flags = 0;
  std::size_t len = 0;
  if (!own_ok) {
    if (o_.robust.reject_nonfinite) {
      flags = nonfinite_flag(0);
    } else {
      flags = flag_failed;
      local = invalid_argument(std::string(kWho) + ": data holds NaN/Inf (robust.reject_nonfinite is off)");
    }
  } else {
    auto n = codec_->encode(data, std::span(send_frame_).subspan(kHeader));
    if (n.ok()) {
      len = *n;
    } else {
      flags = flag_failed;
      local = n.status();
      own_ok = false;
    }
  }
  const std::size_t lens[1] = {len};
  write_frame_header(send_frame_, gossip_kind::neighbor, flags, 1.0, lens);
  const auto frame = std::span<const std::byte>(send_frame_).first(kHeader + len);

  // 2. Exchange: every receive, then every send, then retire them all.
  status st = ex_->exchange(*t_, v, tag, recv_frames_, frame_cap_, frame, d);
  if (!local.ok()) return local;
  if (!st.ok()) return st;

  // 3. The terms of the row in ascending peer order, the own one at its place.
  const rank_t me = t_->rank();
  std::size_t dropped = 0;
  std::uint64_t bytes_in = 0;
  std::size_t p = 0;  // position in the row
  bool self_done = false;
  const auto add_self = [&]() -> status {
    std::span<const float> own = data;
    if (own_ok && !lossless_ && (nopt_.self_decoded || !residual.empty())) {
      if (status ds = codec_->decode(frame.subspan(kHeader), self_dec_); !ds.ok()) {
        return internal_error(std::string(kWho) + ": own payload does not decode: " + ds.to_string());
      }
      if (nopt_.self_decoded) own = self_dec_;
    }
    // A decoded own value is non-finite only if the codec overflowed; the neighbours
    // then drop it as well.
    alive_[p] = own_ok && (own.data() == data.data() || all_finite(own)) ? 1 : 0;
    rows_[p] = own;
    wrow_[p] = v.self_weight;
    if (!alive_[p]) ++dropped;
    ++p;
    self_done = true;
    return ok_status();
  };
  for (std::size_t k = 0; k < nin; ++k) {
    const rank_t from = v.recv[k].first;
    if (!self_done && from > me) DTRAIN_RETURN_IF_ERROR(add_self());
    const auto msg = ex_->message(k);
    bytes_in += msg.size();
    auto f = parse_frame(msg, gossip_kind::neighbor, 1, from);
    if (!f.ok()) return f.status();
    const auto out = std::span(decoded_).subspan(k * count_, count_);
    rows_[p] = out;
    wrow_[p] = v.recv[k].second;
    alive_[p] = 1;
    if ((f->flags & nonfinite_flag(0)) != 0) {
      alive_[p] = 0;
    } else {
      if (status ds = codec_->decode(f->payload[0], out); !ds.ok()) return detail::corrupt_payload(kWho, from, ds);
      if (!all_finite(out)) {
        if (!o_.robust.reject_nonfinite) {
          return out_of_range(std::string(kWho) + ": payload from peer " + std::to_string(from) +
                              " decodes to NaN/Inf (robust.reject_nonfinite is off)");
        }
        alive_[p] = 0;
      }
    }
    if (!alive_[p]) ++dropped;
    ++p;
  }
  if (!self_done) DTRAIN_RETURN_IF_ERROR(add_self());
  const std::size_t m = p;  // nin + 1 terms

  // 4. Coefficients over the survivors: the row as given, renormalised only when a term
  // was dropped (so no rounding enters the common case).
  double sum = 0;
  std::size_t contributors = 0;
  for (std::size_t q = 0; q < m; ++q) {
    if (!alive_[q]) continue;
    sum += wrow_[q];
    ++contributors;
  }
  if (contributors == 0 || !(sum > 0)) {
    return invalid_argument(std::string(kWho) + ": every contribution of this node's row was dropped as non-finite");
  }
  for (std::size_t q = 0; q < m; ++q) {
    coef_[q] = alive_[q] ? static_cast<float>(dropped != 0 ? wrow_[q] / sum : wrow_[q]) : 0.0f;
    eff_[q] = alive_[q] ? 1.0f : 0.0f;
    scale_[q] = 1.0f;
  }
  const auto rows = std::span<const std::span<const float>>(rows_).first(m);
  if (o_.robust.clip_to_median_norm) {
    for (std::size_t q = 0; q < m; ++q) norms_[q] = alive_[q] ? l2_norm(rows[q]) : 0.0f;
    (void)median_clip_scales(std::span(norms_).first(m), std::span(eff_).first(m), std::span(scale_).first(m),
                             scratch_);
  }

  // 5. Mix into scratch: the W-weighted sum from +0 in row order, or the trimmed mean.
  if (o_.robust.trim_fraction > 0.0) {
    trimmed_mean(rows, std::span(scale_).first(m), std::span(alive_).first(m),
                 trim_count(o_.robust.trim_fraction, contributors), acc_, scratch_);
  } else {
    std::fill(acc_.begin(), acc_.end(), 0.0f);
    for (std::size_t q = 0; q < m; ++q) {
      const float c = coef_[q] * scale_[q];
      if (alive_[q] && c != 0.0f) accumulate_scaled(acc_, rows[q], c);
    }
  }

  // 6. Commit.
  if (!residual.empty()) {
    if (!own_ok) {  // nothing of the input reached the neighbours
      std::copy(data.begin(), data.end(), residual.begin());
    } else if (lossless_) {
      std::fill(residual.begin(), residual.end(), 0.0f);
    } else {
      for (std::size_t k = 0; k < count_; ++k) residual[k] = data[k] - self_dec_[k];
    }
  }
  if (count_ != 0) std::memcpy(data.data(), acc_.data(), count_ * sizeof(float));
  report_.contributors = contributors;
  report_.dropped = dropped;
  report_.weight_sum = static_cast<double>(contributors);
  report_.bytes_sent = static_cast<std::uint64_t>(frame.size()) * v.send.size();
  report_.bytes_received = bytes_in;
  return ok_status();
}

}  // namespace dtrain::net
