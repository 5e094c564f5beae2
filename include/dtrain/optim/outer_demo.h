// dtrain/optim/outer_demo.h: the DeMo outer rule (Peng et al., arXiv 2411.19870): a
// momentum buffer that doubles as error feedback, a compressed (DCT top-k) view of it
// shared between peers, and a sign update with decoupled weight decay.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "dtrain/codec/codec.h"
#include "dtrain/optim/optimizer.h"

namespace dtrain::optim {

struct demo_options {
  double lr = 1e-3;
  double beta = 0.999;      ///< momentum decay ("compression_decay") in [0, 1]
  double weight_decay = 0;  ///< λ >= 0, decoupled
};

/// Local side, compress(g): δ ← β·δ + g; q = codec.encode(δ); δ ← δ − decode(q).
/// Global side, step(θ, a) with a the aggregate of all peers' decoded q:
///   θ ← θ·float(1 − lr·λ) (only when λ ≠ 0), then θ ← θ + (−lr)·sign(a), sign(0) = 0.
/// DeMo's reference folds lr into the momentum (δ ← β·δ + lr·g); the sign is
/// scale-invariant, so for a constant lr only rounding differs. Also because of the sign,
/// a may be the sum, the mean, or DeMo's mean over coincident indices of the decoded
/// payloads: all give the same update. State: δ.
class outer_demo final : public outer_optimizer {
 public:
  /// Errors: invalid_argument for lr/λ negative or non-finite, β outside [0, 1].
  static result<outer_demo> create(std::size_t n, const demo_options& o);

  optimizer_kind kind() const noexcept override { return optimizer_kind::demo; }
  const demo_options& options() const noexcept { return o_; }

  /// Local side; contract and errors as outer_sparseloco::compress (δ is unchanged on error).
  result<std::size_t> compress(std::span<const float> grad, codec::codec& c, std::span<std::byte> payload);

  /// The momentum / error-feedback buffer δ.
  std::span<const float> momentum() const noexcept { return buffer(0); }

 protected:
  void apply(std::span<float> params, std::span<const float> grad) noexcept override;
  std::size_t hyper_bytes() const noexcept override { return 16; }
  void write_hyper(byte_writer& w) const noexcept override;

 private:
  outer_demo(std::size_t n, const demo_options& o);
  demo_options o_;
  std::vector<float> scratch_;
};

}  // namespace dtrain::optim
