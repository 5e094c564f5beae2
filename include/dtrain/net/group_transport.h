// dtrain/net/group_transport.h: a transport over a subset or a permutation of another
// transport's ranks: the survivors of a crash, a replica group, or the bottleneck ring
// order (view rank i = inner rank order[i]) so that a ring all-reduce sends along it.
// Guide: docs/fault_tolerance.md.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/net/transport.h"

namespace dtrain::net {

/// A view of `inner` in which rank i is the inner rank members[i]. Every call is forwarded
/// to `inner` with the ranks mapped; tags pass through unchanged, so several views of one
/// inner transport that are in use at the same time (two replica groups, the old and the
/// new group during a retry) must keep their operations apart by channel or sequence
/// (make_tag()), exactly as two collectives on one transport must.
///
/// abort() and reset() act on the inner endpoint, so they reach every view of it: that is
/// what interrupting a blocked collective needs (a view cannot cancel the inner's pending
/// operations alone). wait() forwards the op handle unchanged; an op is waited on through
/// the view that posted it (or the inner transport itself).
///
/// Thread-safe as the inner transport is; the view is immutable after create(). `inner`
/// must outlive the view. Nothing here allocates except stats() and create().
class group_transport final : public transport {
 public:
  /// A view of `inner` over `members` (inner ranks; view rank i = members[i]).
  /// Errors: invalid_argument when `members` is empty, holds a rank >= inner.size() or a
  /// rank twice, or does not hold inner.rank() (this endpoint must belong to its view).
  static result<std::unique_ptr<group_transport>> create(transport& inner, std::span<const rank_t> members);

  /// This endpoint's view rank: the index of inner.rank() in members().
  rank_t rank() const noexcept override { return rank_; }
  /// members().size().
  std::size_t size() const noexcept override { return members_.size(); }

  /// Posts to inner rank members()[to]. Errors: invalid_argument for to == rank() or
  /// to >= size() (nothing is posted); otherwise the inner transport's.
  result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override;
  /// Posts a receive from inner rank members()[from]. Errors: as post_send().
  result<op> post_recv(rank_t from, tag_t tag, std::span<std::byte> buf) override;
  /// The inner transport's wait(). Errors: the inner transport's; an "aborted: peer k
  /// gone" message names the inner rank k.
  result<std::size_t> wait(op o, deadline d) override;
  /// Aborts the inner endpoint (and hence every view of it).
  void abort() noexcept override;
  /// Resets the inner endpoint.
  void reset() noexcept override;
  /// The inner counters of the members, indexed by view rank. They count every
  /// operation with those peers on the inner endpoint, including other views' traffic.
  transport_stats stats() const override;

  /// View rank -> inner rank.
  std::span<const rank_t> members() const noexcept { return members_; }
  /// Inner rank of view rank r. @pre r < size()
  rank_t inner_rank(rank_t r) const noexcept;
  /// View rank of inner rank `inner_r`, or size() when it is not a member.
  rank_t view_rank(rank_t inner_r) const noexcept;
  transport& inner() noexcept { return inner_; }

 private:
  group_transport(transport& inner, std::vector<rank_t> members, std::vector<rank_t> to_view, rank_t rank);

  transport& inner_;
  std::vector<rank_t> members_;  // view -> inner
  std::vector<rank_t> to_view_;  // inner -> view, size() for non-members
  rank_t rank_;
};

}  // namespace dtrain::net
