// Push-sum gossip: (mass, payload) frames to the out-neighbours of a column-stochastic
// schedule, receiver-side weighting, de-biasing by the mass.
#include "dtrain/net/push_sum.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "collective_detail.h"
#include "dtrain/net/robust_aggregate.h"
#include "gossip_frame.h"

namespace dtrain::net {

namespace {
constexpr const char* kWho = "push_sum";
}  // namespace

using gossip_detail::gossip_kind;

push_sum::push_sum() = default;
push_sum::~push_sum() = default;

result<std::unique_ptr<push_sum>> push_sum::create(transport& t, std::size_t count, const collective_options& o,
                                                   topology::schedule s, const push_sum_options& po) {
  DTRAIN_RETURN_IF_ERROR(detail::check_options(o, kWho));
  if (o.robust.clip_to_median_norm) {
    return invalid_argument("push_sum: robust.clip_to_median_norm is not supported");
  }
  if (o.robust.trim_fraction != 0.0) return invalid_argument("push_sum: robust.trim_fraction is not supported");
  if (po.rounds_per_call == 0) return invalid_argument("push_sum: rounds_per_call must be >= 1");
  DTRAIN_RETURN_IF_ERROR(gossip_detail::check_schedule(s, t.size(), gossip_detail::stochastic::columns, kWho));
  auto c = detail::make_wire_codec(o.codec, kWho);
  if (!c.ok()) return c.status();

  std::unique_ptr<push_sum> p(new push_sum());
  p->t_ = &t;
  p->count_ = count;
  p->o_ = o;
  p->rounds_per_call_ = po.rounds_per_call;
  p->schedule_ = std::move(s);
  p->codec_ = std::move(*c);
  p->lossless_ = p->codec_->id() == codec::codec_id::identity;
  const rank_t me = t.rank();
  std::size_t max_in = 0, max_out = 0;
  for (const auto& m : p->schedule_.rounds) {
    p->views_.push_back(topology::view_of(m, me));
    const auto& v = p->views_.back();
    double share = 0;
    for (rank_t k : v.send) share += m(k, me);
    p->send_share_.push_back(share);
    max_in = std::max(max_in, v.recv.size());
    max_out = std::max(max_out, v.send.size());
  }
  p->frame_cap_ = gossip_detail::frame_header_bytes(1) + p->codec_->max_encoded_bytes(count);
  p->send_frame_.resize(p->frame_cap_);
  p->recv_frames_.resize(max_in * p->frame_cap_);
  p->z_.assign(count, 0.0f);
  p->scratch_.resize(count);
  p->own_dec_.resize(count);
  p->acc_.resize(count);
  p->ex_ = std::make_unique<gossip_detail::gossip_exchange>();
  p->ex_->reserve(max_in, max_out);
  return p;
}

status push_sum::init(std::span<const float> values, double weight) {
  if (values.size() != count_) {
    return invalid_argument("push_sum: init with " + std::to_string(values.size()) + " floats, expected " +
                            std::to_string(count_));
  }
  if (!std::isfinite(weight) || weight < 0) return invalid_argument("push_sum: init weight must be finite and >= 0");
  const bool finite = all_finite(values);
  if (!finite && !o_.robust.reject_nonfinite) {
    return invalid_argument("push_sum: init values hold NaN/Inf (robust.reject_nonfinite is off)");
  }
  if (count_ != 0) std::memcpy(z_.data(), values.data(), count_ * sizeof(float));
  w_ = finite ? weight : 0.0;
  pending_dropped_ = finite ? 0 : 1;
  return ok_status();
}

void push_sum::estimate(std::span<float> out) const {
  DTRAIN_ASSERT(out.size() == count_);
  if (count_ != 0) std::memcpy(out.data(), z_.data(), count_ * sizeof(float));
}

void push_sum::numerator(std::span<float> out) const {
  DTRAIN_ASSERT(out.size() == count_);
  const auto w = static_cast<float>(w_);
  for (std::size_t k = 0; k < count_; ++k) out[k] = w == 0.0f ? 0.0f : w * z_[k];
}

status push_sum::step(std::uint64_t round_index) {
  const std::uint32_t seq = seq_++;
  report_ = {};
  return round(round_index, seq, 0, after(o_.timeout));
}

status push_sum::round(std::uint64_t t, std::uint32_t seq, std::uint32_t step_index, deadline d) {
  const tag_t tag = make_tag(o_.channel, seq, step_index);
  const topology::node_view& v = view(t);
  const double share = send_share_[static_cast<std::size_t>(t % send_share_.size())];
  const std::size_t nin = v.recv.size();

  // 1. The own frame: (w, C(z)), or no mass, or a flag.
  status local;
  bool has_mass = w_ > 0;
  std::size_t dropped = pending_dropped_;
  // A node whose input init() dropped tells its neighbours, so they count the drop too.
  std::uint8_t flags = pending_dropped_ != 0 ? gossip_detail::nonfinite_flag(0) : std::uint8_t{0};
  std::size_t len = 0;
  if (has_mass) {
    if (!all_finite(z_)) {
      has_mass = false;
      if (o_.robust.reject_nonfinite) {
        flags = gossip_detail::nonfinite_flag(0);
        ++dropped;
      } else {
        flags = gossip_detail::flag_failed;
        local = invalid_argument("push_sum: the state holds NaN/Inf (robust.reject_nonfinite is off)");
      }
    } else {
      auto n = codec_->encode(z_, std::span(send_frame_).subspan(gossip_detail::frame_header_bytes(1)));
      if (n.ok()) {
        len = *n;
      } else {
        has_mass = false;
        flags = gossip_detail::flag_failed;
        local = n.status();
      }
    }
  }
  const std::size_t lens[1] = {len};
  gossip_detail::write_frame_header(send_frame_, gossip_kind::push_sum, flags, has_mass ? w_ : 0.0, lens);
  const auto frame = std::span<const std::byte>(send_frame_).first(gossip_detail::frame_header_bytes(1) + len);

  // 2. Exchange.
  status st = ex_->exchange(*t_, v, tag, recv_frames_, frame_cap_, frame, d);
  if (!local.ok()) return local;
  if (!st.ok()) return st;

  // 3. Mix: sum over j ascending (self at its place) of W(i,j) w_j v_j.
  const rank_t me = t_->rank();
  double wsum = 0;
  std::size_t contributors = 0;
  std::uint64_t bytes_in = 0;
  std::fill(acc_.begin(), acc_.end(), 0.0f);
  const auto add = [&](double c, std::span<const float> x) {
    ++contributors;
    wsum += c;
    accumulate_scaled(acc_, x, static_cast<float>(c));
  };
  const auto add_self = [&] {
    if (has_mass) add(v.self_weight * w_, z_);
  };
  bool self_done = false;
  for (std::size_t k = 0; k < nin; ++k) {
    const rank_t from = v.recv[k].first;
    if (!self_done && from > me) {
      add_self();
      self_done = true;
    }
    const auto msg = ex_->message(k);
    bytes_in += msg.size();
    auto f = gossip_detail::parse_frame(msg, gossip_kind::push_sum, 1, from);
    if (!f.ok()) return f.status();
    if ((f->flags & gossip_detail::nonfinite_flag(0)) != 0) {
      ++dropped;
      continue;
    }
    if (f->weight == 0) continue;  // no mass to pass on
    if (f->payload[0].empty()) {
      return data_loss("push_sum: frame from peer " + std::to_string(from) + " carries mass but no payload");
    }
    if (status ds = codec_->decode(f->payload[0], scratch_); !ds.ok()) return detail::corrupt_payload(kWho, from, ds);
    if (!all_finite(scratch_)) {
      if (!o_.robust.reject_nonfinite) {
        return out_of_range("push_sum: payload from peer " + std::to_string(from) +
                            " decodes to NaN/Inf (robust.reject_nonfinite is off)");
      }
      ++dropped;
      continue;
    }
    add(v.recv[k].second * f->weight, scratch_);
  }
  if (!self_done) add_self();
  // Keep at home what the codec did not deliver of the sent share.
  if (has_mass && !lossless_ && share != 0 && count_ != 0) {
    if (status ds = codec_->decode(frame.subspan(gossip_detail::frame_header_bytes(1)), own_dec_); !ds.ok()) {
      return internal_error("push_sum: own payload does not decode: " + ds.to_string());
    }
    if (!all_finite(own_dec_)) {
      // The codec overflowed (fp16 above 65504): every receiver drops this payload, so
      // the whole share, mass and value, stays here.
      add(share * w_, z_);
    } else {
      const auto c = static_cast<float>(share * w_);
      for (std::size_t k = 0; k < count_; ++k) acc_[k] += c * (z_[k] - own_dec_[k]);
    }
  }

  // 4. De-bias and commit. Without mass the node keeps its z.
  const auto wf = static_cast<float>(wsum);
  if (contributors != 0 && wf > 0.0f) {
    divide_by(acc_, wf);
    std::swap(z_, acc_);
    w_ = wsum;
  } else {
    w_ = 0;
  }
  pending_dropped_ = 0;
  report_.contributors = contributors;
  report_.dropped += dropped;
  report_.weight_sum = w_;
  report_.bytes_sent += static_cast<std::uint64_t>(frame.size()) * v.send.size();
  report_.bytes_received += bytes_in;
  return ok_status();
}

status push_sum::average(std::span<float> data, std::uint64_t round_index, std::span<float> residual) {
  if (data.size() != count_) {
    return invalid_argument("push_sum: data has " + std::to_string(data.size()) + " floats, expected " +
                            std::to_string(count_));
  }
  if (!residual.empty() && residual.size() != count_) {
    return invalid_argument("push_sum: residual has " + std::to_string(residual.size()) +
                            " floats, expected 0 or " + std::to_string(count_));
  }
  // init(), except that a non-finite input with reject_nonfinite off keeps its mass: the
  // first round then sends "could not contribute" and fails with invalid_argument.
  const bool finite = all_finite(data);
  if (count_ != 0) std::memcpy(z_.data(), data.data(), count_ * sizeof(float));
  w_ = finite || !o_.robust.reject_nonfinite ? static_cast<double>(o_.weight) : 0.0;
  pending_dropped_ = finite || !o_.robust.reject_nonfinite ? 0 : 1;
  const std::uint32_t seq = seq_++;
  const deadline d = after(o_.timeout);
  report_ = {};
  for (std::size_t r = 0; r < rounds_per_call_; ++r) {
    DTRAIN_RETURN_IF_ERROR(round(round_index * rounds_per_call_ + r, seq, static_cast<std::uint32_t>(r), d));
  }
  // The codec error stays in this node's mass, so nothing is lost: a zero residual,
  // unless the input itself was dropped (then none of it was delivered).
  if (!residual.empty()) {
    if (finite || !o_.robust.reject_nonfinite) {
      std::fill(residual.begin(), residual.end(), 0.0f);
    } else {
      std::copy(data.begin(), data.end(), residual.begin());
    }
  }
  estimate(data);
  return ok_status();
}

}  // namespace dtrain::net
