// dtrain/net/sparse_allgather.h: the all-gather average of DeMo and SparseLoCo. Every peer
// encodes its whole vector once (top-k, DCT top-k, random-k, sign, ...), sends the payload
// to every other peer, and every peer decodes all n payloads in rank order, so all end
// with bit-identical results without re-encoding. Details: docs/collectives.md.
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

/// How the decoded contributions are reduced.
enum class sparse_mean : std::uint8_t {
  /// SparseLoCo: y = fl(S / W), S = sum over peers (ascending) of fl(c_i * d_i), W the
  /// weight sum: an index a peer did not send counts as 0 in the mean.
  all = 0,
  /// DeMo (scatter_reduce "mean" over coincident indices): each index is the weighted
  /// mean over the peers that sent it, y[k] = fl(S_k / W_k) with W_k the sum of the
  /// weights of the peers whose decoded d_i[k] != 0 (an exact decoded 0 counts as not
  /// sent); 0 where no peer sent k.
  coincident = 1,
};

/// Sparse all-gather average (name "sparse_allgather", exact_consensus true). One
/// instance per peer; every peer of the transport takes part and calls average() in the
/// same sequence with the same `round`.
///
/// Codecs: any, built for top-k style ones (topk, dct_topk, randomk, sign); dense codecs
/// work but cost (n − 1) times their payload per peer. powersgd is accepted when
/// rows * cols == count. The "ef:" decorator is refused. A randomk codec's round is set
/// to `round` before each encode, so every peer samples the same positions.
/// Robust options: reject_nonfinite (a peer whose input holds NaN/Inf, or whose payload
/// decodes to NaN/Inf, is dropped), clip_to_median_norm (on the norms of the decoded
/// contributions, computed identically by every peer); trim_fraction > 0 is refused.
class sparse_allgather final : public averager {
 public:
  /// Builds the all-gather for `count` floats and allocates every buffer (n payloads).
  /// Errors: invalid_argument for bad options (weight, timeout, channel, trim_fraction >
  /// 0), an unknown codec spec, "ef:", or powersgd with rows * cols != count.
  static result<std::unique_ptr<sparse_allgather>> create(transport& t, std::size_t count,
                                                          const collective_options& o,
                                                          sparse_mean mean = sparse_mean::all);
  ~sparse_allgather() override;
  sparse_allgather(const sparse_allgather&) = delete;
  sparse_allgather& operator=(const sparse_allgather&) = delete;

  std::string_view name() const noexcept override { return "sparse_allgather"; }
  std::size_t count() const noexcept override { return count_; }
  bool exact_consensus() const noexcept override { return true; }
  sparse_mean mean() const noexcept { return mean_; }

  /// Replaces `data` with the reduction of every peer's decoded payload (see
  /// sparse_mean). `round` keys a randomk codec's positions. If `residual` is non-empty it
  /// receives data − D(C(data)) exactly (what every peer decoded of this one; a peer whose
  /// input holds NaN/Inf sent nothing and gets its data back).
  /// Errors (identical on every peer that received the same bytes):
  /// - invalid_argument: data or a non-empty residual not count() floats; a non-finite
  ///   contribution while reject_nonfinite is off; every contribution dropped;
  /// - data_loss: a peer sent a corrupt or over-long message (naming the peer);
  /// - aborted / deadline_exceeded: from the transport.
  /// On every error `data` and `residual` are unchanged and no operation is left posted.
  /// Deterministic; allocates nothing. @pre data and residual do not overlap.
  status average(std::span<float> data, std::uint64_t round, std::span<float> residual = {}) override;

  const average_report& last_report() const noexcept override { return report_; }

 private:
  struct batch_holder;
  sparse_allgather();
  std::span<const std::byte> message(std::size_t i) const noexcept;
  status decode_row(std::size_t i);
  void accumulate_row(std::size_t i);

  transport* t_ = nullptr;
  std::size_t count_ = 0;
  std::size_t n_ = 1;
  rank_t rank_ = 0;
  collective_options opts_;
  sparse_mean mean_ = sparse_mean::all;
  std::unique_ptr<codec::codec> codec_;
  std::vector<std::byte> out_;        // this peer's message: header + payload
  std::size_t out_len_ = 0;
  std::vector<std::byte> in_;         // n slots, one message each
  std::vector<std::size_t> in_len_;
  std::vector<float> row_;            // one decoded contribution
  std::vector<float> acc_;            // the result being built
  std::vector<float> wsum_;           // coincident: weight per index
  std::vector<float> weights_, eff_, norms_, scale_, sort_;
  std::vector<std::uint8_t> dropped_;
  std::uint32_t seq_ = 0;
  std::uint64_t sent_ = 0, received_ = 0;
  average_report report_;
  std::unique_ptr<batch_holder> batch_;
};

}  // namespace dtrain::net
