// The membership coordinator: registration, step-boundary admission, failure detection,
// restart adoption. All state lives on the io thread; a mutex guards the published copy.
#include "dtrain/membership/coordinator.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "wire.h"

namespace dtrain::membership {

using clock = std::chrono::steady_clock;
using detail::framed_conn;

namespace {

// At most this many "rejected" lines per second; the rest are counted and summarised.
constexpr int reject_logs_per_second = 20;

}  // namespace

struct coordinator::impl {
  struct conn_state {
    std::shared_ptr<framed_conn> c;
    detail::session_keys keys;
    bool authed = false;
    peer_id peer{};
    net::tcp::address data_address;
    std::uint32_t group = 0;
    clock::time_point opened{}, last_heard{};
    clock::time_point suspect_deadline = clock::time_point::max();  // shortened by report_failure
    bool member = false, pending = false, voted = false, queried = false;
  };

  identity self;
  coordinator_options o;
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor{io};
  asio::steady_timer sweep_timer{io};
  std::thread thread;
  net::tcp::address bound;

  // io-thread state
  std::map<std::uint64_t, conn_state> conns;
  std::map<peer_id, std::uint64_t> by_peer;  // authenticated connections
  std::vector<std::uint64_t> pending;        // arrival order
  std::uint64_t next_conn = 1;
  view current;
  bool recovering = false;
  clock::time_point recovery_end{};
  clock::time_point log_window{};
  int logs_in_window = 0, suppressed = 0;

  // published copy
  mutable std::mutex mu;
  view published;
  std::size_t published_pending = 0;
  bool stopped = false;

  impl(const identity& id, coordinator_options opt) : self(id), o(std::move(opt)) {}

  // ---- logging ----------------------------------------------------------------------
  void log(std::string_view line) {
    if (o.logger) return o.logger(line);
    std::fprintf(stderr, "[dtrain coordinator %s] %.*s\n", self.id().short_hex().c_str(),
                 static_cast<int>(line.size()), line.data());
  }
  void log_reject(const std::string& line) {
    const auto now = clock::now();
    if (now - log_window >= std::chrono::seconds(1)) {
      if (suppressed > 0) log("(" + std::to_string(suppressed) + " more rejections not logged)");
      log_window = now;
      logs_in_window = 0;
      suppressed = 0;
    }
    if (++logs_in_window > reject_logs_per_second) {
      ++suppressed;
      return;
    }
    log("rejected: " + line);
  }

  void publish() {
    std::lock_guard lk(mu);
    published = current;
    published_pending = pending.size();
  }

  // ---- sending ----------------------------------------------------------------------
  void send(conn_state& cs, const message_body& body) {
    auto frame = cs.keys.seal(body, self);
    if (!frame.ok()) {
      // Only a view too large for one frame gets here; drop the peer rather than stall.
      log("cannot encode for " + cs.peer.short_hex() + ": " + frame.status().to_string());
      return;
    }
    cs.c->send(std::move(*frame));
  }
  void send_view(conn_state& cs, view_reason why) { send(cs, view_body{why, current}); }

  // ---- accepting ----------------------------------------------------------------------
  void do_accept() {
    acceptor.async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket s) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) on_accept(std::move(s));
      do_accept();
    });
  }

  void on_accept(asio::ip::tcp::socket s) {
    const std::uint64_t id = next_conn++;
    auto& cs = conns[id];
    cs.c = std::make_shared<framed_conn>(std::move(s));
    cs.keys.reset();
    cs.opened = cs.last_heard = clock::now();
    cs.c->start([this, id](std::vector<std::byte> f) { on_frame(id, std::move(f)); },
                [this, id](const status& st) { on_closed(id, st); });
    // The first message: our challenge. It signs an all-zero nonce (the peer has none
    // yet); what proves this coordinator is the welcome, which signs the peer's nonce.
    auto frame = encode_message(challenge_body{cs.keys.mine}, self, nonce{}, 0);
    DTRAIN_ASSERT(frame.ok());
    cs.c->send(std::move(*frame));
  }

  // ---- dropping connections -----------------------------------------------------------
  std::string who(const conn_state& cs, std::uint64_t id) const {
    return cs.authed ? "peer " + cs.peer.short_hex() : "connection #" + std::to_string(id);
  }

  // Rejects an unauthenticated or misbehaving connection: optional reject message, close,
  // and evict if it was a member.
  void reject(std::uint64_t id, const status& why, bool tell) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    log_reject(who(it->second, id) + ": " + why.to_string());
    if (tell && it->second.keys.theirs != nonce{})
      send(it->second, reject_body{why.code(), why.message().substr(0, max_string_bytes)});
    drop(id, "protocol violation", /*flush=*/tell);
  }

  void drop(std::uint64_t id, const std::string& why, bool flush = false) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    conn_state cs = std::move(it->second);
    conns.erase(it);
    if (flush) cs.c->close_after_flush();
    else cs.c->close();
    if (cs.authed) {
      auto b = by_peer.find(cs.peer);
      if (b != by_peer.end() && b->second == id) by_peer.erase(b);
    }
    if (cs.pending) {
      pending.erase(std::remove(pending.begin(), pending.end(), id), pending.end());
      log("pending peer " + cs.peer.short_hex() + " dropped: " + why);
      publish();
    }
    if (cs.member) evict({cs.peer}, why);
  }

  void on_closed(std::uint64_t id, const status& st) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    if (st.code() != status_code::unavailable) return reject(id, st, false);  // malformed stream
    drop(id, "connection closed (" + st.message() + ")");
  }

  // ---- membership changes ------------------------------------------------------------
  void new_epoch() {
    ++current.epoch;
    random_bytes(std::as_writable_bytes(std::span(&current.session, 1)));
  }

  // Removes `gone` from the view, bumps the epoch, tells the remaining members (and
  // any gone peer still connected, which then is closed), then re-checks the votes.
  void evict(const std::set<peer_id>& gone, const std::string& why) {
    std::vector<member> keep;
    for (auto& m : current.members)
      if (!gone.count(m.id)) keep.push_back(m);
    if (keep.size() == current.members.size()) return;
    current.members = std::move(keep);
    new_epoch();
    publish();  // before anyone can see the new view, so current_view() is never behind a peer
    for (const auto& p : gone) log("evicted " + p.short_hex() + ": " + why + "; epoch " + std::to_string(current.epoch));
    for (auto& [id, cs] : conns) {
      if (cs.member && gone.count(cs.peer)) {
        cs.member = false;
        send_view(cs, view_reason::update);  // it learns it is out ...
        cs.c->close_after_flush();           // ... and must register again
      }
    }
    std::erase_if(conns, [&](const auto& kv) {
      if (kv.second.c->is_open()) return false;
      auto b = by_peer.find(kv.second.peer);
      if (b != by_peer.end() && b->second == kv.first) by_peer.erase(b);
      return true;
    });
    for (auto& [id, cs] : conns)
      if (cs.member) send_view(cs, view_reason::update);
    after_change();
  }

  void after_change() {
    try_complete_vote();
    try_complete_query();
    try_bootstrap();
  }

  std::vector<conn_state*> member_conns() {
    std::vector<conn_state*> out;
    for (auto& [id, cs] : conns)
      if (cs.member) out.push_back(&cs);
    return out;
  }

  // Moves every pending peer into the view, in arrival order, after the current members.
  std::vector<conn_state*> admit_pending() {
    std::vector<conn_state*> admitted;
    for (auto id : pending) {
      auto it = conns.find(id);
      if (it == conns.end()) continue;
      auto& cs = it->second;
      cs.pending = false;
      cs.member = true;
      current.members.push_back({cs.peer, cs.data_address, cs.group});
      admitted.push_back(&cs);
      log("admitted " + cs.peer.short_hex() + " as rank " + std::to_string(current.members.size() - 1));
    }
    pending.clear();
    return admitted;
  }

  void try_bootstrap() {
    if (recovering || !current.members.empty() || pending.size() < o.min_peers) return;
    auto admitted = admit_pending();
    new_epoch();
    log("bootstrap: " + std::to_string(admitted.size()) + " peers, epoch " + std::to_string(current.epoch));
    publish();
    for (auto* cs : admitted) send_view(*cs, view_reason::admitted);
  }

  void try_complete_vote() {
    if (recovering || current.members.empty()) return;
    auto members = member_conns();
    // Outside recovery every member has a live connection (a closed one is evicted).
    if (members.size() != current.members.size()) return;
    for (auto* cs : members)
      if (!cs->voted) return;
    for (auto* cs : members) cs->voted = false;
    std::vector<conn_state*> admitted;
    if (!pending.empty()) {
      admitted = admit_pending();
      new_epoch();
      log("vote: admitted " + std::to_string(admitted.size()) + ", epoch " + std::to_string(current.epoch));
    }
    publish();
    for (auto* cs : members) send_view(*cs, view_reason::vote);
    for (auto* cs : admitted) send_view(*cs, view_reason::admitted);
  }

  void try_complete_query() {
    if (recovering || current.members.empty()) return;
    auto members = member_conns();
    if (members.size() != current.members.size()) return;
    for (auto* cs : members)
      if (!cs->queried) return;
    const auto n = static_cast<std::uint32_t>(pending.size());
    for (auto* cs : members) {
      cs->queried = false;
      send(*cs, pending_answer_body{n});
    }
  }

  // ---- frames ----------------------------------------------------------------------
  void on_frame(std::uint64_t id, std::vector<std::byte> f) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    auto& cs = it->second;
    auto m = decode_message(f);
    if (!m.ok()) return reject(id, m.status(), true);
    if (!cs.authed) {
      cs.keys.remote = m->sender;  // the hello names the key; its signature proved it
      if (auto st = cs.keys.accept(*m); !st.ok()) return reject(id, st, false);
      if (m->type() != message_type::hello)
        return reject(id, status(status_code::permission_denied, "first message is not a hello"), false);
      return on_hello(id, m->sender, std::get<hello_body>(m->body));
    }
    if (auto st = cs.keys.accept(*m); !st.ok()) return reject(id, st, true);
    cs.last_heard = clock::now();
    cs.suspect_deadline = clock::time_point::max();
    switch (m->type()) {
      case message_type::heartbeat: return;
      case message_type::vote:
        if (!cs.member) return;  // a vote racing its eviction: the view push answers it
        cs.voted = true;
        return try_complete_vote();
      case message_type::pending_query:
        if (!cs.member) return;
        cs.queried = true;
        return try_complete_query();
      case message_type::goodbye:
        log("goodbye from " + cs.peer.short_hex());
        return drop(id, "left");
      case message_type::report_failure: return on_report(cs, std::get<report_failure_body>(m->body));
      default:
        return reject(id, status(status_code::permission_denied, "unexpected message type " +
                                                                     std::to_string(static_cast<int>(m->type()))),
                      true);
    }
  }

  void on_report(const conn_state& from, const report_failure_body& r) {
    if (!from.member || !r.suspect || r.epoch != current.epoch) return;
    auto b = by_peer.find(*r.suspect);
    if (b == by_peer.end()) return;
    auto& s = conns.at(b->second);
    if (!s.member) return;
    // One peer's word never evicts another: the suspect just has to prove itself alive
    // sooner (any message clears the suspicion).
    const auto window = std::min(o.failure_deadline, 2 * o.heartbeat_interval);
    s.suspect_deadline = std::min(s.suspect_deadline, clock::now() + window);
    log(from.peer.short_hex() + " suspects " + s.peer.short_hex() + " in epoch " + std::to_string(r.epoch));
  }

  void on_hello(std::uint64_t id, const peer_id& peer, const hello_body& h) {
    if (!o.allowlist.empty() && std::find(o.allowlist.begin(), o.allowlist.end(), peer) == o.allowlist.end()) {
      conns.at(id).keys.theirs = h.peer_challenge;
      return reject(id, status(status_code::permission_denied, "key " + peer.hex() + " is not allowlisted"), true);
    }
    if (auto old = by_peer.find(peer); old != by_peer.end()) drop(old->second, "replaced by a new connection");
    auto& cs = conns.at(id);
    cs.keys.theirs = h.peer_challenge;
    cs.authed = true;
    cs.peer = peer;
    cs.data_address = h.data_address;
    cs.group = h.group;
    cs.last_heard = clock::now();
    by_peer[peer] = id;

    const auto& kv = h.known_view;
    if (kv && kv->contains(peer) && kv->epoch > current.epoch && (current.members.empty() || recovering)) {
      if (!recovering) {
        recovering = true;
        const auto grace = o.rejoin_grace.count() > 0 ? o.rejoin_grace : 2 * o.heartbeat_interval;
        recovery_end = clock::now() + grace;
      }
      log("adopting epoch " + std::to_string(kv->epoch) + " (" + std::to_string(kv->members.size()) +
          " members) reported by " + peer.short_hex());
      current = *kv;
      publish();
      for (auto& [cid, other] : conns) {
        if (other.member && !current.contains(other.peer)) {
          other.member = false;
          other.pending = true;
          pending.push_back(cid);
        }
      }
      for (auto& [cid, other] : conns)
        if (other.member) send_view(other, view_reason::update);
    }
    if (recovering) {
      const auto rank = current.rank_of(peer);
      if (rank && current.members[*rank].data_address == h.data_address && current.members[*rank].group == h.group) {
        cs.member = true;
        log("re-registered " + peer.short_hex() + " as rank " + std::to_string(*rank));
        publish();
        return send(cs, welcome_body{true, static_cast<std::uint32_t>(o.heartbeat_interval.count()), current});
      }
    }
    cs.pending = true;
    pending.push_back(id);
    log("pending " + peer.short_hex() + " (group " + std::to_string(h.group) + ", data " +
        h.data_address.to_string() + ")");
    send(cs, welcome_body{false, static_cast<std::uint32_t>(o.heartbeat_interval.count()), current});
    publish();
    try_bootstrap();
  }

  // ---- timers --------------------------------------------------------------------------
  void arm_sweep() {
    const auto period = std::max(std::chrono::milliseconds(5), o.heartbeat_interval / 4);
    sweep_timer.expires_after(period);
    sweep_timer.async_wait([this](const asio::error_code& ec) {
      if (ec) return;
      sweep();
      arm_sweep();
    });
  }

  void sweep() {
    const auto now = clock::now();
    if (recovering && now >= recovery_end) end_recovery();
    std::set<peer_id> dead_members;
    std::vector<std::uint64_t> dead_conns;
    for (auto& [id, cs] : conns) {
      const auto deadline = std::min(cs.last_heard + o.failure_deadline, cs.suspect_deadline);
      if (now < deadline) continue;
      if (cs.member) dead_members.insert(cs.peer);
      else dead_conns.push_back(id);
    }
    for (auto id : dead_conns) {
      const auto& cs = conns.at(id);
      if (!cs.authed) log_reject(who(cs, id) + ": no hello within the failure deadline");
      drop(id, "silent past the failure deadline");
    }
    if (!dead_members.empty()) evict(dead_members, "silent past the failure deadline");
  }

  void end_recovery() {
    recovering = false;
    std::set<peer_id> missing;
    for (const auto& m : current.members) {
      auto b = by_peer.find(m.id);
      if (b == by_peer.end() || !conns.at(b->second).member) missing.insert(m.id);
    }
    log("restart grace over: " + std::to_string(current.members.size() - missing.size()) + " of " +
        std::to_string(current.members.size()) + " members re-registered");
    if (!missing.empty()) return evict(missing, "did not re-register after the coordinator restart");
    publish();
    for (auto* cs : member_conns()) send_view(*cs, view_reason::update);
    after_change();
  }
};

coordinator::coordinator(std::unique_ptr<impl> p) : p_(std::move(p)) {}

coordinator::~coordinator() { stop(); }

result<std::unique_ptr<coordinator>> coordinator::create(const identity& self, coordinator_options o) {
  if (o.heartbeat_interval.count() <= 0) return invalid_argument("coordinator: heartbeat_interval must be > 0");
  if (o.failure_deadline < 2 * o.heartbeat_interval)
    return invalid_argument("coordinator: failure_deadline must be at least 2 x heartbeat_interval");
  if (o.rejoin_grace.count() < 0) return invalid_argument("coordinator: rejoin_grace must be >= 0");
  if (o.min_peers == 0) return invalid_argument("coordinator: min_peers must be >= 1");
  auto p = std::make_unique<impl>(self, std::move(o));
  asio::error_code ec;
  asio::ip::tcp::resolver resolver(p->io);
  auto eps = resolver.resolve(p->o.listen.host, std::to_string(p->o.listen.port), ec);
  if (ec || eps.empty())
    return unavailable("coordinator: cannot resolve " + p->o.listen.to_string() + ": " + ec.message());
  const auto ep = eps.begin()->endpoint();
  p->acceptor.open(ep.protocol(), ec);
  if (!ec) p->acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) p->acceptor.bind(ep, ec);
  if (!ec) p->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return unavailable("coordinator: cannot listen on " + p->o.listen.to_string() + ": " + ec.message());
  p->bound = {p->o.listen.host, p->acceptor.local_endpoint().port()};
  p->do_accept();
  p->arm_sweep();
  auto* raw = p.get();
  p->thread = std::thread([raw] { raw->io.run(); });
  raw->log("listening on " + raw->bound.to_string());
  return std::unique_ptr<coordinator>(new coordinator(std::move(p)));
}

net::tcp::address coordinator::address() const { return p_->bound; }
const peer_id& coordinator::id() const noexcept { return p_->self.id(); }

view coordinator::current_view() const {
  std::lock_guard lk(p_->mu);
  return p_->published;
}

std::size_t coordinator::pending_count() const {
  std::lock_guard lk(p_->mu);
  return p_->published_pending;
}

void coordinator::stop() {
  {
    std::lock_guard lk(p_->mu);
    if (p_->stopped) return;
    p_->stopped = true;
  }
  asio::post(p_->io, [p = p_.get()] {
    asio::error_code ec;
    p->acceptor.close(ec);
    p->sweep_timer.cancel();
    for (auto& [id, cs] : p->conns) cs.c->close();
    p->conns.clear();
    p->io.stop();
  });
  if (p_->thread.joinable()) p_->thread.join();
}

}  // namespace dtrain::membership
