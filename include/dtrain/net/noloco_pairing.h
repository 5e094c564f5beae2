// dtrain/net/noloco_pairing.h: NoLoCo's all-reduce-free averaging (Kolehmainen et al.,
// Gensyn, arXiv 2506.10911): every outer round a seeded random permutation splits the
// peers into pairs (one triple when n is odd) and each group averages exactly within
// itself. Every peer computes the same grouping without communicating. Guide:
// docs/collectives.md ("noloco_pair").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "dtrain/codec/codec.h"
#include "dtrain/net/averager.h"
#include "dtrain/net/collective_options.h"
#include "dtrain/net/transport.h"

namespace dtrain::net {

namespace gossip_detail {
class gossip_exchange;
}

/// One group of a NoLoCo round: 2 peers, 3 (the last group when n is odd and >= 3), or
/// 1 (n = 1). Members in ascending rank order.
struct noloco_group {
  std::array<rank_t, 3> members{};
  std::size_t size = 0;

  std::span<const rank_t> ranks() const noexcept { return {members.data(), size}; }
  bool contains(rank_t r) const noexcept {
    for (std::size_t k = 0; k < size; ++k)
      if (members[k] == r) return true;
    return false;
  }
  /// Unused member slots are 0, so equal groups compare equal.
  friend bool operator==(const noloco_group&, const noloco_group&) = default;
};

/// The permutation of round `round`: Fisher-Yates on 0..n-1 driven by
/// dtrain::counter_rng(seed, round) (stream = round): for i = n-1 down to 1, swap perm[i]
/// with perm[next_below(i + 1)]. Deterministic on every machine (integer only).
/// @pre perm.size() == n, n < 2^32 (asserted).
void noloco_permutation(std::uint64_t seed, std::uint64_t round, std::span<rank_t> perm) noexcept;

/// The group holding `rank` in round `round` of n peers: with p = the permutation, the
/// groups are {p[0], p[1]}, {p[2], p[3]}, ...; when n is odd the last three entries
/// {p[n-3], p[n-2], p[n-1]} form one triple; n = 1 gives {0}. `scratch` (n entries)
/// receives the permutation, so no allocation happens.
/// @pre rank < n, scratch.size() == n (asserted).
noloco_group noloco_group_of(std::uint64_t seed, std::uint64_t round, rank_t rank, std::span<rank_t> scratch) noexcept;

/// Every group of round `round`, ordered by their position in the permutation; they
/// partition 0..n-1. Allocates. @pre n >= 1, n < 2^32 (asserted).
std::vector<noloco_group> noloco_groups(std::size_t n, std::uint64_t seed, std::uint64_t round);

/// NoLoCo group averaging. Per call (round r): the node finds its group g =
/// noloco_group_of(seed, r, rank), sends one frame (its weight and C(x)) to each other
/// member and receives theirs, decodes every member's payload, its own included, and sets
///   x <- S / W,  S = sum over the members m in ascending rank, from +0, of
///                fl(w_m * D(C(x_m))), W = sum of the same w_m, both in fp32
/// (with every w_m = 0: all w_m taken as 1, the plain mean): plan_weights() and
/// weighted_mean() of robust_aggregate.h, the reduction of the global collectives, over
/// the group. Every member sums the same
/// decoded values in the same order, so the whole group ends bit-identical; different
/// groups end different (exact_consensus() is false). With the identity codec and weight
/// 1 a pair ends with fl((x_a + x_b) / 2), exact whenever x_a + x_b is.
///
/// NoLoCo's outer step needs two averages with the same partner in one round (the
/// pseudo-gradients and the outer parameters): call average() twice with the same round
/// (two message exchanges; the grouping depends only on (seed, round)), or average_pair()
/// once (one exchange carrying both payloads).
///
/// Robust options: reject_nonfinite (a member's vector holding NaN/Inf, as sent or as
/// decoded, leaves the group's sum and weight; all members agree on it);
/// clip_to_median_norm and trim_fraction are refused (meaningless in groups of 2).
class noloco_pairing final : public averager {
 public:
  /// Builds node t.rank()'s instance; `seed` must be the same on every peer. Allocates
  /// the permutation scratch, two own frames and receive frames for two members.
  /// Errors (invalid_argument, naming the field): o.weight negative or not finite,
  /// o.robust.clip_to_median_norm, o.robust.trim_fraction != 0, o.timeout <= 0,
  /// o.channel >= 2^24, a bad o.codec (make_codec()'s error, or the error-feedback
  /// decorator "ef:", refused on the wire), or t.size() >= 2^32.
  static result<std::unique_ptr<noloco_pairing>> create(transport& t, std::size_t count, const collective_options& o,
                                                         std::uint64_t seed);
  ~noloco_pairing() override;
  noloco_pairing(const noloco_pairing&) = delete;
  noloco_pairing& operator=(const noloco_pairing&) = delete;

  std::string_view name() const noexcept override { return "noloco_pair"; }
  std::size_t count() const noexcept override { return count_; }
  bool exact_consensus() const noexcept override { return false; }

  /// This node's group in round `round` (no communication, no allocation; not safe to
  /// call concurrently with another call on this instance).
  noloco_group group_of(std::uint64_t round) const noexcept;
  /// The other member when this node's group in `round` is a pair; nullopt for a
  /// triple or a lone node (use group_of()).
  std::optional<rank_t> partner_of(std::uint64_t round) const noexcept;
  std::uint64_t seed() const noexcept { return seed_; }

  /// Replaces data with its group's weighted mean for round `round` (class comment).
  /// `residual`, if non-empty, receives data - D(C(data)) (exact: that is what every
  /// member used; zero with the identity codec and for a lone node; the whole input when
  /// it was non-finite and dropped). A lone node (n = 1) keeps its data.
  /// Errors (data and residual unchanged, every posted op retired):
  /// - invalid_argument: data.size() != count() or a residual of another non-zero size
  ///   (nothing sent); the own input holds NaN/Inf with reject_nonfinite off (the other
  ///   members fail with aborted); every contribution of the group was non-finite;
  /// - aborted / deadline_exceeded: from the transport (a member is gone or slow), or
  ///   aborted when a member could not contribute;
  /// - data_loss: a member's frame or payload is corrupt, truncated or over-long (names
  ///   the peer); unimplemented: its frame has a newer version;
  /// - out_of_range: a member's payload decodes to NaN/Inf with reject_nonfinite off.
  status average(std::span<float> data, std::uint64_t round, std::span<float> residual = {}) override;

  /// average() of `a` and of `b` with the same group in one message exchange (one frame
  /// with two payloads per member). The two vectors are averaged independently (a
  /// non-finite `a` drops only the member's `a`). Residuals as in average(), each empty
  /// or count() floats. Errors: as average(); on error a, b and both residuals are
  /// unchanged. last_report() counts both vectors (contributors and dropped summed).
  /// @pre a and b do not overlap.
  status average_pair(std::span<float> a, std::span<float> b, std::uint64_t round,
                      std::span<float> residual_a = {}, std::span<float> residual_b = {});

  const average_report& last_report() const noexcept override { return report_; }

 private:
  noloco_pairing();
  status run(std::span<const std::span<float>> vecs, std::uint64_t round, std::span<const std::span<float>> residuals);

  transport* t_ = nullptr;
  std::size_t count_ = 0;
  collective_options o_;
  std::uint64_t seed_ = 0;
  std::unique_ptr<codec::codec> codec_;
  bool lossless_ = false;
  std::uint32_t seq_ = 0;
  mutable std::vector<rank_t> perm_;  // group_of() scratch
  std::size_t payload_cap_ = 0;       // max_encoded_bytes(count)
  std::size_t frame_cap_ = 0;         // header + 2 payloads
  std::vector<std::byte> send_frame_;
  std::vector<std::byte> recv_frames_;  // 2 members
  std::vector<float> other_dec_;        // 2 x count: the other members' decoded payloads
  std::vector<float> own_dec_[2];       // per vector: D(C(x)) of the own payload (lossy codecs)
  std::vector<float> acc_[2];           // per vector: the group mean before commit
  average_report report_;
  std::unique_ptr<gossip_detail::gossip_exchange> ex_;
};

}  // namespace dtrain::net
