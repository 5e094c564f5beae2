// dtrain/net/neighbor_average.h: one round of D-PSGD gossip (Lian et al., NeurIPS 2017):
// each node replaces its vector by the W-weighted mix of its own and its in-neighbours'
// vectors, x_i <- sum_j W(i,j) x_j, with W taken from a (possibly time-varying) schedule.
// Guide, message pattern and frame layout: docs/collectives.md ("neighbor").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "dtrain/codec/codec.h"
#include "dtrain/net/averager.h"
#include "dtrain/net/collective_options.h"
#include "dtrain/net/transport.h"
#include "dtrain/topology/mixing.h"
#include "dtrain/topology/schedule.h"

namespace dtrain::net {

namespace gossip_detail {
class gossip_exchange;
}

struct neighbor_options {
  /// Which value of its own the node mixes in. false (default, D-PSGD): its raw x_i, so
  /// the codec error touches only what the neighbours see. true: D(C(x_i)), the value its
  /// neighbours decode; then for doubly stochastic W the network sum of the outputs plus
  /// the returned residuals equals the sum of the inputs (exact mean preservation up to
  /// the rounding of the additions), at the price of also mixing the own codec error in.
  bool self_decoded = false;
};

/// D-PSGD neighbour averaging over a mixing schedule. Per call (round t, W = s.at(t),
/// node i = t.rank()): i sends the frame of C(x_i) to every k with W(k,i) != 0, receives
/// C(x_j) from every j with W(i,j) != 0 and sets
///   x_i <- sum over j ascending (own index i included at its place) of
///          float(W(i,j)) * v_j,   v_i = x_i (or D(C(x_i))), v_j = D(C(x_j)),
/// accumulated in fp32, one product and one addition per term (deterministic; no FMA).
/// Not a global consensus: every node ends with its own neighbourhood mix
/// (exact_consensus() is false); repeated rounds of a doubly stochastic W contract the
/// disagreement by rho(W) per round (topology/spectral.h).
///
/// Weights: weighted gossip does not converge to the weighted mean, so
/// collective_options::weight must be 1 (create() refuses others); use push_sum for
/// weighted averages.
/// Robust options over the neighbourhood (the node's own term and its in-neighbours;
/// the arithmetic of robust_aggregate.h):
/// - reject_nonfinite drops a contribution holding NaN/Inf (the sender's input, or its
///   decoded payload) and renormalises the row over the survivors (W(i,j) / sum of the
///   surviving W(i,j); a full row is used as given);
/// - clip_to_median_norm scales each surviving contribution whose L2 norm exceeds the
///   lower median of the survivors' norms down to that median (median_clip_scales());
/// - trim_fraction > 0 replaces the W-weighted mix by the coordinate-wise trimmed mean of
///   the m surviving terms, floor(trim_fraction * m) dropped at each end (trimmed_mean();
///   W then only says who the neighbours are, as in BRIDGE, Yang & Bajwa, IEEE TSIPN
///   2019). Meaningful with m >= 3 (m = 1, 2 trim nothing).
class neighbor_average final : public averager {
 public:
  /// Builds node t.rank()'s instance. `s` must be the same schedule on every peer.
  /// Allocates every buffer: one frame for the own payload, one per in-neighbour
  /// (max over the schedule's rounds), and decode scratch of count floats per
  /// in-neighbour.
  /// Errors (invalid_argument, naming the field): s.n() != t.size(), an empty schedule,
  /// a round that fails mixing::validate() or is not row stochastic within
  /// topology::stochastic_tolerance, o.weight != 1, o.robust.trim_fraction outside
  /// [0, 0.5), o.timeout <= 0, o.channel >= 2^24, or a bad o.codec (make_codec()'s error,
  /// or the error-feedback decorator "ef:", refused on the wire: use the residual).
  static result<std::unique_ptr<neighbor_average>> create(transport& t, std::size_t count,
                                                          const collective_options& o, topology::schedule s,
                                                          const neighbor_options& no = {});
  ~neighbor_average() override;
  neighbor_average(const neighbor_average&) = delete;
  neighbor_average& operator=(const neighbor_average&) = delete;

  std::string_view name() const noexcept override { return "neighbor"; }
  std::size_t count() const noexcept override { return count_; }
  bool exact_consensus() const noexcept override { return false; }

  /// One gossip round of W = schedule().at(round) (see the class comment). Every peer
  /// must call it with the same round and in the same sequence of calls; the node's
  /// neighbours for the round are view(round).
  /// `residual`, if non-empty, receives data - D(C(data)), exactly what the neighbours
  /// did not see of this node's vector (zero with the identity codec; the whole input
  /// when it was non-finite and dropped, as in the global collectives).
  /// Errors (data and residual unchanged, every posted op retired):
  /// - invalid_argument: data.size() != count(), or residual non-empty and of another
  ///   size (nothing is sent); the own input holds NaN/Inf and reject_nonfinite is off
  ///   (the neighbours get a "could not contribute" frame and fail with aborted); or every
  ///   contribution of the row was dropped as non-finite;
  /// - aborted / deadline_exceeded: from the transport (a neighbour is gone, too slow),
  ///   or aborted when a neighbour could not contribute;
  /// - data_loss: a neighbour's frame or payload is corrupt, truncated or over-long
  ///   (names the peer); unimplemented: its frame has a newer version;
  /// - out_of_range: a neighbour's payload decodes to NaN/Inf and reject_nonfinite is off.
  /// Deterministic: the same inputs give the same bits on every machine.
  status average(std::span<float> data, std::uint64_t round, std::span<float> residual = {}) override;

  const average_report& last_report() const noexcept override { return report_; }

  /// This node's view of round `round`'s matrix: self weight, in-neighbours with their
  /// weights (ascending), out-neighbours (ascending).
  const topology::node_view& view(std::uint64_t round) const noexcept {
    return views_[static_cast<std::size_t>(round % views_.size())];
  }
  const topology::schedule& schedule() const noexcept { return schedule_; }
  const neighbor_options& options() const noexcept { return nopt_; }

 private:
  neighbor_average();

  transport* t_ = nullptr;
  std::size_t count_ = 0;
  collective_options o_;
  neighbor_options nopt_;
  topology::schedule schedule_;
  std::vector<topology::node_view> views_;  // per round of the period
  std::unique_ptr<codec::codec> codec_;
  bool lossless_ = false;  // identity codec: D(C(x)) == x, skip the own decode
  std::uint32_t seq_ = 0;
  std::size_t frame_cap_ = 0;           // header + max_encoded_bytes(count)
  std::vector<std::byte> send_frame_;   // frame_cap_
  std::vector<std::byte> recv_frames_;  // max in-degree * frame_cap_
  std::vector<float> decoded_;          // max in-degree * count
  std::vector<float> self_dec_;         // count: D(C(x_i))
  std::vector<float> acc_;              // count
  // Per term of the row, in ascending peer order (max in-degree + 1 entries each).
  std::vector<std::span<const float>> rows_;
  std::vector<double> wrow_;          // W(i, j)
  std::vector<std::uint8_t> alive_;   // survived reject_nonfinite
  std::vector<float> coef_, eff_, norms_, scale_, scratch_;
  average_report report_;
  std::unique_ptr<gossip_detail::gossip_exchange> ex_;  // posted ops, reserved in create()
};

}  // namespace dtrain::net
