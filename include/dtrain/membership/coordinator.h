// dtrain/membership/coordinator.h: the membership coordinator: admits joiners at step
// boundaries, evicts crashed, silent and leaving peers, and publishes numbered views.
// Its state is soft: a restarted coordinator rebuilds it from the peers. docs/membership.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/membership/identity.h"
#include "dtrain/membership/view.h"
#include "dtrain/net/tcp/address.h"

namespace dtrain::membership {

/// Where a coordinator's (and a client's) log lines go. Empty = one line each to stderr.
using log_fn = std::function<void(std::string_view)>;

struct coordinator_options {
  /// Where to listen. Port 0 = an ephemeral port (read it back with address()).
  net::tcp::address listen{"127.0.0.1", 0};
  /// How often peers send heartbeats (told to every peer in its welcome).
  std::chrono::milliseconds heartbeat_interval{1000};
  /// A member (or pending joiner) silent for this long is evicted. Must be at least
  /// 2 × heartbeat_interval.
  std::chrono::milliseconds failure_deadline{3000};
  /// After a restart, how long members of the adopted view have to re-register before
  /// the missing ones are dropped (from the first re-registration). 0 = 2 × heartbeat_interval.
  std::chrono::milliseconds rejoin_grace{0};
  /// With no members yet, admit the pending peers together once this many are waiting.
  std::size_t min_peers = 1;
  /// Public keys allowed to register; empty = anyone who can sign.
  std::vector<peer_id> allowlist;
  /// Log sink for joins, evictions and rejected connections (the latter rate-limited).
  log_fn logger;
};

/// A running coordinator: one io thread, one listening socket. Thread-safe.
class coordinator {
 public:
  /// Binds `o.listen`, starts the io thread and serves until stop() or destruction. The
  /// coordinator signs everything with `self`; pin self.id() in the clients.
  /// Errors: invalid_argument (heartbeat_interval <= 0, failure_deadline <
  /// 2 × heartbeat_interval, rejoin_grace < 0, min_peers == 0); unavailable when the
  /// address cannot be resolved or bound (port in use).
  static result<std::unique_ptr<coordinator>> create(const identity& self, coordinator_options o);

  /// stop()s.
  ~coordinator();
  coordinator(const coordinator&) = delete;
  coordinator& operator=(const coordinator&) = delete;

  /// The bound address (the real port when listen.port was 0).
  net::tcp::address address() const;

  /// The coordinator's public key.
  const peer_id& id() const noexcept;

  /// A copy of the current view (epoch 0 and no members before the first admission).
  view current_view() const;

  /// Peers registered and waiting for admission.
  std::size_t pending_count() const;

  /// Closes every connection (peers see EOF and start reconnecting) and the listening
  /// socket, and joins the io thread. Idempotent.
  void stop();

  struct impl;

 private:
  explicit coordinator(std::unique_ptr<impl> p);
  std::unique_ptr<impl> p_;
};

}  // namespace dtrain::membership
