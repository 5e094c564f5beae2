// The peer side of the membership protocol: one io thread keeps the control connection
// (connect, challenge/hello/welcome, heartbeats, reconnect with backoff); the public
// calls wait on a mutex + condition variable for what that thread learns.
#include "dtrain/membership/peer_client.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "wire.h"

namespace dtrain::membership {

using detail::framed_conn;

namespace {
enum class phase { idle, connecting, pending, member, evicted, left, failed };
constexpr std::chrono::milliseconds min_backoff{10};
}  // namespace

struct peer_client::impl {
  identity self;
  client_options o;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  asio::ip::tcp::resolver resolver{io};
  asio::steady_timer hb_timer{io}, retry_timer{io};
  std::thread thread;

  // io-thread state
  std::shared_ptr<framed_conn> conn;
  std::uint64_t conn_gen = 0;
  bool connect_in_flight = false;
  bool got_challenge = false;
  detail::session_keys keys;
  std::chrono::milliseconds backoff = min_backoff;
  std::atomic<bool> hb_paused{false};
  std::atomic<std::int64_t> hb_ms{1000};

  // shared state
  mutable std::mutex mu;
  std::condition_variable cv;
  phase ph = phase::idle;
  bool connected = false;  // welcomed on the current connection
  bool ever_connected = false;
  status fatal;
  view latest;
  std::uint64_t vote_gen = 0, vote_done = 0;
  view vote_result;
  std::uint64_t query_gen = 0, query_done = 0;
  std::uint32_t query_answer = 0;
  bool leave_done = false;

  impl(const identity& id, client_options opt) : self(id), o(std::move(opt)) {
    hb_ms = o.heartbeat_interval.count();
  }

  void log(const std::string& line) {
    if (o.logger) return o.logger(line);
    std::fprintf(stderr, "[dtrain peer %s] %s\n", self.id().short_hex().c_str(), line.c_str());
  }

  static bool wants_connection(phase p) { return p == phase::connecting || p == phase::pending || p == phase::member; }

  // ---- connection (io thread) ------------------------------------------------------------
  void ensure_connected() {
    {
      std::lock_guard lk(mu);
      if (!wants_connection(ph)) return;
    }
    if (conn || connect_in_flight) return;
    connect_in_flight = true;
    resolver.async_resolve(o.coordinator.host, std::to_string(o.coordinator.port),
                           [this](const asio::error_code& ec, asio::ip::tcp::resolver::results_type results) {
                             if (ec) return connect_failed("cannot resolve " + o.coordinator.to_string() + ": " + ec.message());
                             auto sock = std::make_shared<asio::ip::tcp::socket>(io);
                             asio::async_connect(*sock, results,
                                                 [this, sock](const asio::error_code& e, const asio::ip::tcp::endpoint&) {
                                                   if (e) return connect_failed("connect: " + e.message());
                                                   // While nothing listens on the coordinator's port, a
                                                   // connect from an ephemeral port that happens to equal it
                                                   // succeeds by TCP simultaneous open onto itself, and then
                                                   // holds the port the restarting coordinator needs.
                                                   asio::error_code le, re;
                                                   if (sock->local_endpoint(le) == sock->remote_endpoint(re) && !le && !re) {
                                                     sock->close(le);
                                                     return connect_failed("connected to itself");
                                                   }
                                                   on_connected(std::move(*sock));
                                                 });
                           });
  }

  void connect_failed(const std::string& why) {
    connect_in_flight = false;
    (void)why;  // the coordinator is down or restarting: expected, retried quietly
    schedule_retry();
  }

  void schedule_retry() {
    retry_timer.expires_after(backoff);
    backoff = std::min(2 * backoff, o.max_backoff);
    retry_timer.async_wait([this](const asio::error_code& ec) {
      if (!ec) ensure_connected();
    });
  }

  void on_connected(asio::ip::tcp::socket s) {
    connect_in_flight = false;
    {
      std::lock_guard lk(mu);
      if (!wants_connection(ph)) return;  // left while connecting
    }
    conn = std::make_shared<framed_conn>(std::move(s));
    const auto gen = ++conn_gen;
    keys.reset();
    got_challenge = false;
    conn->start([this, gen](std::vector<std::byte> f) { if (gen == conn_gen) on_frame(std::move(f)); },
                [this, gen](const status& st) { if (gen == conn_gen) on_closed(st); });
  }

  void close_conn() {
    if (conn) conn->close();
    conn.reset();
    ++conn_gen;
    std::lock_guard lk(mu);
    connected = false;
  }

  void on_closed(const status& st) {
    conn.reset();
    ++conn_gen;
    bool retry, was;
    {
      std::lock_guard lk(mu);
      was = connected;
      connected = false;
      retry = wants_connection(ph);
    }
    cv.notify_all();
    if (was && retry) log("lost the coordinator (" + st.to_string() + "); reconnecting");
    if (retry) schedule_retry();
  }

  void fail_fatal(const status& st) {
    log("giving up on the coordinator: " + st.to_string());
    close_conn();
    {
      std::lock_guard lk(mu);
      ph = phase::failed;
      fatal = st;
    }
    cv.notify_all();
  }

  void bad_message(const status& st) {
    if (st.code() == status_code::permission_denied) return fail_fatal(st);
    log("bad message from the coordinator (" + st.to_string() + "); reconnecting");
    close_conn();
    schedule_retry();
  }

  void send(const message_body& body) {
    if (!conn) return;
    auto frame = keys.seal(body, self);
    if (frame.ok()) conn->send(std::move(*frame));
  }

  // ---- incoming (io thread) ----------------------------------------------------------
  void on_frame(std::vector<std::byte> f) {
    auto m = decode_message(f);
    if (!m.ok()) return bad_message(m.status());
    if (!got_challenge) {
      if (m->type() != message_type::challenge || m->counter != 0 || m->challenge != nonce{})
        return bad_message(data_loss("the coordinator's first message is not a challenge"));
      if (o.coordinator_id && m->sender != *o.coordinator_id)
        return fail_fatal(status(status_code::permission_denied,
                                 "coordinator key " + m->sender.short_hex() + " is not the pinned " +
                                     o.coordinator_id->short_hex()));
      got_challenge = true;
      keys.remote = m->sender;
      keys.theirs = std::get<challenge_body>(m->body).value;
      hello_body h{keys.mine, o.group, o.data_address, std::nullopt};
      {
        std::lock_guard lk(mu);
        if (latest.epoch > 0) h.known_view = latest;
      }
      return send(h);
    }
    if (auto st = keys.accept(*m); !st.ok()) return bad_message(st);
    switch (m->type()) {
      case message_type::welcome: return on_welcome(std::get<welcome_body>(m->body));
      case message_type::view: return on_view(std::get<view_body>(m->body));
      case message_type::pending_answer: {
        {
          std::lock_guard lk(mu);
          query_done = query_gen;
          query_answer = std::get<pending_answer_body>(m->body).pending;
        }
        cv.notify_all();
        return;
      }
      case message_type::reject: {
        const auto& r = std::get<reject_body>(m->body);
        log("rejected by the coordinator: " + std::string(code_name(r.code)) + ": " + r.reason);
        if (r.code == status_code::permission_denied) return fail_fatal(status(r.code, r.reason));
        close_conn();
        return schedule_retry();
      }
      default: return bad_message(data_loss("unexpected message type from the coordinator"));
    }
  }

  void on_welcome(const welcome_body& w) {
    backoff = min_backoff;
    if (w.heartbeat_ms > 0) hb_ms = std::min<std::int64_t>(o.heartbeat_interval.count(), w.heartbeat_ms);
    bool evicted = false, resend_vote = false, resend_query = false;
    {
      std::lock_guard lk(mu);
      connected = ever_connected = true;
      if (w.admitted && w.current.contains(self.id())) {
        ph = phase::member;
        latest = w.current;
        resend_vote = vote_gen > vote_done;
        resend_query = query_gen > query_done;
      } else if (ph == phase::member) {
        ph = phase::evicted;
        evicted = true;
        if (w.current.epoch >= latest.epoch) latest = w.current;
      } else {
        ph = phase::pending;
      }
    }
    cv.notify_all();
    if (evicted) {
      log("the coordinator no longer lists this peer; join() again");
      return close_conn();
    }
    if (resend_vote) send(vote_body{latest_epoch()});
    if (resend_query) send(pending_query_body{latest_epoch()});
    send(heartbeat_body{latest_epoch()});
  }

  void on_view(const view_body& vb) {
    bool evicted = false;
    {
      std::lock_guard lk(mu);
      if (vb.v.epoch >= latest.epoch) latest = vb.v;
      const bool in = vb.v.contains(self.id());
      if (in && (ph == phase::pending || ph == phase::connecting)) ph = phase::member;
      if (!in && ph == phase::member) {
        ph = phase::evicted;
        evicted = true;
      }
      if (in && vb.reason == view_reason::vote) {
        vote_done = vote_gen;
        vote_result = vb.v;
      }
    }
    cv.notify_all();
    if (evicted) {
      log("evicted in epoch " + std::to_string(vb.v.epoch) + "; join() again");
      close_conn();
    }
  }

  std::uint64_t latest_epoch() {
    std::lock_guard lk(mu);
    return latest.epoch;
  }

  void arm_heartbeat() {
    hb_timer.expires_after(std::chrono::milliseconds(hb_ms.load()));
    hb_timer.async_wait([this](const asio::error_code& ec) {
      if (ec) return;
      bool go;
      {
        std::lock_guard lk(mu);
        go = connected && (ph == phase::member || ph == phase::pending);
      }
      if (go && !hb_paused) send(heartbeat_body{latest_epoch()});
      arm_heartbeat();
    });
  }

  // ---- waiting (caller threads) ---------------------------------------------------------
  status timeout_status(const char* what) const {  // mu held
    if (!connected) return unavailable(std::string(what) + ": not connected to the coordinator");
    return status(status_code::deadline_exceeded, std::string(what) + ": deadline passed");
  }
};

peer_client::peer_client(std::unique_ptr<impl> p) : p_(std::move(p)), self_id_(p_->self.id()) {}

peer_client::~peer_client() {
  p_->io.stop();
  if (p_->thread.joinable()) p_->thread.join();
}

result<std::unique_ptr<peer_client>> peer_client::create(const identity& self, client_options o) {
  if (o.heartbeat_interval.count() <= 0) return invalid_argument("peer_client: heartbeat_interval must be > 0");
  if (o.max_backoff.count() <= 0) return invalid_argument("peer_client: max_backoff must be > 0");
  auto p = std::make_unique<impl>(self, std::move(o));
  p->arm_heartbeat();
  auto* raw = p.get();
  p->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<peer_client>(new peer_client(std::move(p)));
}

result<view> peer_client::join(net::deadline d) {
  auto& p = *p_;
  std::unique_lock lk(p.mu);
  if (p.ph == phase::member) return p.latest;
  if (p.ph != phase::connecting && p.ph != phase::pending) {
    p.ph = phase::connecting;
    p.fatal = ok_status();
    asio::post(p.io, [&p] {
      p.backoff = min_backoff;
      p.ensure_connected();
    });
  }
  p.cv.wait_until(lk, d, [&] { return p.ph == phase::member || p.ph == phase::failed; });
  if (p.ph == phase::member) return p.latest;
  if (p.ph == phase::failed) return p.fatal;
  if (p.ph == phase::pending) return status(status_code::deadline_exceeded, "join: registered, not admitted yet");
  return unavailable("join: could not reach the coordinator at " + p.o.coordinator.to_string());
}

result<view> peer_client::update_membership(net::deadline d) {
  auto& p = *p_;
  std::unique_lock lk(p.mu);
  if (p.ph == phase::evicted) return aborted("update_membership: this peer was evicted; join() again");
  if (p.ph != phase::member) return failed_precondition("update_membership: not a member; join() first");
  const auto gen = ++p.vote_gen;
  const auto epoch = p.latest.epoch;
  asio::post(p.io, [&p, epoch] {
    bool go;
    {
      std::lock_guard g(p.mu);
      go = p.connected && p.ph == phase::member;
    }
    if (go) p.send(vote_body{epoch});  // else resent after the reconnect's welcome
  });
  p.cv.wait_until(lk, d, [&] { return p.vote_done >= gen || p.ph != phase::member; });
  if (p.vote_done >= gen && p.ph == phase::member) return p.vote_result;
  if (p.ph == phase::evicted) return aborted("update_membership: this peer was evicted; join() again");
  if (p.ph == phase::failed) return p.fatal;
  if (p.ph != phase::member) return failed_precondition("update_membership: left");
  return p.timeout_status("update_membership");
}

result<bool> peer_client::peers_pending(net::deadline d) {
  auto& p = *p_;
  std::unique_lock lk(p.mu);
  if (p.ph == phase::evicted) return aborted("peers_pending: this peer was evicted; join() again");
  if (p.ph != phase::member) return failed_precondition("peers_pending: not a member; join() first");
  const auto gen = ++p.query_gen;
  const auto epoch = p.latest.epoch;
  asio::post(p.io, [&p, epoch] {
    bool go;
    {
      std::lock_guard g(p.mu);
      go = p.connected && p.ph == phase::member;
    }
    if (go) p.send(pending_query_body{epoch});
  });
  p.cv.wait_until(lk, d, [&] { return p.query_done >= gen || p.ph != phase::member; });
  if (p.query_done >= gen && p.ph == phase::member) return p.query_answer > 0;
  if (p.ph == phase::evicted) return aborted("peers_pending: this peer was evicted; join() again");
  if (p.ph == phase::failed) return p.fatal;
  if (p.ph != phase::member) return failed_precondition("peers_pending: left");
  return p.timeout_status("peers_pending");
}

view peer_client::latest_view() const {
  std::lock_guard lk(p_->mu);
  return p_->latest;
}

result<view> peer_client::await_view_after(std::uint64_t epoch, net::deadline d) {
  auto& p = *p_;
  std::unique_lock lk(p.mu);
  if (p.latest.epoch == 0 && p.ph != phase::member) return failed_precondition("await_view_after: never joined");
  p.cv.wait_until(lk, d, [&] {
    return p.latest.epoch > epoch || p.ph == phase::evicted || p.ph == phase::failed || p.ph == phase::left;
  });
  if (p.ph == phase::failed) return p.fatal;
  if (p.ph == phase::evicted || (p.latest.epoch > epoch && !p.latest.contains(p.self.id())))
    return aborted("await_view_after: this peer is not in the new view; join() again");
  if (p.latest.epoch > epoch) return p.latest;
  if (p.ph == phase::left) return failed_precondition("await_view_after: left");
  return p.timeout_status("await_view_after");
}

status peer_client::report_failure(std::uint64_t epoch, std::optional<peer_id> suspect) {
  auto& p = *p_;
  std::lock_guard lk(p.mu);
  if (p.ph != phase::member) return failed_precondition("report_failure: not a member");
  if (!p.connected) return unavailable("report_failure: not connected to the coordinator");
  asio::post(p.io, [&p, epoch, suspect] { p.send(report_failure_body{epoch, suspect}); });
  return ok_status();
}

status peer_client::leave(net::deadline d) {
  auto& p = *p_;
  std::unique_lock lk(p.mu);
  if (p.ph != phase::member && p.ph != phase::pending && p.ph != phase::connecting)
    return failed_precondition("leave: not joined");
  p.ph = phase::left;
  p.leave_done = false;
  asio::post(p.io, [&p] {
    bool was_connected;
    {
      std::lock_guard g(p.mu);
      was_connected = p.connected;
      p.connected = false;
    }
    auto done = [&p] {
      {
        std::lock_guard g(p.mu);
        p.leave_done = true;
      }
      p.cv.notify_all();
    };
    if (p.conn && was_connected) {
      p.send(goodbye_body{});
      auto c = std::move(p.conn);
      ++p.conn_gen;
      c->close_after_flush(done);
    } else {
      p.close_conn();
      done();
    }
  });
  p.cv.notify_all();
  if (!p.cv.wait_until(lk, d, [&] { return p.leave_done; }))
    return status(status_code::deadline_exceeded, "leave: goodbye not written before the deadline");
  return ok_status();
}

void peer_client::pause_heartbeats_for_testing(bool paused) { p_->hb_paused = paused; }

}  // namespace dtrain::membership
