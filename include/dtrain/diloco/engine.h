// dtrain/diloco/engine.h: the DiLoCo engine. It sits beside any trainer: it keeps an fp32
// snapshot of the global parameters, and every H inner steps (per Streaming fragment)
// averages the pseudo-gradient Δ = snapshot − params with the other peers through a
// net::averager, applies an outer optimizer to the snapshot and writes the result back
// into the trainer's tensors. Variants: Streaming fragments with overlap and α-merge,
// one-step-delayed and eager outer steps, error feedback, zero-contribution joiners,
// NoLoCo. Guide: docs/diloco.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/diloco/options.h"
#include "dtrain/net/averager.h"
#include "dtrain/optim/optimizer.h"

namespace dtrain::diloco {

/// Counters of one fragment.
struct fragment_stats {
  std::size_t tensors = 0;          ///< tensors in the fragment
  std::size_t elements = 0;         ///< floats in the fragment
  std::uint32_t offset = 0;         ///< sync offset t_p
  std::uint64_t exchanges = 0;      ///< successful average() rounds
  std::uint64_t failures = 0;       ///< failed exchanges (nothing applied)
  std::uint64_t outer_steps = 0;    ///< outer steps applied to the snapshot
  std::uint64_t bytes_sent = 0;     ///< payload bytes, summed from the averagers' reports
  std::uint64_t bytes_received = 0; ///< payload bytes, summed from the averagers' reports
  net::average_report last_report;  ///< report of the last successful exchange
};

/// Totals over all fragments.
struct engine_stats {
  std::uint64_t inner_steps = 0;
  std::uint64_t exchanges = 0;
  std::uint64_t failures = 0;
  std::uint64_t outer_steps = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
};

/// One peer's DiLoCo engine. Not thread-safe: the trainer's thread makes every call.
/// With overlap (τ > 0) or a delay mode the engine owns one background thread that runs
/// the exchanges, in launch order (the same on every peer, so collectives cannot cross).
///
/// Every peer must make the same sequence of after_inner_step() / sync_*() calls:
/// exchanges are collective operations.
///
/// Failure semantics: when an exchange fails (the averager returns aborted,
/// deadline_exceeded, data_loss, ...) or the outer step rejects the average (NaN), the
/// fragment's parameters, snapshot, outer-optimizer state and error-feedback residual are
/// unchanged and the error is returned. The fragment keeps training locally: its next
/// scheduled sync sends the pseudo-gradient accumulated since the last successful one;
/// sync_fragment() retries now. The round number still advances, so a retry never reuses
/// an earlier round's tags or pairing. In the delay modes a failed previous exchange
/// also skips this sync's launch: the next sync starts a fresh pipeline. After `aborted`
/// (a peer is gone) rebuild the group and call reset_averagers().
class diloco_engine {
 public:
  /// Builds the engine for a trainer whose parameters are `params` (each span one
  /// tensor; the spans must stay valid and must not overlap while the engine lives; the
  /// trainer may change their values freely between calls). Copies them into the fp32
  /// snapshots, assigns tensors to fragments, and calls make_averager(n_p, base_channel +
  /// p) and make_optimizer(n_p) for each fragment p (make_optimizer is not called with
  /// NoLoCo). All memory is allocated here.
  /// Errors: invalid_argument for bad options (validate()), no tensors, more fragments
  /// than tensors, a factory returning null or an object of the wrong size, the channel
  /// range passing 2^24, or joiner_denominator::excluded with an averager that is not
  /// exact-consensus; any error a factory returns, unchanged.
  static result<std::unique_ptr<diloco_engine>> create(std::vector<std::span<float>> params,
                                                       const averager_factory& make_averager,
                                                       const diloco_options& options = {},
                                                       const optimizer_factory& make_optimizer = sgd_factory());

  /// Waits for exchanges in flight (bounded by the averagers' timeouts; abort the
  /// transport to cut it short) and stops the background thread. Their results are dropped.
  ~diloco_engine();
  diloco_engine(const diloco_engine&) = delete;
  diloco_engine& operator=(const diloco_engine&) = delete;

  /// Call after every inner optimizer step. Counts the step s and, in fragment order:
  /// merges overlapped exchanges launched τ steps ago, then syncs every fragment whose
  /// offset is due (s mod H == t_p): Δ = snapshot − params, error feedback, average,
  /// outer step on the snapshot, write-back params ← α·params + (1−α)·snapshot. With
  /// τ > 0 the sync only launches the exchange; with a delay mode it applies the
  /// previous round's average and launches this round's. Does not allocate (beyond what
  /// the averagers and the outer optimizers do).
  /// Errors: the first failing fragment's error (see the class comment); the other due
  /// fragments are still processed so that every peer makes the same collective calls.
  status after_inner_step();

  /// Forces an outer step of every fragment now (end of training, checkpoint): finishes
  /// the exchanges in flight, then exchanges the current pseudo-gradients and writes the
  /// new global parameters back (replacing, α ignored). Afterwards no exchange is in flight
  /// and, with an exact-consensus averager and delay none or one_step, every peer holds
  /// the same parameters. The schedule of after_inner_step() is unchanged.
  /// Errors: as after_inner_step().
  status sync_now();
  /// sync_now() for fragment p only. @pre p < fragments()
  status sync_fragment(std::size_t p);

  /// This peer is a joiner: each fragment's next exchange contributes a zero
  /// pseudo-gradient (its residual is kept), whatever the parameters hold.
  void mark_joiner() noexcept;
  /// joiner_denominator::excluded only: J of the peers in each fragment's next exchange
  /// are joiners, so their average is rescaled by W/(W − J). Every peer, joiners
  /// included, must pass the same J.
  void expect_joiners(std::uint32_t joiners) noexcept;

  /// Replaces every fragment's averager (after a membership change), built as at
  /// create(). Rounds continue from their current numbers.
  /// Errors: failed_precondition while an exchange is in flight (call sync_now() first);
  /// the factory's errors and create()'s size checks; on error nothing is replaced.
  status reset_averagers(const averager_factory& make_averager);

  const diloco_options& options() const noexcept;
  std::size_t fragments() const noexcept;
  /// Indices (into create()'s params) of fragment p's tensors, in order. @pre p < fragments()
  std::span<const std::size_t> fragment_tensors(std::size_t p) const noexcept;
  /// Fragment p's snapshot θ^(t−1) (NoLoCo: the slow weights φ), its tensors
  /// concatenated in order. @pre p < fragments()
  std::span<const float> snapshot(std::size_t p) const noexcept;
  /// Fragment p's error-feedback residual e (empty without error feedback).
  std::span<const float> residual(std::size_t p) const noexcept;
  /// Fragment p's outer optimizer (save_state/load_state for checkpoints and joiners);
  /// null with NoLoCo. @pre p < fragments()
  optim::outer_optimizer* outer_optimizer(std::size_t p) noexcept;
  /// True while fragment p has an exchange in flight.
  bool in_flight(std::size_t p) const noexcept;

  std::uint64_t inner_steps() const noexcept;
  const fragment_stats& stats(std::size_t p) const noexcept;
  engine_stats totals() const noexcept;

 private:
  struct state;
  explicit diloco_engine(std::unique_ptr<state> s);
  std::unique_ptr<state> s_;
};

}  // namespace dtrain::diloco
