// NoLoCo pairing: seeded permutation -> pairs (one triple for odd n) -> exact weighted
// mean within each group, identical on every member.
#include "dtrain/net/noloco_pairing.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <utility>

#include "collective_detail.h"
#include "dtrain/core/rng.h"
#include "dtrain/net/robust_aggregate.h"
#include "gossip_frame.h"

namespace dtrain::net {

using gossip_detail::gossip_kind;

void noloco_permutation(std::uint64_t seed, std::uint64_t round, std::span<rank_t> perm) noexcept {
  DTRAIN_ASSERT(perm.size() <= std::numeric_limits<rank_t>::max());
  std::iota(perm.begin(), perm.end(), rank_t{0});
  counter_rng rng(seed, round);
  for (std::size_t i = perm.size(); i > 1; --i) {
    const std::uint32_t j = rng.next_below(static_cast<std::uint32_t>(i));
    std::swap(perm[i - 1], perm[j]);
  }
}

namespace {

constexpr const char* kWho = "noloco_pairing";

// The group starting at perm[start] (2 entries, or 3 for the trailing triple of odd n).
noloco_group group_at(std::span<const rank_t> perm, std::size_t start) noexcept {
  const std::size_t n = perm.size();
  noloco_group g;
  g.size = n == 1 ? 1 : (n % 2 == 1 && start == n - 3) ? 3 : 2;
  for (std::size_t k = 0; k < g.size; ++k) g.members[k] = perm[start + k];
  // Insertion sort of at most three entries (std::sort trips a false -Warray-bounds here).
  auto& m = g.members;
  if (g.size >= 2 && m[1] < m[0]) std::swap(m[0], m[1]);
  if (g.size == 3) {
    if (m[2] < m[1]) std::swap(m[1], m[2]);
    if (m[1] < m[0]) std::swap(m[0], m[1]);
  }
  return g;
}

}  // namespace

noloco_group noloco_group_of(std::uint64_t seed, std::uint64_t round, rank_t rank, std::span<rank_t> scratch) noexcept {
  const std::size_t n = scratch.size();
  DTRAIN_ASSERT(rank < n);
  noloco_permutation(seed, round, scratch);
  const std::size_t pos = static_cast<std::size_t>(std::find(scratch.begin(), scratch.end(), rank) - scratch.begin());
  if (n == 1) return group_at(scratch, 0);
  const std::size_t start = (n % 2 == 1 && pos >= n - 3) ? n - 3 : pos & ~std::size_t{1};
  return group_at(scratch, start);
}

std::vector<noloco_group> noloco_groups(std::size_t n, std::uint64_t seed, std::uint64_t round) {
  DTRAIN_ASSERT(n >= 1);
  std::vector<rank_t> perm(n);
  noloco_permutation(seed, round, perm);
  std::vector<noloco_group> out;
  if (n == 1) {
    out.push_back(group_at(perm, 0));
    return out;
  }
  const std::size_t pairs_end = n % 2 == 1 ? n - 3 : n;
  for (std::size_t s = 0; s < pairs_end; s += 2) out.push_back(group_at(perm, s));
  if (n % 2 == 1) out.push_back(group_at(perm, n - 3));
  return out;
}

noloco_pairing::noloco_pairing() = default;
noloco_pairing::~noloco_pairing() = default;

result<std::unique_ptr<noloco_pairing>> noloco_pairing::create(transport& t, std::size_t count,
                                                               const collective_options& o, std::uint64_t seed) {
  DTRAIN_RETURN_IF_ERROR(detail::check_options(o, kWho));
  if (o.robust.clip_to_median_norm) {
    return invalid_argument("noloco_pairing: robust.clip_to_median_norm is not supported");
  }
  if (o.robust.trim_fraction != 0.0) {
    return invalid_argument("noloco_pairing: robust.trim_fraction is not supported");
  }
  if (t.size() > std::numeric_limits<rank_t>::max()) return invalid_argument("noloco_pairing: too many peers");
  auto c = detail::make_wire_codec(o.codec, kWho);
  if (!c.ok()) return c.status();

  std::unique_ptr<noloco_pairing> p(new noloco_pairing());
  p->t_ = &t;
  p->count_ = count;
  p->o_ = o;
  p->seed_ = seed;
  p->codec_ = std::move(*c);
  p->lossless_ = p->codec_->id() == codec::codec_id::identity;
  p->perm_.resize(t.size());
  p->payload_cap_ = p->codec_->max_encoded_bytes(count);
  p->frame_cap_ = gossip_detail::frame_header_bytes(2) + 2 * p->payload_cap_;
  p->send_frame_.resize(p->frame_cap_);
  p->recv_frames_.resize(2 * p->frame_cap_);
  p->other_dec_.resize(2 * count);
  for (auto& v : p->own_dec_) v.resize(p->lossless_ ? 0 : count);
  for (auto& v : p->acc_) v.resize(count);
  p->ex_ = std::make_unique<gossip_detail::gossip_exchange>();
  p->ex_->reserve(2, 2);
  return p;
}

noloco_group noloco_pairing::group_of(std::uint64_t round) const noexcept {
  return noloco_group_of(seed_, round, t_->rank(), perm_);
}

std::optional<rank_t> noloco_pairing::partner_of(std::uint64_t round) const noexcept {
  const noloco_group g = group_of(round);
  if (g.size != 2) return std::nullopt;
  return g.members[0] == t_->rank() ? g.members[1] : g.members[0];
}

status noloco_pairing::average(std::span<float> data, std::uint64_t round, std::span<float> residual) {
  const std::span<float> vecs[1] = {data};
  const std::span<float> res[1] = {residual};
  return run(vecs, round, res);
}

status noloco_pairing::average_pair(std::span<float> a, std::span<float> b, std::uint64_t round,
                                    std::span<float> residual_a, std::span<float> residual_b) {
  const std::span<float> vecs[2] = {a, b};
  const std::span<float> res[2] = {residual_a, residual_b};
  return run(vecs, round, res);
}

status noloco_pairing::run(std::span<const std::span<float>> vecs, std::uint64_t round,
                           std::span<const std::span<float>> residuals) {
  using namespace gossip_detail;
  const std::size_t nv = vecs.size();
  for (std::size_t v = 0; v < nv; ++v) {
    if (vecs[v].size() != count_) {
      return invalid_argument(std::string(kWho) + ": vector " + std::to_string(v) + " has " +
                              std::to_string(vecs[v].size()) + " floats, expected " + std::to_string(count_));
    }
    if (!residuals[v].empty() && residuals[v].size() != count_) {
      return invalid_argument(std::string(kWho) + ": residual " + std::to_string(v) + " has " +
                              std::to_string(residuals[v].size()) + " floats, expected 0 or " +
                              std::to_string(count_));
    }
  }
  const std::uint32_t seq = seq_++;
  const rank_t me = t_->rank();
  const noloco_group g = group_of(round);
  if (g.size == 1) {  // a lone node: nothing to average with
    for (auto r : residuals) std::fill(r.begin(), r.end(), 0.0f);
    report_ = {nv, 0, static_cast<double>(o_.weight), 0, 0};
    return ok_status();
  }
  const tag_t tag = make_tag(o_.channel, seq, 0);
  const deadline d = after(o_.timeout);

  // 1. The own frame: weight, then one payload per vector (or a flag).
  const std::size_t hdr = frame_header_bytes(nv);
  status local;
  std::uint8_t flags = 0;
  std::size_t lens[2] = {0, 0};
  bool own_ok[2] = {false, false};
  std::size_t pos = hdr;
  for (std::size_t v = 0; v < nv && local.ok(); ++v) {
    if (!all_finite(vecs[v])) {
      if (o_.robust.reject_nonfinite) {
        flags |= nonfinite_flag(v);
      } else {
        local = invalid_argument(std::string(kWho) + ": vector " + std::to_string(v) +
                                 " holds NaN/Inf (robust.reject_nonfinite is off)");
      }
      continue;
    }
    auto n = codec_->encode(vecs[v], std::span(send_frame_).subspan(pos, payload_cap_));
    if (!n.ok()) {
      local = n.status();
      continue;
    }
    lens[v] = *n;
    pos += *n;
    own_ok[v] = true;
  }
  if (!local.ok()) {
    flags = flag_failed;
    lens[0] = lens[1] = 0;
    pos = hdr;
  }
  write_frame_header(send_frame_, gossip_kind::noloco, flags, static_cast<double>(o_.weight),
                     std::span<const std::size_t>(lens, nv));
  const auto frame = std::span<const std::byte>(send_frame_).first(pos);

  // 2. Exchange with the other members (receive slot k = k-th other member, ascending).
  ex_->clear();
  std::size_t slot = 0;
  for (rank_t m : g.ranks()) {
    if (m != me) ex_->post_recv(*t_, m, tag, std::span(recv_frames_).subspan(slot++ * frame_cap_, frame_cap_));
  }
  for (rank_t m : g.ranks()) {
    if (m != me) ex_->post_send(*t_, m, tag, frame);
  }
  status st = ex_->wait(*t_, d);
  if (!local.ok()) return local;
  if (!st.ok()) return st;

  // 3. Parse every frame (own included) before touching anything.
  frame_view frames[3];
  std::uint64_t bytes_in = 0;
  slot = 0;
  for (std::size_t k = 0; k < g.size; ++k) {
    const rank_t m = g.members[k];
    std::span<const std::byte> msg = frame;
    if (m != me) {
      msg = std::span<const std::byte>(recv_frames_).subspan(slot * frame_cap_, ex_->received(slot));
      ++slot;
      bytes_in += msg.size();
    }
    auto f = parse_frame(msg, gossip_kind::noloco, nv, m);
    if (!f.ok()) return f.status();
    // Weights are averaged in fp32 (plan_weights() asserts they are finite); an honest
    // member sends its f32 collective_options::weight.
    if (f->weight > static_cast<double>(std::numeric_limits<float>::max())) {
      return data_loss(std::string(kWho) + ": frame from peer " + std::to_string(m) + " carries a weight beyond fp32");
    }
    frames[k] = *f;
  }

  // 4. Per vector: decode every member (own payload too, so that all members sum the
  // same values), drop the non-finite ones, then the weighted mean in ascending rank.
  std::size_t contributors = 0, dropped = 0;
  double weight_sum0 = 0;
  for (std::size_t v = 0; v < nv; ++v) {
    std::span<const float> rows[3];
    float weights[3] = {0, 0, 0}, eff[3] = {0, 0, 0};
    std::uint8_t drop[3] = {0, 0, 0};
    slot = 0;
    for (std::size_t k = 0; k < g.size; ++k) {
      const rank_t m = g.members[k];
      weights[k] = static_cast<float>(frames[k].weight);
      std::span<float> out = m == me ? (lossless_ ? std::span<float>() : std::span<float>(own_dec_[v]))
                                     : std::span(other_dec_).subspan(slot++ * count_, count_);
      if ((frames[k].flags & nonfinite_flag(v)) != 0) {
        drop[k] = 1;
        continue;
      }
      if (m == me && lossless_) {
        rows[k] = vecs[v];  // the identity decode of the own payload
        continue;
      }
      if (status ds = codec_->decode(frames[k].payload[v], out); !ds.ok()) {
        if (m == me) return internal_error(std::string(kWho) + ": own payload does not decode: " + ds.to_string());
        return detail::corrupt_payload(kWho, m, ds);
      }
      rows[k] = out;
      if (!all_finite(out)) {
        if (!o_.robust.reject_nonfinite) {
          return out_of_range(std::string(kWho) + ": payload from peer " + std::to_string(m) +
                              " decodes to NaN/Inf (robust.reject_nonfinite is off)");
        }
        drop[k] = 1;
      }
    }
    const weight_plan plan =
        plan_weights(std::span<const float>(weights, g.size), std::span<const std::uint8_t>(drop, g.size),
                     std::span<float>(eff, g.size));
    if (plan.contributors == 0) {
      // Every weight-carrying contribution was dropped (plan_weights() falls back to the
      // plain mean when the kept ones all have weight 0, so this means none was kept).
      return invalid_argument(std::string(kWho) + ": every contribution of the group to vector " +
                              std::to_string(v) + " was non-finite");
    }
    for (std::size_t k = 0; k < g.size; ++k) {
      if (eff[k] == 0.0f) rows[k] = vecs[v];  // not read (coefficient 0); keeps sizes equal
    }
    weighted_mean(std::span<const std::span<const float>>(rows, g.size), std::span<const float>(eff, g.size),
                  plan.weight_sum, acc_[v]);
    contributors += plan.contributors;
    dropped += plan.dropped;
    if (v == 0) weight_sum0 = static_cast<double>(plan.weight_sum);
  }

  // 5. Commit.
  for (std::size_t v = 0; v < nv; ++v) {
    const std::span<float> r = residuals[v];
    if (!r.empty()) {
      if (!own_ok[v]) {  // nothing of the input reached the group
        std::copy(vecs[v].begin(), vecs[v].end(), r.begin());
      } else if (lossless_) {
        std::fill(r.begin(), r.end(), 0.0f);
      } else {
        for (std::size_t k = 0; k < count_; ++k) r[k] = vecs[v][k] - own_dec_[v][k];
      }
    }
    if (count_ != 0) std::memcpy(vecs[v].data(), acc_[v].data(), count_ * sizeof(float));
  }
  report_.contributors = contributors;
  report_.dropped = dropped;
  report_.weight_sum = weight_sum0;
  report_.bytes_sent = static_cast<std::uint64_t>(frame.size()) * (g.size - 1);
  report_.bytes_received = bytes_in;
  return ok_status();
}

}  // namespace dtrain::net
