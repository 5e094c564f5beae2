// peer_client on its own: option checks, an unreachable coordinator, a coordinator whose
// key is not the pinned one, calls out of order.
#include "dtrain/membership/peer_client.h"

#include <catch2/catch.hpp>

#include "membership/membership_test_util.h"

using namespace dtrain;
using namespace dtrain::membership;
using namespace dtrain::membership::testing;
using net::after;

TEST_CASE("peer_client: bad options") {
  client_options o;
  o.heartbeat_interval = 0ms;
  CHECK(peer_client::create(seeded(1), o).status().code() == status_code::invalid_argument);
  o = {};
  o.max_backoff = 0ms;
  CHECK(peer_client::create(seeded(1), o).status().code() == status_code::invalid_argument);
}

TEST_CASE("peer_client: an unreachable coordinator is unavailable at the deadline, then reachable") {
  log_sink log;
  // Find a free port by binding a coordinator and stopping it.
  net::tcp::address where;
  {
    auto c = coordinator::create(seeded(200), fast_coordinator(log)).value();
    where = c->address();
  }
  client_options o;
  o.coordinator = where;
  o.data_address = {"127.0.0.1", 1};
  o.heartbeat_interval = hb;
  o.max_backoff = hb;
  o.logger = log.fn();
  auto p = peer_client::create(seeded(1), o).value();
  CHECK(p->join(after(200ms)).status().code() == status_code::unavailable);
  CHECK(p->latest_view().epoch == 0);
  // The client keeps retrying: a coordinator that comes up later is found.
  auto co = fast_coordinator(log);
  co.listen = where;
  auto c = coordinator::create(seeded(200), co).value();
  auto v = p->join(after(long_wait));
  REQUIRE(v.ok());
  CHECK(v->epoch == 1);
  CHECK(p->rank_of(*v) == 0u);
}

TEST_CASE("peer_client: a coordinator with another key than the pinned one is refused") {
  log_sink log;
  auto c = coordinator::create(seeded(200), fast_coordinator(log)).value();
  auto o = fast_client(*c, 5000, log);
  o.coordinator_id = seeded(201).id();
  auto p = peer_client::create(seeded(1), o).value();
  CHECK(p->join(after(long_wait)).status().code() == status_code::permission_denied);
  CHECK(c->current_view().epoch == 0);
  CHECK(log.count("not the pinned") == 1);
}

TEST_CASE("peer_client: calls before join") {
  log_sink log;
  auto c = coordinator::create(seeded(200), fast_coordinator(log)).value();
  auto p = peer_client::create(seeded(1), fast_client(*c, 5000, log)).value();
  CHECK(p->update_membership(after(100ms)).status().code() == status_code::failed_precondition);
  CHECK(p->peers_pending(after(100ms)).status().code() == status_code::failed_precondition);
  CHECK(p->await_view_after(0, after(100ms)).status().code() == status_code::failed_precondition);
  CHECK(p->report_failure(0).code() == status_code::failed_precondition);
  CHECK(p->leave().code() == status_code::failed_precondition);
  // A lone peer with min_peers = 1 bootstraps alone; votes are answered at once.
  auto v = p->join(after(long_wait));
  REQUIRE(v.ok());
  CHECK(v->members.size() == 1);
  auto again = p->update_membership(after(long_wait));
  REQUIRE(again.ok());
  CHECK(*again == *v);
  auto pending = p->peers_pending(after(long_wait));
  REQUIRE(pending.ok());
  CHECK_FALSE(*pending);
  CHECK(p->await_view_after(v->epoch, after(100ms)).status().code() == status_code::deadline_exceeded);
  REQUIRE(p->leave().ok());
  CHECK(eventually([&] { return c->current_view().members.empty(); }));
}
