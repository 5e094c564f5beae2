// dtrain/net/allreduce_butterfly.h: hivemind-style butterfly all-reduce average. Peer j
// owns chunk j; every peer sends each owner its encoded chunk, the owner decodes every
// contribution separately, aggregates robustly in fp32 and sends the encoded mean back.
// Works with any codec (no summability needed). Details: docs/collectives.md.
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

/// Butterfly all-reduce average (name "butterfly", exact_consensus true): a reduce-scatter
/// to the chunk owners plus an all-gather of their results (Ryabinin et al., hivemind's
/// `allreduce.py`; equal fractions here). One instance per peer; every peer of the
/// transport takes part and calls average() in the same sequence.
///
/// Each peer sends its raw (unweighted) chunk, encoded, with its weight in a header. The
/// owner of chunk j decodes every contribution d_i = D(C(x_i[j])) into fp32 (its own too,
/// from the bytes it would send), drops non-finite ones (reject_nonfinite), clips each to
/// the median of the chunk norms (clip_to_median_norm; the owner sees only its chunk, so
/// this is per-chunk, Templar's block-norm clipping), and reduces: the coordinate-wise
/// trimmed mean when trim_fraction > 0, else y = fl(S / W) with S = sum over i ascending
/// of fl(c_i * d_i), c_i = fl(w_i * scale_i), W = sum of the weights in rank order
/// (robust_aggregate.h). It sends D(C(y))'s payload to every peer and decodes it itself,
/// so every peer holds bit-identical results. With the identity codec and weight 1 the
/// result is fl(exact_sum / n) whenever the sum is exact in fp32.
///
/// Codecs: any codec that encodes arbitrary lengths (identity, fp16, bf16, minmax,
/// blockwise, uniform8, quantile8, fp4, topk, randomk, sign, dct_topk); powersgd (a 2-D
/// shape) and the "ef:" decorator are refused.
class butterfly_allreduce final : public averager {
 public:
  /// Builds the butterfly for `count` floats and allocates every buffer.
  /// Errors: invalid_argument for bad options (weight, timeout, channel, trim_fraction
  /// outside [0, 0.5)), an unknown codec spec, "ef:" or powersgd.
  static result<std::unique_ptr<butterfly_allreduce>> create(transport& t, std::size_t count,
                                                             const collective_options& o);
  ~butterfly_allreduce() override;
  butterfly_allreduce(const butterfly_allreduce&) = delete;
  butterfly_allreduce& operator=(const butterfly_allreduce&) = delete;

  std::string_view name() const noexcept override { return "butterfly"; }
  std::size_t count() const noexcept override { return count_; }
  bool exact_consensus() const noexcept override { return true; }

  /// Replaces `data` with the butterfly average (class comment); `round` is unused. If
  /// `residual` is non-empty it receives data − D(C(data[chunk j])) for every chunk j,
  /// exactly what the owners decoded (a peer whose input holds NaN/Inf sent nothing: its
  /// residual is its data).
  /// Errors, the same on every peer whenever the owners could report them:
  /// - invalid_argument: data or a non-empty residual not count() floats; a non-finite
  ///   input while reject_nonfinite is off; every contribution dropped;
  /// - data_loss: a peer sent a corrupt or over-long contribution or result;
  /// - aborted: a peer is gone (also reported by an owner that lost one);
  /// - deadline_exceeded: timeout (e.g. waiting for an owner that failed).
  /// On every error `data` and `residual` are unchanged and no operation is left posted.
  /// Deterministic; allocates nothing. @pre data and residual do not overlap.
  status average(std::span<float> data, std::uint64_t round, std::span<float> residual = {}) override;

  const average_report& last_report() const noexcept override { return report_; }

 private:
  struct batches;
  butterfly_allreduce();
  std::span<std::byte> out_msg(std::size_t j) noexcept;
  std::span<std::byte> in_contribution(std::size_t i) noexcept;
  std::span<std::byte> in_result(std::size_t j) noexcept;
  status aggregate();
  status notify_failure(const status& why, std::uint32_t peer);
  status result_error(rank_t owner, std::uint32_t reason, std::uint32_t peer) const;

  transport* t_ = nullptr;
  std::size_t count_ = 0;
  std::size_t n_ = 1;
  rank_t rank_ = 0;
  collective_options opts_;
  std::unique_ptr<codec::codec> codec_;
  std::vector<std::size_t> msg_off_;     // n + 1 offsets of the per-chunk messages (header + payload)
  std::vector<std::byte> contrib_out_;   // this peer's message for each owner
  std::vector<std::size_t> contrib_len_;
  std::vector<std::byte> contrib_in_;    // n slots of one own-chunk message each
  std::vector<std::size_t> in_len_;
  std::vector<std::byte> result_out_;
  std::size_t result_len_ = 0;
  std::vector<std::byte> result_in_;     // the owners' results, laid out like contrib_out_
  std::vector<std::size_t> result_len_in_;
  std::vector<float> rows_;              // n decoded contributions to this peer's chunk
  std::vector<float> scratch_;           // result being built (count floats)
  std::vector<float> weights_, eff_, norms_, scale_, coef_, sort_;
  std::vector<std::uint8_t> dropped_, include_;
  std::vector<std::span<const float>> row_spans_;
  std::uint32_t seq_ = 0, run_seq_ = 0;
  deadline deadline_{};
  std::uint64_t sent_ = 0, received_ = 0;
  // What this owner aggregated (for the report and the result header).
  std::uint32_t own_contributors_ = 0, own_dropped_ = 0;
  float own_weight_sum_ = 0.0f;
  std::uint32_t fail_peer_ = 0;  // the peer to blame when aggregate() fails
  average_report report_;
  std::unique_ptr<batches> batch_;
};

}  // namespace dtrain::net
