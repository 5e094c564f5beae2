// dtrain/net/averager.h: the one call the DiLoCo engine makes of a collective: average
// a vector with the other peers (all of them, or this round's neighbours), in place.
// Every averaging collective implements it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "dtrain/core/status.h"

namespace dtrain::net {

/// Statistics of the last average() call, for logs and byte accounting.
struct average_report {
  std::size_t contributors = 0;    ///< contributions that entered the result (this peer included)
  std::size_t dropped = 0;         ///< contributions rejected by robust_options
  double weight_sum = 0;           ///< sum of the contributors' weights
  std::uint64_t bytes_sent = 0;    ///< payload bytes this peer sent in the call
  std::uint64_t bytes_received = 0;///< payload bytes this peer received in the call
};

class averager {
 public:
  virtual ~averager() = default;

  /// Short stable name ("ring", "butterfly", "neighbor", "push_sum", "sparse_allgather",
  /// "noloco_pair").
  virtual std::string_view name() const noexcept = 0;
  /// Element count this instance was created for.
  virtual std::size_t count() const noexcept = 0;
  /// True when every peer ends with bit-identical data (global averages); false for
  /// gossip, where each node ends with its own neighbourhood mix.
  virtual bool exact_consensus() const noexcept = 0;

  /// Replaces `data` (count() floats) with its average for outer round `round` (which
  /// selects the graph of time-varying topologies and the pairing of NoLoCo; peers must
  /// pass the same round). If `residual` is non-empty (count() floats) it receives
  /// data_in - (this peer's contribution as the other peers decoded it), the error-feedback
  /// residual of the codec on the wire (collectives document where this is exact).
  /// On error `data` and `residual` are unchanged and the error is one of the transport's
  /// (aborted: a peer is gone, redo the round; deadline_exceeded) or data_loss (a peer
  /// sent a corrupt payload). Deterministic for given inputs on all peers.
  virtual status average(std::span<float> data, std::uint64_t round, std::span<float> residual = {}) = 0;

  /// Statistics of the last successful average().
  virtual const average_report& last_report() const noexcept = 0;
};

}  // namespace dtrain::net
