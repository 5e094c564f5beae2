// dtrain/membership/peer_client.h: a peer's side of the membership protocol: register,
// heartbeat, vote at step boundaries, follow views, reconnect after a coordinator restart.
// docs/membership.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "dtrain/core/status.h"
#include "dtrain/membership/coordinator.h"
#include "dtrain/membership/identity.h"
#include "dtrain/membership/view.h"
#include "dtrain/net/tcp/address.h"
#include "dtrain/net/transport.h"

namespace dtrain::membership {

struct client_options {
  net::tcp::address coordinator;            ///< where the coordinator listens
  std::optional<peer_id> coordinator_id;    ///< pin its key (recommended); unset = trust the first key seen per connection
  net::tcp::address data_address;           ///< this peer's data-plane listen address, published in views
  std::uint32_t group = 0;                  ///< this peer's group
  /// Heartbeat period; the coordinator's (sent in its welcome) is used when shorter.
  std::chrono::milliseconds heartbeat_interval{1000};
  /// Longest pause between reconnection attempts (they start at 10 ms and double).
  std::chrono::milliseconds max_backoff{1000};
  log_fn logger;                            ///< empty = stderr
};

/// One peer's membership client. It owns an io thread that keeps the control connection,
/// sends heartbeats and reconnects (with backoff) when the connection drops. The public
/// calls are thread-safe; the blocking ones wait on that thread's results.
///
/// Destroying a client without leave() closes its connection abruptly, which the
/// coordinator treats as a crash (immediate eviction).
class peer_client {
 public:
  /// Starts the io thread; does not connect yet (join() does).
  /// Errors: invalid_argument when heartbeat_interval or max_backoff <= 0.
  static result<std::unique_ptr<peer_client>> create(const identity& self, client_options o);

  ~peer_client();
  peer_client(const peer_client&) = delete;
  peer_client& operator=(const peer_client&) = delete;

  /// Registers and blocks until the coordinator admits this peer: at bootstrap (once
  /// min_peers are waiting) or when all current members next call update_membership().
  /// Returns the first view containing this peer. Returns at once when already a member.
  /// Callable again after an eviction or leave() to rejoin.
  /// Errors: unavailable (never reached the coordinator before `d`; retried internally),
  /// deadline_exceeded (registered but not admitted before `d`; still pending, call
  /// again), permission_denied (not allowlisted, or the coordinator's key or signature is
  /// wrong: do not retry).
  result<view> join(net::deadline d);

  /// The step-boundary vote. Every member calls it at the same step; the coordinator
  /// answers all of them with the same view once every live member has voted, after
  /// admitting everyone pending (epoch bumped iff anything changed). Dead members are
  /// evicted, not waited for.
  /// Errors: failed_precondition (not a member: call join()), aborted (evicted: this peer
  /// is no longer in the view; join() again), unavailable (no connection to the
  /// coordinator at `d`: it is restarting; call again), deadline_exceeded.
  result<view> update_membership(net::deadline d);

  /// Are peers waiting to join? A joint query like update_membership(): every member calls
  /// it at the same step and all get the same answer, so they agree on whether to vote.
  /// Errors: as update_membership().
  result<bool> peers_pending(net::deadline d);

  /// The latest view this peer has seen (epoch 0 = none yet). Never blocks.
  view latest_view() const;

  /// Blocks until a view with epoch > `epoch` exists and returns it: after a collective
  /// failed in `epoch`, the view without the dead peer (the coordinator evicts it on its
  /// own detection, within its failure deadline).
  /// Errors: aborted (the newer view does not contain this peer, or it was evicted),
  /// failed_precondition (never joined), unavailable / deadline_exceeded as above.
  result<view> await_view_after(std::uint64_t epoch, net::deadline d);

  /// Tells the coordinator a collective failed in `epoch`, optionally naming the peer that
  /// seemed dead. The coordinator does not evict on this word; it shortens the suspect's
  /// deadline to 2 heartbeats (any message from the suspect clears it). Does not block.
  /// Errors: failed_precondition (not a member), unavailable (not connected right now).
  status report_failure(std::uint64_t epoch, std::optional<peer_id> suspect = std::nullopt);

  /// Graceful leave: a signed goodbye, then close. The coordinator evicts this peer at once.
  /// Waits until the goodbye is written (or `d`). Errors: failed_precondition (not joined),
  /// deadline_exceeded.
  status leave(net::deadline d = net::after(std::chrono::seconds(1)));

  /// This peer's rank in `v` (nullopt when absent).
  std::optional<std::size_t> rank_of(const view& v) const noexcept { return v.rank_of(self_id_); }

  /// This peer's id.
  const peer_id& id() const noexcept { return self_id_; }

  /// Test hook: stop (true) or resume (false) sending heartbeats while keeping the
  /// connection open, to play a hung process.
  void pause_heartbeats_for_testing(bool paused);

  struct impl;

 private:
  explicit peer_client(std::unique_ptr<impl> p);
  std::unique_ptr<impl> p_;
  peer_id self_id_;
};

}  // namespace dtrain::membership
