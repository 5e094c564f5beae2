// One swarm peer: join through the coordinator, connect the view over TCP, apply the
// measured ring order, catch up by shared-state sync, train with DiLoCo, survive lost peers
// (roll back, regroup, redo the round), admit joiners at outer-step boundaries.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dtrain/core/hash.h"
#include "dtrain/diloco/engine.h"
#include "dtrain/membership/peer_client.h"
#include "dtrain/net/bandwidth_probe.h"
#include "dtrain/net/group_transport.h"
#include "dtrain/net/shared_state.h"
#include "dtrain/net/transport_inproc.h"
#include "dtrain/net/transport_tcp.h"
#include "sim/simulate.h"
#include "swarm.h"
#include "testbed/adamw.h"
#include "testbed/corpus.h"
#include "testbed/eval.h"
#include "testbed/tiny_gpt.h"

namespace dtrain::swarm {
namespace {

using namespace std::chrono;
using clk = steady_clock;

// Tag channels of the swarm's own collectives (the engine's averagers use 0..P-1).
constexpr std::uint32_t kProbeChannel = 0xE00000;
constexpr std::uint32_t kStateChannel = 0xE00001;
constexpr std::uint32_t kBarrierChannel = 0xE00002;

void say(const char* fmt, auto... args) {
  std::printf(fmt, args...);
  std::printf("\n");
  std::fflush(stdout);
}

bool parse_peer_id(const std::string& hex, membership::peer_id& out) {
  if (hex.size() != 64) return false;
  for (std::size_t i = 0; i < 32; ++i) {
    unsigned v = 0;
    if (std::sscanf(hex.c_str() + 2 * i, "%2x", &v) != 1) return false;
    out.key[i] = static_cast<std::byte>(v);
  }
  return true;
}

// An all-to-all of one 64-bit word, the hash of this peer's parameters: ok only when every
// member reached it. After a successful exchange it tells a member that nobody else failed
// (a crashed peer breaks the TCP group, so the barrier fails for everyone who did not
// finish it). With `exact` (exact-consensus collectives) every member's hash must equal
// this one's: the outer step left the swarm bit-identical. A mismatch is data_loss.
status barrier(net::transport& t, std::uint32_t seq, milliseconds timeout, std::uint64_t hash, bool exact) {
  const auto d = net::after(timeout);
  std::vector<net::op> ops;
  std::vector<std::uint64_t> in(t.size(), hash);
  status first;
  for (net::rank_t q = 0; q < t.size(); ++q) {
    if (q == t.rank()) continue;
    auto s = t.post_send(q, net::make_tag(kBarrierChannel, seq, 0), std::as_bytes(std::span(&hash, 1)));
    auto r = t.post_recv(q, net::make_tag(kBarrierChannel, seq, 0), std::as_writable_bytes(std::span(&in[q], 1)));
    if (s.ok()) ops.push_back(*s); else if (first.ok()) first = s.status();
    if (r.ok()) ops.push_back(*r); else if (first.ok()) first = r.status();
  }
  status w = net::wait_all(t, ops, d);
  if (!first.ok()) return first;
  if (!w.ok()) return w;
  if (exact)
    for (net::rank_t q = 0; q < t.size(); ++q)
      if (in[q] != hash)
        return data_loss("consensus broken: rank " + std::to_string(q) + " holds different parameters after the outer step");
  return ok_status();
}

struct peer {
  const options& o;
  sim::run_config rc;
  std::unique_ptr<testbed::data_source> data;
  std::optional<testbed::tiny_gpt> model;
  std::optional<testbed::adamw> inner;
  std::vector<std::uint8_t> tokens;
  std::uint64_t worker_id = 0;
  std::uint64_t local_step = 0;

  std::unique_ptr<net::tcp::tcp_context> ctx;
  std::unique_ptr<membership::peer_client> client;
  membership::view v;
  // The group: a TCP transport over the view (or a one-rank fabric when alone) and the
  // ring-ordered view over it.
  std::unique_ptr<net::tcp_transport> tcp;
  std::uint64_t tcp_session = 0;
  std::unique_ptr<net::inproc_fabric> solo;
  std::unique_ptr<net::group_transport> ordered;
  net::transport* group = nullptr;
  topology::schedule sched;

  std::unique_ptr<diloco::diloco_engine> engine;
  std::vector<std::byte> outer_blob;
  std::uint64_t round = 0;  // global outer steps done
  std::uint32_t seq = 0;    // sequence of the swarm's own collectives on the current group
  // Accounting.
  double compute_s = 0;
  std::uint64_t bytes_before = 0;  // sent by transports already closed
  int recoveries = 0;
  int repairs = 0;
  std::uint64_t pulled = 0;
  clk::time_point start = clk::now();

  explicit peer(const options& opts) : o(opts) {}

  std::uint64_t bytes_sent() const { return bytes_before + (tcp ? tcp->stats().total_sent() : 0); }

  std::vector<std::span<float>> tensors() {
    std::vector<std::span<float>> t;
    auto p = model->params();
    for (const auto& ti : model->param_layout()) t.push_back(p.subspan(ti.offset, ti.size()));
    return t;
  }

  diloco::averager_factory factory() {
    return [this](std::size_t count, std::uint32_t channel) {
      return sim::make_averager(rc, *group, count, channel, sim::needs_topology(rc.collective) ? &sched : nullptr);
    };
  }

  diloco::optimizer_factory outer_factory() const {
    optim::sgd_options so{0.7, 0.9, 0, 0, true, false};
    return diloco::sgd_factory(so);
  }

  status init() {
    rc.codec = o.codec;
    rc.collective = o.collective;
    rc.topology = o.topology;
    rc.seed = o.seed;
    rc.batch = o.batch;
    rc.collective_timeout = o.timeout;
    auto src = testbed::open_source(o.text, testbed::gpt_config::small().context);
    if (!src.ok()) return src.status();
    data = std::move(*src);
    const auto mc = sim::model_config(rc, *data);
    auto m = testbed::tiny_gpt::create(mc);
    if (!m.ok()) return m.status();
    model.emplace(std::move(*m));
    testbed::adamw_options ao;
    ao.lr = static_cast<float>(o.lr);
    auto a = testbed::adamw::create(model->param_count(), ao);
    if (!a.ok()) return a.status();
    inner.emplace(std::move(*a));
    DTRAIN_RETURN_IF_ERROR(inner->set_decay_mask(testbed::decay_mask(model->param_layout())));
    tokens.resize(o.batch * data->sequence_length());
    // The outer optimizer's state travels as a shared tensor; start from a fresh one's.
    auto fresh = outer_factory()(model->param_count());
    if (!fresh.ok()) return fresh.status();
    outer_blob.resize((*fresh)->state_bytes());
    auto w = (*fresh)->save_state(outer_blob);
    if (!w.ok()) return w.status();

    net::tcp::tcp_options to;
    to.streams = o.streams;
    if (o.wan_mbps > 0) to.shaper.rate_bytes_per_s = o.wan_mbps * 1e6 / 8;
    if (o.wan_ms > 0) to.shaper.latency = microseconds(static_cast<long>(o.wan_ms * 1000));
    auto c = net::tcp::tcp_context::create(net::tcp::address{o.listen, 0}, to);
    if (!c.ok()) return c.status();
    ctx = std::move(*c);
    auto coord = net::tcp::address::parse(o.coordinator);
    if (!coord.ok()) return coord.status();
    membership::client_options co;
    co.coordinator = *coord;
    co.data_address = ctx->advertised_address();
    co.heartbeat_interval = milliseconds(500);
    co.logger = [](std::string_view) {};
    if (!o.coordinator_id.empty()) {
      membership::peer_id id;
      if (!parse_peer_id(o.coordinator_id, id)) return invalid_argument("--coordinator-id: 64 hex digits expected");
      co.coordinator_id = id;
    }
    auto cl = membership::peer_client::create(membership::identity::generate(), co);
    if (!cl.ok()) return cl.status();
    client = std::move(*cl);
    // Data stream: a worker id from the key, so restarted peers read fresh data.
    for (std::size_t i = 0; i < 3; ++i) worker_id = (worker_id << 8) | std::to_integer<std::uint64_t>(client->id().key[i]);
    worker_id &= (1u << 22) - 1;
    return ok_status();
  }

  // Connects the members of `nv` (destroying the previous group afterwards) and applies
  // the measured ring order. The engine's averagers must be rebuilt after this.
  status connect(const membership::view& nv) {
    auto me = client->rank_of(nv);
    if (!me) return aborted("not in view " + std::to_string(nv.epoch));
    if (tcp && tcp_session == nv.session) {
      // Reconnecting the same view (a member failed mid-setup): the old group is broken.
      if (engine) engine.reset();
      bytes_before += tcp->stats().total_sent();
      ordered.reset();
      tcp.reset();
      group = nullptr;
    }
    std::unique_ptr<net::tcp_transport> nt;
    std::unique_ptr<net::inproc_fabric> ns;
    std::unique_ptr<net::group_transport> no;
    net::transport* g = nullptr;
    if (nv.members.size() == 1) {
      ns = std::make_unique<net::inproc_fabric>(1);
      g = &ns->endpoint(0);
    } else {
      std::vector<net::tcp::address> addrs;
      for (const auto& m : nv.members) addrs.push_back(m.data_address);
      auto t = net::tcp_transport::create(*ctx, nv.session, static_cast<net::rank_t>(*me), addrs, net::after(seconds(6)));
      if (!t.ok()) return t.status();
      nt = std::move(*t);
      g = nt.get();
      if (o.probe && o.collective == "ring" && nv.members.size() >= 3) {
        net::probe_options po;
        po.bytes = 256 << 10;
        po.repeats = 1;
        po.channel = kProbeChannel;
        po.timeout = seconds(20);
        auto m = net::bandwidth_probe(*nt, po);
        if (!m.ok()) return m.status();
        auto plan = net::ring_view(*nt, *m);
        if (!plan.ok()) return plan.status();
        std::string order;
        for (auto r : plan->ring.order) order += (order.empty() ? "" : ">") + std::to_string(r);
        if (*me == 0) say("RING epoch=%" PRIu64 " order=%s bottleneck_MBps=%.0f", nv.epoch, order.c_str(), plan->ring.bottleneck / 1e6);
        no = std::move(plan->view);
        g = no.get();
      }
    }
    if (sim::needs_topology(rc.collective)) {
      auto s = sim::make_schedule(rc.topology, nv.members.size(), rc.seed, rc.collective == "push_sum");
      if (!s.ok()) return s.status();
      sched = std::move(*s);
    }
    if (engine) DTRAIN_RETURN_IF_ERROR(engine->reset_averagers([this, g](std::size_t count, std::uint32_t channel) {
      return sim::make_averager(rc, *g, count, channel, sim::needs_topology(rc.collective) ? &sched : nullptr);
    }));
    if (tcp) bytes_before += tcp->stats().total_sent();
    ordered = std::move(no);
    tcp = std::move(nt);
    tcp_session = nv.session;
    seq = 0;  // every member starts the new group's own collectives at the same sequence
    solo = std::move(ns);
    group = g;
    v = nv;
    return ok_status();
  }

  // Everyone holds the winners' parameters, outer state and round afterwards. A peer that
  // just (re)joined abstains (receive_only); when everyone does (bootstrap) all vote.
  status share(bool joiner) {
    std::uint64_t r = round;
    if (engine) {
      auto w = engine->outer_optimizer(0)->save_state(outer_blob);
      if (!w.ok()) return w.status();
    }
    net::shared_state st;
    auto p = model->params();
    DTRAIN_RETURN_IF_ERROR(st.add("params", std::as_writable_bytes(p)));
    DTRAIN_RETURN_IF_ERROR(st.add("outer", outer_blob));
    DTRAIN_RETURN_IF_ERROR(st.add("round", std::as_writable_bytes(std::span(&r, 1))));
    st.set_revision(round);
    net::sync_options so;
    so.channel = kStateChannel;
    so.timeout = seconds(30);
    so.strategy = joiner ? net::sync_strategy::receive_only : net::sync_strategy::vote;
    auto rep = net::sync_shared_state(*group, st, so, seq++);
    if (!rep.ok() && joiner && rep.status().code() == status_code::failed_precondition) {
      so.strategy = net::sync_strategy::vote;  // bootstrap: every peer is new
      rep = net::sync_shared_state(*group, st, so, seq++);
    }
    if (!rep.ok()) return rep.status();
    round = r;
    pulled += rep->bytes_received;
    return ok_status();
  }

  // A fresh engine whose snapshot is `snapshot`, with parameters `params` and outer state
  // outer_blob (used at every view change and to roll back a failed outer step).
  status make_engine(std::span<const float> snapshot, std::span<const float> params) {
    engine.reset();
    auto p = model->params();
    std::copy(snapshot.begin(), snapshot.end(), p.begin());
    diloco::diloco_options d;
    d.inner_steps = o.inner_steps;
    auto e = diloco::diloco_engine::create(tensors(), factory(), d, outer_factory());
    if (!e.ok()) return e.status();
    engine = std::move(*e);
    DTRAIN_RETURN_IF_ERROR(engine->outer_optimizer(0)->load_state(outer_blob));
    std::copy(params.begin(), params.end(), p.begin());
    return ok_status();
  }

  status fresh_engine() {
    std::vector<float> now(model->params().begin(), model->params().end());
    return make_engine(now, now);
  }

  // Drops the current group (peers see a goodbye: their operations with this rank fail).
  void drop_group() {
    engine.reset();
    ordered.reset();
    if (tcp) bytes_before += tcp->stats().total_sent();
    tcp.reset();
    solo.reset();
    group = nullptr;
  }

  // After a failed exchange or a failed group setup: drop the group, meet the others at
  // the coordinator (update_membership(): every live member votes, dead ones are evicted,
  // pending joiners admitted) and set up the view it returns. `setup` finishes the new
  // group (roll back and rebuild the engine, or share state). Members that fail at
  // different moments all end up in this vote, so they agree on the next view even when
  // nobody died (a timeout). aborted: this peer was evicted (rejoin).
  status regroup(const std::function<status()>& setup) {
    drop_group();
    for (int attempt = 0; attempt < 30; ++attempt) {
      auto nv = client->update_membership(net::after(seconds(20)));
      if (!nv.ok()) {
        if (nv.status().code() == status_code::aborted) return nv.status();
        say("VOTE-RETRY %s", nv.status().to_string().c_str());
        continue;
      }
      status c = connect(*nv);
      if (c.ok()) c = setup();
      if (c.ok()) return c;
      say("SETUP-RETRY epoch=%" PRIu64 " %s", nv->epoch, c.to_string().c_str());
      drop_group();
    }
    return unavailable("could not set up a group after 30 votes");
  }

  // join() and catch up; used at start and after an eviction.
  status join() {
    engine.reset();
    auto nv = client->join(net::after(seconds(300)));
    if (!nv.ok()) return nv.status();
    // A fresh process abstains from the state vote; one that trained before votes with
    // its round as the revision (the majority, then the highest round, wins).
    const bool fresh = round == 0;
    status c = connect(*nv);
    if (c.ok()) c = share(fresh);
    if (c.ok()) c = fresh_engine();
    if (!c.ok()) {
      say("SETUP-FAILED epoch=%" PRIu64 " %s", nv->epoch, c.to_string().c_str());
      DTRAIN_RETURN_IF_ERROR(regroup([&] {
        status r = share(fresh);
        return r.ok() ? fresh_engine() : r;
      }));
    }
    say("JOINED epoch=%" PRIu64 " rank=%zu size=%zu round=%" PRIu64 " pulled=%" PRIu64, v.epoch, *client->rank_of(v),
        v.members.size(), round, pulled);
    return ok_status();
  }

  int run() {
    if (auto s = init(); !s.ok()) return fail(s);
    if (auto s = join(); !s.ok()) return fail(s);
    double last_loss = 0;
    while (round < o.outer_steps) {
      // H inner steps.
      const auto c0 = clk::now();
      for (std::uint32_t h = 0; h < o.inner_steps; ++h) {
        if (auto s = data->train_batch(o.seed, worker_id, local_step++, tokens); !s.ok()) return fail(s);
        auto loss = model->forward_backward(tokens, o.batch);
        if (!loss.ok()) return fail(loss.status());
        last_loss = static_cast<double>(*loss);
        if (auto s = inner->step(model->params(), model->grads()); !s.ok()) return fail(s);
      }
      compute_s += duration<double>(clk::now() - c0).count();
      // The outer step, redone on the survivors until it succeeds everywhere.
      const std::vector<float> local(model->params().begin(), model->params().end());
      const std::vector<float> snap(engine->snapshot(0).begin(), engine->snapshot(0).end());
      const std::vector<std::byte> blob_before = [&] {
        std::vector<std::byte> b(outer_blob.size());
        (void)engine->outer_optimizer(0)->save_state(b);
        return b;
      }();
      bool completed = false;
      for (;;) {
        status s = engine->sync_now();
        if (s.ok())
          s = barrier(*group, seq++, o.timeout, xxh3_64(std::as_bytes(std::span<const float>(model->params()))),
                      o.collective == "ring" || o.collective == "butterfly");
        if (s.code() == status_code::data_loss) {
          // Members disagree after a step (a crash split the last exchange: some finished it,
          // some did not). Redoing would mix rounds: instead everyone adopts the majority's
          // state through the shared-state vote.
          ++repairs;
          say("REPAIR round=%" PRIu64 " %s", round, s.to_string().c_str());
          status c = regroup([&] {
            status r = share(false);
            return r.ok() ? fresh_engine() : r;
          });
          if (!c.ok()) {
            if (c.code() != status_code::aborted) return fail(c);
            if (auto j = join(); !j.ok()) return fail(j);
          }
          break;
        }
        if (s.ok()) {
          completed = true;
          break;
        }
        const auto t0 = clk::now();
        ++recoveries;
        say("FAILED round=%" PRIu64 " epoch=%" PRIu64 " %s", round, v.epoch, s.to_string().c_str());
        (void)client->report_failure(v.epoch);
        // Roll back to before the outer step, regroup, redo it.
        outer_blob = blob_before;
        status c = regroup([&] { return make_engine(snap, local); });
        if (!c.ok()) {
          if (c.code() != status_code::aborted) return fail(c);
          if (auto j = join(); !j.ok()) return fail(j);  // evicted: start over as a joiner
          break;
        }
        say("RECOVERED ms=%lld size=%zu epoch=%" PRIu64, static_cast<long long>(duration_cast<milliseconds>(clk::now() - t0).count()),
            v.members.size(), v.epoch);
      }
      if (!completed) continue;
      ++round;
      say("OUTER round=%" PRIu64 " loss=%.4f sent=%" PRIu64 " compute=%.3f wall=%.3f size=%zu epoch=%" PRIu64
          " recoveries=%d pulled=%" PRIu64,
          round, last_loss, bytes_sent(), compute_s, duration<double>(clk::now() - start).count(), v.members.size(), v.epoch,
          recoveries, pulled);
      if (round >= o.outer_steps) break;
      // Step boundary: admit joiners (a joint query, then the vote).
      auto pending = client->peers_pending(net::after(seconds(10)));
      if (!pending.ok() || !*pending) {
        if (!pending.ok() && pending.status().code() == status_code::aborted) {
          if (auto j = join(); !j.ok()) return fail(j);
        }
        continue;
      }
      auto nv = client->update_membership(net::after(seconds(60)));
      if (!nv.ok()) {
        if (nv.status().code() == status_code::aborted) {
          if (auto j = join(); !j.ok()) return fail(j);
        }
        continue;
      }
      if (nv->epoch == v.epoch) continue;
      engine.reset();
      status c = connect(*nv);
      if (c.ok()) c = share(false);
      if (c.ok()) c = fresh_engine();
      if (!c.ok()) {
        say("BOUNDARY-FAILED %s", c.to_string().c_str());
        c = regroup([&] {
          status r = share(false);
          return r.ok() ? fresh_engine() : r;
        });
        if (!c.ok() && c.code() == status_code::aborted) c = join();  // evicted: rejoin
        if (!c.ok()) return fail(c);
      }
    }
    // Validation loss of the final model (rank 0 of the last view reports it).
    double val = -1;
    if (client->rank_of(v) == std::optional<std::size_t>(0)) {
      auto l = testbed::eval_loss(*model, *data);
      if (l.ok()) val = static_cast<double>(*l);
    }
    say("DONE round=%" PRIu64 " val=%.4f sent=%" PRIu64 " compute=%.3f wall=%.3f recoveries=%d", round, val, bytes_sent(),
        compute_s, duration<double>(clk::now() - start).count(), recoveries);
    (void)client->leave();
    return 0;
  }

  int fail(const status& s) {
    say("ERROR %s", s.to_string().c_str());
    return 1;
  }
};

}  // namespace

int run_peer(const options& o) {
  peer p(o);
  return p.run();
}

}  // namespace dtrain::swarm
