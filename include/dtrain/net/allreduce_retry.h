// dtrain/net/allreduce_retry.h: an average that survives the loss of peers mid-operation:
// on `aborted` or `deadline_exceeded` the input is restored, the group shrinks to the
// survivors, a fresh averager on a fresh tag channel is built and the round is redone.
// Guide: docs/fault_tolerance.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/net/averager.h"
#include "dtrain/net/group_transport.h"
#include "dtrain/net/transport.h"

namespace dtrain::net {

struct retry_options {
  /// Averaging attempts per run(), the first included; >= 1.
  int max_attempts = 4;
  /// Smallest group worth averaging in; >= 1. A regroup below it ends run() with
  /// failed_precondition (PCCL's pcclTooFewPeers).
  std::size_t min_peers = 2;
  /// Tag channels of the averagers: group generation g uses channel_base + g mod
  /// channel_span. Other collectives on the same transports must stay outside
  /// [channel_base, channel_base + channel_span). channel_span >= 1, the range < 2^24.
  std::uint32_t channel_base = 0xF00000;
  std::uint32_t channel_span = 0x10000;
  /// Deadline of the barrier that starts every retry (see retrying_allreduce::run()). It
  /// must exceed the averager's own timeout: a survivor that is not next to the lost peer
  /// only learns of the loss when its averager's deadline passes.
  std::chrono::milliseconds barrier_timeout{120000};
};

/// What make() is told about the averager it builds.
struct retry_attempt {
  /// The tag channel the averager must use (collective_options::channel): fresh for every
  /// group, so late messages of a failed attempt never match the next one.
  std::uint32_t channel = 0;
  /// Groups before this one: 0 for the first, +1 per regroup.
  std::uint64_t generation = 0;
};

/// Builds an averager over the given group transport on attempt.channel. Must return the
/// same kind of averager with the same count on every peer.
using make_averager_fn = std::function<result<std::unique_ptr<averager>>(transport&, const retry_attempt&)>;
/// Called after an attempt failed with `why` (aborted, deadline_exceeded or unavailable),
/// once the failed transport was reset(): returns the transport of the next group (the
/// survivors; the same members again if nobody is gone). Every survivor must get the same
/// members in the same order (surviving_members(), or the coordinator's next view over
/// TCP). The transport must stay valid until the next regroup or the object's end. An
/// error ends run() with it (e.g. failed_precondition: this peer itself was dropped).
using regroup_fn = std::function<result<transport*>(const status& why)>;

/// What the last run() did.
struct retry_report {
  int attempts = 0;              ///< averaging attempts made (barriers included)
  std::size_t final_peers = 0;   ///< size of the group the run ended on
  std::uint64_t generation = 0;  ///< generation of that group
  std::vector<status> failures;  ///< the error of each failed attempt, in order
  average_report average;        ///< the averager's report of the successful attempt
};

/// The channel of group generation `g`: o.channel_base + g mod o.channel_span.
std::uint32_t retry_channel(const retry_options& o, std::uint64_t g) noexcept;

/// An averager that survives peer loss. Holds the current group, its averager (kept
/// across runs, so successful rounds allocate nothing) and a copy of the input.
/// One instance per peer; not thread-safe.
class retrying_allreduce {
 public:
  /// Builds the first averager with make(first, {retry_channel(o, first_generation),
  /// first_generation}) and a backup buffer of its count() floats.
  /// Errors: invalid_argument for bad options; failed_precondition when first.size() <
  /// o.min_peers; make()'s error.
  static result<std::unique_ptr<retrying_allreduce>> create(transport& first, make_averager_fn make,
                                                            regroup_fn regroup, const retry_options& o = {},
                                                            std::uint64_t first_generation = 0);
  ~retrying_allreduce();
  retrying_allreduce(const retrying_allreduce&) = delete;
  retrying_allreduce& operator=(const retrying_allreduce&) = delete;

  /// Averages `data` (count() floats) over the current group for outer round `round`; a
  /// collective that every member calls. Attempt 0 runs the current averager. When an
  /// attempt fails with aborted, deadline_exceeded or unavailable: `data` is restored
  /// from the copy taken at entry, the failed transport is reset(), regroup() names the
  /// next group, make() builds its averager on the next channel, and, while attempts are
  /// left, the next attempt starts with a barrier (a 1-byte all-to-all on the new channel,
  /// sequence 2^24 - 1) so that survivors who learned of the loss at different times (at
  /// once, or only at their averager's deadline) start it together. The first attempt of
  /// a run() after one that ended in a regroup starts with the barrier too.
  /// On success `data` holds the group's average; with an exact_consensus averager it is
  /// bit-identical on every member, because each member ran the same deterministic
  /// algorithm over the same view. On every error `data` equals its input. The regroup
  /// after a failure also happens when no attempt is left, so the next run() starts on
  /// the survivors.
  /// Errors: invalid_argument (data.size() != count(), or the averager's own error: not
  /// retried); data_loss (a corrupt payload: not retried, drop the sender by other means);
  /// the last failure's code when max_attempts attempts failed; failed_precondition when
  /// the next group is below min_peers, or when an earlier run() ended without a usable
  /// group (a failed regroup or make): call regroup_to(); regroup()'s or make()'s error.
  /// Allocates only when an attempt fails (the new averager, the report's messages).
  /// Limits (docs/fault_tolerance.md): the members must see the same sequence of failed
  /// attempts (they do when every member fails each one), and a crash after the lost
  /// peer's last needed send can let some members succeed while others fail.
  status run(std::span<float> data, std::uint64_t round);

  /// Moves to a group chosen elsewhere (a join admitted at a step boundary, a rebuilt
  /// view): a new generation, channel and averager over `t`, which must stay valid as
  /// regroup()'s result must. A collective: every member of `t` calls it. No barrier
  /// precedes the next run() (the step boundary that chose `t` already synchronized the
  /// members). A peer that joins here creates its retrying_allreduce with
  /// first_generation = generation() of the others after this call, so that all use the
  /// same channel.
  /// Errors: failed_precondition when t.size() < min_peers; make()'s error.
  status regroup_to(transport& t);

  /// The current group (the last one regroup() or regroup_to() gave). After a run() that
  /// ended with regroup()'s error it is the previous group, which the caller may have
  /// released: do not use it then.
  transport& group() const noexcept { return *group_; }
  std::uint64_t generation() const noexcept { return generation_; }
  /// Float count of the averagers.
  std::size_t count() const noexcept { return backup_.size(); }
  const retry_report& last_report() const noexcept { return report_; }

 private:
  retrying_allreduce(transport& first, make_averager_fn make, regroup_fn regroup, const retry_options& o,
                     std::uint64_t generation);
  status rebuild();
  status barrier();

  retry_options opts_;
  make_averager_fn make_;
  regroup_fn regroup_;
  transport* group_;
  std::uint64_t generation_;
  std::vector<float> backup_;
  bool needs_barrier_ = false;  // the group changed and no attempt on it has succeeded yet
  std::unique_ptr<averager> avg_;  // declared last: destroyed before what it refers to
  retry_report report_;
};

/// One round with retries: retrying_allreduce::create(first, make, regroup, o, round *
/// o.max_attempts) then run(data, round). Deriving the first generation from the round
/// gives every (round, attempt) its own channel, so one-off calls for increasing rounds
/// never meet each other's late messages. For a run of rounds prefer one
/// retrying_allreduce, which keeps its averager. Errors: those of create() and run().
result<retry_report> allreduce_with_retry(std::span<float> data, std::uint64_t round, make_averager_fn make,
                                          regroup_fn regroup, transport& first, const retry_options& o = {});

/// The members of a failed group that are still alive, in their group order, for the next
/// group. Deterministic: a pure function of `members` and the liveness answers, so every
/// survivor derives the same list exactly when they all see the same liveness. In-process
/// (tests, the simulator) inproc_fabric::alive() is that shared truth once the kill has
/// happened. Over TCP no local observation is: a peer's own view of who is reachable
/// differs from its neighbours', so the coordinator's next epoch (its member list)
/// decides and this helper is fed from it.
/// Errors: invalid_argument when `self` is not in `members`; failed_precondition when
/// alive(self) is false (this peer was dropped and must leave the group).
result<std::vector<rank_t>> surviving_members(std::span<const rank_t> members, rank_t self,
                                              const std::function<bool(rank_t)>& alive);

/// A regroup_fn for a fixed inner transport and a liveness oracle every peer shares:
/// each call shrinks the member list with surviving_members() and returns a
/// group_transport over the survivors. Pass it as std::ref(g); it must outlive the
/// retrying_allreduce using it.
class survivor_group {
 public:
  /// Starts as a view of `inner` over `members` (inner ranks, in group order).
  /// Errors: group_transport::create()'s.
  static result<std::unique_ptr<survivor_group>> create(transport& inner, std::vector<rank_t> members,
                                                        std::function<bool(rank_t)> alive);
  /// Shrinks to the live members. Errors: surviving_members()'s.
  result<transport*> operator()(const status& why);
  /// The current view.
  group_transport& view() noexcept { return *view_; }
  std::span<const rank_t> members() const noexcept { return members_; }

 private:
  survivor_group(transport& inner, std::vector<rank_t> members, std::function<bool(rank_t)> alive,
                 std::unique_ptr<group_transport> view);
  transport& inner_;
  std::vector<rank_t> members_;
  std::function<bool(rank_t)> alive_;
  std::unique_ptr<group_transport> view_;
  std::unique_ptr<group_transport> old_;  // the previous view: an averager may still refer to it
};

}  // namespace dtrain::net
