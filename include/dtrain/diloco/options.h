// dtrain/diloco/options.h: the knobs of the DiLoCo engine (engine.h): inner steps per
// outer step, Streaming fragments and overlap, delayed/eager outer steps, error feedback,
// joiners and the NoLoCo outer rule, plus the factories the engine builds its averagers
// and outer optimizers with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "dtrain/core/status.h"
#include "dtrain/diloco/fragments.h"
#include "dtrain/net/averager.h"
#include "dtrain/optim/optimizer.h"
#include "dtrain/optim/outer_sgd.h"

namespace dtrain::diloco {

/// When the averaged pseudo-gradient of a round is applied.
enum class delay_mode : std::uint8_t {
  /// At the sync point (or τ inner steps later with overlap): classic DiLoCo.
  none = 0,
  /// One-step delay: at the sync of round t the exchange of Δ^(t) starts in the
  /// background and the outer step applies the previous round's average Δ̄^(t−1), so the
  /// exchange overlaps a whole inner phase (arXiv 2502.12996 "delayed outer gradients").
  one_step = 1,
  /// Eager updates (arXiv 2502.12996): like one_step, but the outer gradient is
  /// Δ̃ = Δ̄^(t−1) − c^(t−1)/M + Δ^(t)/M: this peer's stale share of the previous average
  /// is swapped for its fresh local pseudo-gradient. The formula is our interpretation
  /// of the paper's description (docs/diloco.md). Peers' models then differ slightly.
  eager = 2,
};

/// Denominator of a round in which some peers are joiners (contributing zero).
enum class joiner_denominator : std::uint8_t {
  /// The joiner's zero counts: Δ̄ = Σ_{non-joiners} Δ_i / W over all W contributors, so
  /// the step shrinks by (W − J)/W (PRIME / INTELLECT-1). Only the joiner needs to know.
  counted = 0,
  /// The joiner is left out: Δ̄ = Σ_{non-joiners} Δ_i / (W − J). Every peer (joiners
  /// included) must be told J with diloco_engine::expect_joiners(); the engine rescales
  /// the average by W/(W − J) with W = the round's contributors, which assumes equal
  /// weights and needs an exact-consensus averager.
  excluded = 1,
};

/// NoLoCo's outer rule (arXiv 2506.10911, §6 of the reference notes), used instead of an
/// outer optimizer when enabled. Per fragment with slow weights φ (the snapshot), local
/// weights θ and momentum m, after averaging within this round's group (the pair of a
/// noloco_pairing averager): u = mean_j(θ_j − φ_j), φ̄ = mean_j φ_j,
///   m ← μ·m + η·u + γ·(φ̄ − φ);  φ ← φ + m;  θ ← φ.
/// Two averages per round (u and φ) with the same `round`, hence the same partner.
struct noloco_options {
  bool enabled = false;
  double eta = 0.7;    ///< η, outer learning rate, finite and >= 0
  double mu = 0.5;     ///< μ, momentum in [0, 1]
  double gamma = 0.7;  ///< γ, pull toward the group's slow weights, finite and >= 0
};

struct diloco_options {
  /// H: inner steps per outer step (per fragment), >= 1.
  std::uint32_t inner_steps = 500;
  /// P: Streaming DiLoCo fragments, 1 <= P <= number of tensors. P = 1 is plain DiLoCo.
  std::uint32_t fragments = 1;
  fragment_layout layout = fragment_layout::strided;
  /// Stagger the fragments' sync points: t_p = floor(p·H/P) (fragments.h). false: all
  /// fragments sync at the same steps (same maths as P = 1, separate exchanges).
  bool staggered = true;
  /// τ: inner steps the exchange overlaps before its result is merged, 0 <= τ < H.
  /// τ > 0 runs exchanges on a background thread. Requires delay == none.
  std::uint32_t overlap_steps = 0;
  /// α: merge θ_local ← α·θ_local + (1 − α)·θ_global when an outer step is written back,
  /// in [0, 1]. 0 replaces the local parameters (classic DiLoCo); Streaming DiLoCo uses
  /// ≈0.5 with τ > 0. Applies to every write-back except sync_now()'s, which replaces.
  float merge_alpha = 0.0f;
  delay_mode delay = delay_mode::none;
  /// M for eager's 1/M terms: the number of equally weighted peers in the average.
  /// Required (>= 1) when delay == eager; ignored otherwise.
  std::uint32_t peers = 0;
  /// Error feedback on the pseudo-gradient (GRACE convention): send x = β·e + Δ and keep
  /// e ← x − (x as the other peers decoded it), the averager's residual output.
  bool error_feedback = false;
  float ef_beta = 1.0f;  ///< β in [0, 1]
  joiner_denominator joiner = joiner_denominator::counted;
  /// Fragment p's averager gets channel base_channel + p (NoLoCo's second averager
  /// base_channel + P + p). Keep the range clear of other collectives on the transport.
  std::uint32_t base_channel = 0;
  noloco_options noloco;
};

/// Builds the averager of one fragment: `count` floats, tag channel `channel`. Called
/// once per fragment at create() (twice with NoLoCo) and by reset_averagers(). Every
/// peer must build the same kind of averager with the same arguments.
using averager_factory =
    std::function<result<std::unique_ptr<net::averager>>(std::size_t count, std::uint32_t channel)>;

/// Builds the outer optimizer of one fragment of `count` parameters.
using optimizer_factory = std::function<result<std::unique_ptr<optim::outer_optimizer>>(std::size_t count)>;

/// Factory of outer_sgd instances; the default is DiLoCo's Nesterov, lr 0.7, momentum 0.9.
/// sgd_factory(optim::sgd_options::fedavg()) gives FedAvg.
optimizer_factory sgd_factory(const optim::sgd_options& o = optim::sgd_options::diloco());

/// invalid_argument naming the first bad field, or ok. Checks everything that does not
/// depend on the model (P against the tensor count is checked by create()).
status validate(const diloco_options& o);

}  // namespace dtrain::diloco
