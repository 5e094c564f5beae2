// dtrain/net/push_sum.h: push-sum gossip (Kempe et al., FOCS 2003) as used by Stochastic
// Gradient Push (Assran et al., ICML 2019) on directed, possibly time-varying graphs:
// every node carries a vector and a scalar mass, pushes column-stochastic shares of both
// to its out-neighbours, and de-biases with vector/mass. Converges to the (weighted) mean
// on any strongly connected schedule, directed or not. Guide: docs/collectives.md
// ("push_sum").
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

struct push_sum_options {
  /// Gossip rounds one average() call runs (>= 1). Call `r` uses the schedule rounds
  /// r * rounds_per_call ... r * rounds_per_call + rounds_per_call - 1, so e.g.
  /// one_peer_exponential(n) with rounds_per_call = log2 n averages exactly per call for
  /// n a power of two.
  std::size_t rounds_per_call = 1;
};

/// Push-sum over a column-stochastic schedule (topology::push_sum_weights(), or any
/// doubly stochastic one). State per node: a de-biased vector z_i (count floats) and a
/// mass w_i (double); the push-sum numerator is x_i = w_i z_i.
///
/// One round of W = s.at(t) at node i: i encodes z_i once, sends (w_i, C(z_i)) to every
/// k != i with W(k,i) != 0, receives (w_j, C(z_j)) from every j != i with W(i,j) != 0, and
///   X   = sum over j ascending (i at its place) of float(W(i,j) w_j) * v_j
///         with v_j = D(C(z_j)) and v_i = z_i, plus float(s_i w_i) * (z_i - D(C(z_i)))
///   w_i <- sum over the same j of W(i,j) w_j        (double)
///   z_i <- X / float(w_i)                           (fp32)
/// where s_i = sum_{k != i} W(k,i) is the share i sends away. The receiver applies W(i,j)
/// (every node knows the schedule), which equals sender-side scaling and lets the sender
/// encode once. The last term keeps at home the part of its sent share that the codec did
/// not deliver, so sum_i w_i z_i and sum_i w_i are preserved exactly in exact arithmetic
/// for any codec (not only the identity): nothing is lost to compression, and the
/// error-feedback residual of average() is zero.
///
/// Robust options: reject_nonfinite (a node whose vector turns non-finite discards its
/// mass, sends none, and rejoins with what it receives; a received payload that decodes
/// to NaN/Inf is dropped, mass included, so the estimate renormalises by itself);
/// clip_to_median_norm and trim_fraction are refused.
class push_sum final : public averager {
 public:
  /// Builds node t.rank()'s instance; its state starts as z = 0, w = 0 (no mass).
  /// `s` must be the same schedule on every peer. Allocates every buffer: own frame,
  /// one frame per in-neighbour (max over the rounds), three count-float vectors.
  /// Errors (invalid_argument, naming the field): s.n() != t.size(), an empty schedule,
  /// a round that fails mixing::validate() or is not column stochastic within
  /// topology::stochastic_tolerance, rounds_per_call = 0, o.weight negative or not
  /// finite, o.robust.clip_to_median_norm, o.robust.trim_fraction != 0, o.timeout <= 0,
  /// o.channel >= 2^24, or a bad o.codec (make_codec()'s error, or the error-feedback
  /// decorator "ef:", refused on the wire).
  static result<std::unique_ptr<push_sum>> create(transport& t, std::size_t count, const collective_options& o,
                                                  topology::schedule s, const push_sum_options& po = {});
  ~push_sum() override;
  push_sum(const push_sum&) = delete;
  push_sum& operator=(const push_sum&) = delete;

  std::string_view name() const noexcept override { return "push_sum"; }
  std::size_t count() const noexcept override { return count_; }
  bool exact_consensus() const noexcept override { return false; }

  // --- Stateful multi-round API -------------------------------------------------------

  /// Sets the state to z = values, w = weight (the numerator is weight * values).
  /// Local; no communication. Non-finite values with reject_nonfinite give no mass
  /// (z = values, w = 0; the node then only relays what it receives) and count in
  /// last_report().dropped of the next step().
  /// Errors: invalid_argument for values.size() != count(), weight negative or not
  /// finite, or non-finite values with reject_nonfinite off. On error the state is
  /// unchanged.
  status init(std::span<const float> values, double weight);

  /// One push-sum round of W = schedule().at(round) (see the class comment); every peer
  /// calls it with the same round, in the same sequence of calls. A node whose mass ends
  /// at 0 (nothing with mass reached it) keeps its z.
  /// Errors (state unchanged, every posted op retired): aborted / deadline_exceeded from
  /// the transport, or aborted when a neighbour could not contribute; data_loss for a
  /// corrupt, truncated or over-long frame or payload (names the peer); unimplemented
  /// for a newer frame version; out_of_range for a payload that decodes
  /// to NaN/Inf with reject_nonfinite off; invalid_argument when z is non-finite with
  /// reject_nonfinite off (the neighbours fail with aborted).
  status step(std::uint64_t round);

  /// out = z, the de-biased estimate x / w (this node's own values while w = 0).
  /// @pre out.size() == count() (asserted).
  void estimate(std::span<float> out) const;
  /// The current mass w (sum over the nodes is preserved by every round).
  double weight() const noexcept { return w_; }
  /// out = float(w) * z, the push-sum numerator (sum over the nodes is preserved up to
  /// rounding). @pre out.size() == count() (asserted).
  void numerator(std::span<float> out) const;

  // --- averager -------------------------------------------------------------------------

  /// Like init(data, options().weight) (but a non-finite input with reject_nonfinite
  /// off is reported after the first exchange, so the neighbours fail with aborted
  /// instead of waiting out their deadline), then rounds_per_call step()s (schedule rounds
  /// round * rounds_per_call + r), then data = estimate(). With one round per call this
  /// is x_i <- sum_j W(i,j) w_j v_j / sum_j W(i,j) w_j (v_j = D(C(x_j)), v_i = x_i, plus
  /// the undelivered codec error of i's sent share): a weighted neighbourhood mix.
  /// A node left without mass (every weight that reached it was 0) keeps its data. The
  /// `residual`, if non-empty, is set to zero: the codec error is never lost but stays in
  /// this node's mass (see the class comment), so error feedback is not needed; it is
  /// set to the whole input when that was non-finite and dropped.
  /// Errors: invalid_argument for data.size() != count() or a residual of another
  /// non-zero size (nothing is sent), otherwise those of init() and step(). On error
  /// data and residual are unchanged; the stateful state is then unspecified (the next
  /// average() or init() resets it).
  status average(std::span<float> data, std::uint64_t round, std::span<float> residual = {}) override;

  /// For average(): contributors of its last round, dropped and bytes summed over its
  /// rounds, weight_sum = the final mass. For step(): that round.
  const average_report& last_report() const noexcept override { return report_; }

  const topology::node_view& view(std::uint64_t round) const noexcept {
    return views_[static_cast<std::size_t>(round % views_.size())];
  }
  const topology::schedule& schedule() const noexcept { return schedule_; }
  std::size_t rounds_per_call() const noexcept { return rounds_per_call_; }

 private:
  push_sum();
  status round(std::uint64_t t, std::uint32_t seq, std::uint32_t step_index, deadline d);

  transport* t_ = nullptr;
  std::size_t count_ = 0;
  collective_options o_;
  std::size_t rounds_per_call_ = 1;
  topology::schedule schedule_;
  std::vector<topology::node_view> views_;  // per round of the period
  std::vector<double> send_share_;          // per round: s_i = sum_{k != i} W(k, i)
  std::unique_ptr<codec::codec> codec_;
  bool lossless_ = false;
  std::uint32_t seq_ = 0;
  std::size_t frame_cap_ = 0;
  std::vector<std::byte> send_frame_;
  std::vector<std::byte> recv_frames_;
  std::vector<float> z_;        // state
  double w_ = 0;                // state
  std::vector<float> scratch_;  // decoded payloads
  std::vector<float> own_dec_;  // D(C(z)) of the own payload (lossy codecs)
  std::vector<float> acc_;      // next z
  std::size_t pending_dropped_ = 0;  // init() dropped the own input
  average_report report_;
  std::unique_ptr<gossip_detail::gossip_exchange> ex_;
};

}  // namespace dtrain::net
