// dtrain/net/allreduce_ring.h: PRIME-style ring all-reduce average with a lossy codec on
// the wire (reduce-scatter re-encoding the fp32 partial at every hop, owner
// quantize-dequantize, all-gather forwarding the owner's bytes), so every peer ends with
// bit-identical values. Algorithm, bytes and wire format: docs/collectives.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "dtrain/codec/codec.h"
#include "dtrain/core/status.h"
#include "dtrain/net/averager.h"
#include "dtrain/net/collective_options.h"
#include "dtrain/net/transport.h"

namespace dtrain::net {

/// Options of the ring beyond collective_options.
struct ring_options {
  /// Largest number of floats one message carries. Each of the n chunks is cut into G
  /// segments (G = ceil(largest chunk / max_segment_floats)) and the ring runs once per
  /// segment, so the payload buffers stay O(max_segment_floats) for any count. >= 1.
  std::size_t max_segment_floats = std::size_t{1} << 20;
};

/// Ring all-reduce average (name "ring", exact_consensus true). One instance per peer;
/// every peer of the transport takes part and calls average() in the same sequence.
///
/// Result: y = D(C(fl(S / W))) per chunk, where S is the fp32 sum of the peers' weighted
/// contributions fl(w_i * x_i) accumulated hop by hop around the ring (each hop decodes the
/// partial it receives), W the fp32 sum of the weights in rank order, C/D the codec. With
/// the identity codec and weight 1 on every peer, y = fl(exact_sum / n) whenever the sum
/// is exact in fp32. With one peer, y = D(C(x)).
///
/// Codecs: dense ones only (identity, fp16, bf16, minmax, blockwise, uniform8,
/// quantile8, fp4). Robust options: reject_nonfinite (a peer whose input holds NaN/Inf
/// contributes zero with weight 0 and counts as dropped; every peer knows this from a
/// small all-to-all of weights before the ring) and clip_to_median_norm (each peer
/// scales its own contribution; the norms travel in the same all-to-all). A ring can only
/// check each peer's own input, so it guards against faults, not adversaries: a peer can
/// corrupt every partial that passes through it. trim_fraction > 0 is refused.
class ring_allreduce final : public averager {
 public:
  /// Builds the ring for `count` floats and allocates every buffer.
  /// Errors: invalid_argument for bad options (weight not finite or < 0, timeout <= 0,
  /// channel >= 2^24, trim_fraction > 0, max_segment_floats == 0), an unknown codec spec,
  /// the "ef:" decorator, or a codec that is not dense (topk, dct_topk, randomk, sign,
  /// powersgd: use butterfly_allreduce or sparse_allgather).
  static result<std::unique_ptr<ring_allreduce>> create(transport& t, std::size_t count,
                                                        const collective_options& o, ring_options ro = {});

  ~ring_allreduce() override;
  ring_allreduce(const ring_allreduce&) = delete;
  ring_allreduce& operator=(const ring_allreduce&) = delete;

  std::string_view name() const noexcept override { return "ring"; }
  std::size_t count() const noexcept override { return count_; }
  bool exact_consensus() const noexcept override { return true; }

  /// Replaces `data` with the ring average (see the class comment); `round` is unused
  /// (the ring has no per-round state). If `residual` is non-empty it receives
  /// data − D(C(data)), per chunk and segment as sent: the error of quantizing this
  /// peer's own contribution alone. That is an approximation: what the others decode is
  /// the partial sum the codec carried, not this peer's term (a dropped peer's residual
  /// is its data).
  /// Errors: invalid_argument (data or a non-empty residual not count() floats; every
  /// contribution non-finite; a non-finite input with reject_nonfinite off, reported on
  /// every peer; a partial sum the codec cannot encode, e.g. an fp16 overflow, on the
  /// peer that meets it — the others then time out), aborted / deadline_exceeded (from the
  /// transport: a peer is gone or slow; redo the round), data_loss (a peer sent a corrupt
  /// or over-long message). On every error `data` and `residual` are unchanged and no
  /// operation is left posted. Deterministic; allocates nothing.
  /// @pre data and residual do not overlap.
  status average(std::span<float> data, std::uint64_t round, std::span<float> residual = {}) override;

  const average_report& last_report() const noexcept override { return report_; }

 private:
  struct batch_holder;
  ring_allreduce();
  status exchange_meta(bool nonfinite, float norm);
  status run_segment(std::span<const float> data, std::size_t g);
  status compute_residual(std::span<const float> data, std::span<float> residual);

  transport* t_ = nullptr;
  std::size_t count_ = 0;
  std::size_t n_ = 1;
  rank_t rank_ = 0;
  collective_options opts_;
  std::size_t segments_ = 1;
  std::unique_ptr<codec::codec> codec_;     // partials and results
  std::unique_ptr<codec::codec> residual_;  // residual round trips, separate state
  std::vector<float> scratch_;              // result being built (count floats)
  std::vector<std::byte> buf_[2];           // payload buffers, one segment each
  std::vector<std::byte> meta_out_;
  std::vector<std::byte> meta_in_;          // n headers
  std::vector<std::size_t> meta_len_;
  std::vector<float> weights_, eff_, norms_, scale_, sort_;
  std::vector<std::uint8_t> dropped_;
  float coef_ = 0.0f;  // this peer's fl(eff * scale) for the current run
  float wsum_ = 0.0f;
  std::uint32_t seq_ = 0;
  std::uint32_t run_seq_ = 0;
  deadline deadline_{};
  std::uint64_t sent_ = 0, received_ = 0;
  average_report report_;
  std::unique_ptr<batch_holder> batch_;
};

}  // namespace dtrain::net
