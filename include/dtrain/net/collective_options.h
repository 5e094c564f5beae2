// dtrain/net/collective_options.h: options shared by the averaging collectives: the
// codec on the wire, this peer's weight, the deadline, the tag channel and the robust
// aggregation rules against bad peers.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dtrain::net {

/// Aggregation rules against faulty or hostile contributions. Which collectives honour
/// which rule is listed in docs/collectives.md; a collective that cannot honour a
/// requested rule refuses it at create() with invalid_argument.
struct robust_options {
  /// Drop a contribution holding NaN or +-Inf (its weight leaves the denominator) instead
  /// of failing the whole operation.
  bool reject_nonfinite = true;
  /// Scale each contribution whose L2 norm exceeds the median of the contributions' norms
  /// down to that median (Templar/SparseLoCo-style).
  bool clip_to_median_norm = false;
  /// Coordinate-wise trimmed mean: drop the floor(trim_fraction * contributors) largest and
  /// as many smallest values of each coordinate. 0 disables; must be < 0.5. Weights are
  /// ignored by the trimmed mean (every surviving value counts once).
  double trim_fraction = 0.0;
};

/// Options of an averaging collective.
struct collective_options {
  /// Codec spec used on the wire (codec/registry.h), e.g. "identity", "fp16",
  /// "minmax:bits=8", "fp4", "topk:chunk=4096,k=64,values=q2".
  std::string codec = "identity";
  /// This peer's contribution weight, >= 0 and finite. Every collective returns
  /// sum_i w_i x_i / sum_i w_i over the contributors; weight 0 makes a peer a listener
  /// whose data does not count. If every weight is 0 the result is the plain mean.
  float weight = 1.0f;
  /// Deadline of one run(), from its start.
  std::chrono::milliseconds timeout{30000};
  /// Tag channel (make_tag()): collectives in flight at once on one transport need
  /// distinct channels.
  std::uint32_t channel = 0;
  robust_options robust;
};

}  // namespace dtrain::net
