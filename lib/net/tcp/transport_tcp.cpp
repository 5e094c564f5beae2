// tcp_transport: tag matching, striping over S streams, checksummed frames, deadlines and
// lost-peer handling. Rules that keep buffers safe:
// - a user buffer is referenced by I/O only while its op holds an io ref (queued or
//   in-flight stripes of a send, an in-flight read of a receive); wait() retires an op only
//   when it is done and has no io ref left;
// - a cancelled op that still has bytes on the wire closes that peer's connection (the
//   stream's framing can no longer be trusted), which ends the in-flight I/O at once.
#include "dtrain/net/transport_tcp.h"

#include <algorithm>
#include <cstring>
#include <future>
#include <string>

#include "tcp_detail.h"

namespace dtrain::net {
namespace tcp::detail {

namespace {
// How long wait() lets a healthy peer finish the stripe in flight into or out of an
// abandoned operation's buffer before it closes that connection.
constexpr auto kAbandonGrace = std::chrono::milliseconds(2000);
std::string peer_name(rank_t r) { return "rank " + std::to_string(r); }
/// What a backlogged message counts against unexpected_cap_bytes.
std::uint64_t backlog_charge(const inbound_msg& m) { return m.len + backlog_overhead_bytes; }
}  // namespace

transport_impl::transport_impl(context_impl& c, std::uint64_t s, rank_t r, std::size_t size)
    : ctx(c), io(c.io), opt(c.options), session(s), rank(r), n(size), peers(size) {
  limits.max_message_bytes = opt.max_message_bytes;
  // Any stripe size a sender may be configured with (tcp_context::create allows up to
  // 64 MiB), so peers with different stripe_bytes still interoperate.
  limits.max_stripe_bytes = 64u << 20;
  for (rank_t p = 0; p < n; ++p) {
    if (p == rank) continue;
    for (unsigned k = 0; k < opt.streams; ++k) peers[p].streams.push_back(std::make_unique<stream>(io));
    if (opt.shaper.enabled()) peers[p].shaper.emplace(opt.shaper, (std::uint64_t{rank} << 32) | p);
  }
}

// ---- connection setup (I/O thread) ---------------------------------------------------

void transport_impl::install(rank_t from, unsigned s, tcp::socket&& sock) {
  std::lock_guard lock(mu);
  peer_state& p = peers[from];
  stream& st = *p.streams[s];
  if (closing || p.gone || st.connected) {
    asio::error_code ignored;
    sock.close(ignored);
    return;
  }
  st.sock = std::move(sock);
  st.connected = true;
  ++p.connected;
  ++streams_up;
  read_header(from, s);
  pump(from, s);
  cv.notify_all();
}

void transport_impl::adopt_accepted(socket_ptr sock, const hello& h) {
  asio::error_code ec;
  bool ok = h.session == session && h.to == rank && h.size == n && h.from > rank && h.from < n &&
            h.streams == opt.streams && h.stream < opt.streams;
  if (ok) {
    std::lock_guard lock(mu);
    ok = !closing && !peers[h.from].streams[h.stream]->connected;
  }
  if (!ok) {
    std::fprintf(stderr, "dtrain tcp: rank %u rejected a stream claiming rank %u stream %u of %u (size %u)\n",
                 static_cast<unsigned>(rank), h.from, h.stream, h.streams, h.size);
    sock->close(ec);
    return;
  }
  std::array<std::byte, frame_header_bytes + hello_bytes> ack{};
  encode_hello_frame(h, frame_type::hello_ack, ack);
  asio::write(*sock, asio::buffer(ack), ec);  // 88 bytes into a fresh socket buffer: does not block
  if (ec) {
    sock->close(ec);
    return;
  }
  install(h.from, h.stream, std::move(*sock));
}

void transport_impl::dial(rank_t to, unsigned s, tcp::endpoint ep, deadline by) {
  auto sock = std::make_shared<tcp::socket>(io);
  {
    // Registered so that teardown can close it: a peer that accepted but never answers
    // (e.g. its transport for this session was never created and the stream is parked)
    // would otherwise keep the hello_ack read, and the destructor, waiting forever.
    std::lock_guard lock(mu);
    if (closing) return;
    peers[to].dialing.push_back(sock);
  }
  auto retry = [this, to, s, ep, by, sock] {
    {
      std::lock_guard lock(mu);
      std::erase(peers[to].dialing, sock);
      if (closing || clock::now() >= by) return;
    }
    auto timer = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(50));
    timer->async_wait([this, to, s, ep, by, timer, r = handler_ref(this)](const asio::error_code& ec) {
      if (!ec) dial(to, s, ep, by);
    });
  };
  sock->async_connect(ep, [this, sock, to, s, ep, by, retry, r = handler_ref(this)](const asio::error_code& ec) {
    if (ec) {
      retry();
      return;
    }
    {
      // A dial to a port nobody listens on can connect to itself (TCP simultaneous open
      // from an ephemeral port equal to the target) and would then hold that port.
      asio::error_code le, re;
      if (sock->local_endpoint(le) == sock->remote_endpoint(re) && !le && !re) {
        sock->close(le);
        retry();
        return;
      }
    }
    configure_socket(*sock, opt);
    hello h;
    h.session = session;
    h.from = rank;
    h.to = to;
    h.size = static_cast<std::uint32_t>(n);
    h.stream = s;
    h.streams = opt.streams;
    auto buf = std::make_shared<std::array<std::byte, frame_header_bytes + hello_bytes>>();
    encode_hello_frame(h, frame_type::hello, *buf);
    asio::error_code wec;
    asio::write(*sock, asio::buffer(*buf), wec);
    if (wec) {
      retry();
      return;
    }
    asio::async_read(*sock, asio::buffer(*buf),
                     [this, sock, buf, h, to, s, retry, r2 = handler_ref(this)](const asio::error_code& rec, std::size_t) {
                       if (rec) {
                         retry();
                         return;
                       }
                       auto ack = decode_hello_frame(*buf, frame_type::hello_ack);
                       if (!ack.ok() || !(*ack == h)) {
                         retry();
                         return;
                       }
                       {
                         std::lock_guard lock(mu);
                         std::erase(peers[to].dialing, sock);
                       }
                       install(to, s, std::move(*sock));
                     });
  });
}

// ---- sending (I/O thread, lock held) ---------------------------------------------------

void transport_impl::kick(rank_t p) {
  asio::post(io, [this, p, r = handler_ref(this)] {
    std::lock_guard lock(mu);
    for (unsigned s = 0; s < peers[p].streams.size(); ++s) pump(p, s);
  });
}

void transport_impl::pump(rank_t p, unsigned s) {
  peer_state& ps = peers[p];
  stream& st = *ps.streams[s];
  if (st.writing || st.txq.empty() || ps.gone || !st.connected) return;
  tx_job& j = st.txq.front();
  if (ps.shaper && j.type == frame_type::data && !j.shaped) {
    j.release = ps.shaper->release(clock::now(), j.len + frame_header_bytes);
    j.shaped = true;
  }
  if (j.shaped && j.release > clock::now()) {
    st.writing = true;  // waiting for the shaper
    st.timer.expires_at(j.release);
    st.timer.async_wait([this, p, s, r = handler_ref(this)](const asio::error_code&) {
      std::lock_guard lock(mu);
      peers[p].streams[s]->writing = false;
      pump(p, s);
    });
    return;
  }
  st.inflight = j;
  st.txq.pop_front();
  st.writing = true;
  const tx_job& w = st.inflight;
  if (w.type == frame_type::data) ++ops.at(w.op_id).stripes_started;
  frame_header h;
  h.type = w.type;
  h.stripe_len = w.len;
  h.tag = w.tag;
  h.msg_seq = w.msg_seq;
  h.msg_len = w.msg_len;
  h.offset = w.offset;
  encode_header(h, st.tx_hdr);
  h.checksum = frame_checksum(st.tx_hdr, std::span<const std::byte>(w.src, w.len));
  encode_header(h, st.tx_hdr);
  const std::array<asio::const_buffer, 2> bufs = {asio::buffer(st.tx_hdr), asio::buffer(w.src, w.len)};
  asio::async_write(st.sock, bufs, [this, p, s, r = handler_ref(this)](const asio::error_code& ec, std::size_t) {
    on_written(p, s, ec);
  });
}

void transport_impl::on_written(rank_t p, unsigned s, const asio::error_code& ec) {
  std::lock_guard lock(mu);
  peer_state& ps = peers[p];
  stream& st = *ps.streams[s];
  st.writing = false;
  const tx_job w = st.inflight;
  st.inflight = tx_job{};
  if (w.type == frame_type::data) {
    op_rec& o = ops.at(w.op_id);
    --o.io_refs;
    if (!ec) {
      ++o.stripes_done;
      if (o.stripes_done == o.stripes_total && !o.done) {
        o.done = true;
        o.transferred = o.len;
        ps.sent += o.len;  // stats count completed operations only
      }
    }
  }
  // Also for control frames: leave() waits for its goodbyes to drain.
  cv.notify_all();
  if (ec) {
    peer_gone(p, aborted("connection to " + peer_name(p) + " lost: " + ec.message()));
    return;
  }
  pump(p, s);
}

// ---- receiving (I/O thread) ----------------------------------------------------------

void transport_impl::read_header(rank_t p, unsigned s) {
  stream& st = *peers[p].streams[s];
  st.reading = true;
  asio::async_read(st.sock, asio::buffer(st.rx_hdr), [this, p, s, r = handler_ref(this)](const asio::error_code& ec, std::size_t) {
    on_header(p, s, ec);
  });
}

void transport_impl::on_header(rank_t p, unsigned s, const asio::error_code& ec) {
  std::lock_guard lock(mu);
  stream& st = *peers[p].streams[s];
  st.reading = false;
  if (ec) {
    peer_gone(p, aborted(peer_name(p) + " gone: " + (ec == asio::error::eof ? std::string("connection closed") : ec.message())));
    return;
  }
  auto h = parse_header(st.rx_hdr, limits);
  if (!h.ok()) {
    peer_gone(p, data_loss("protocol error from " + peer_name(p) + ": " + h.status().message()));
    return;
  }
  st.cur = *h;
  switch (h->type) {
    case frame_type::peer_lost:
    case frame_type::goodbye:
    case frame_type::cancel: {
      if (frame_checksum(st.rx_hdr, {}) != h->checksum) {
        peer_gone(p, data_loss("checksum mismatch in a control frame from " + peer_name(p)));
        return;
      }
      if (h->type == frame_type::goodbye) {
        // Nothing more comes on this stream; the peer has left once every stream says so
        // (data on the other streams may still be in flight). A leave is not a crash:
        // it does not break the group.
        peer_state& ps = peers[p];
        if (++ps.goodbyes == ps.streams.size()) peer_gone(p, aborted(peer_name(p) + " left"), false);
        return;
      }
      if (h->type == frame_type::peer_lost) {
        if (h->msg_seq >= n || h->msg_seq == rank) {
          peer_gone(p, data_loss("protocol error from " + peer_name(p) + ": peer_lost names rank " + std::to_string(h->msg_seq)));
          return;
        }
        const auto lost = static_cast<rank_t>(h->msg_seq);
        if (lost != p) peer_gone(lost, aborted(peer_name(lost) + " lost (reported by " + peer_name(p) + ")"));
        read_header(p, s);
        return;
      }
      peer_state& ps = peers[p];
      auto it = ps.inbound.find(h->msg_seq);
      if (it != ps.inbound.end() || h->msg_seq < ps.next_bind || h->msg_seq > ps.next_bind + (1u << 20)) {
        peer_gone(p, data_loss("protocol error from " + peer_name(p) + ": cancel of message " +
                               std::to_string(h->msg_seq) + " that already started or is out of range"));
        return;
      }
      ps.inbound[h->msg_seq].cancelled = true;
      try_bind(p);
      read_header(p, s);
      return;
    }
    case frame_type::hello:
    case frame_type::hello_ack:
      peer_gone(p, data_loss("protocol error from " + peer_name(p) + ": hello on an open stream"));
      return;
    case frame_type::data: break;
  }
  start_payload(p, s);
}

status transport_impl::place_stripe(rank_t p, stream& st) {
  peer_state& ps = peers[p];
  const frame_header& h = st.cur;
  auto it = ps.inbound.find(h.msg_seq);
  if (it == ps.inbound.end()) {
    if (h.msg_seq < ps.next_bind || h.msg_seq > ps.next_bind + (1u << 20))
      return data_loss("stripe of message " + std::to_string(h.msg_seq) + " out of sequence (next " +
                       std::to_string(ps.next_bind) + ")");
    inbound_msg m;
    m.tag = h.tag;
    m.len = h.msg_len;
    ps.inbound.emplace(h.msg_seq, std::move(m));
    try_bind(p);
    it = ps.inbound.find(h.msg_seq);
    DTRAIN_ASSERT(it != ps.inbound.end());  // a message with no bytes yet cannot complete
  } else if (it->second.cancelled || it->second.tag != h.tag || it->second.len != h.msg_len) {
    return data_loss("stripe headers of message " + std::to_string(h.msg_seq) + " disagree");
  }
  inbound_msg& m = it->second;
  if (h.stripe_len > m.len - m.received)
    return data_loss("message " + std::to_string(h.msg_seq) + " receives more bytes than its length");
  st.cur_op = 0;
  if (m.discard) {
    if (st.scratch.size() < h.stripe_len) st.scratch.resize(h.stripe_len);
    st.cur_dst = st.scratch.data();
  } else if (m.op_id != 0 && !m.in_tmp) {
    op_rec& o = ops.at(m.op_id);
    st.cur_dst = o.dst + h.offset;
    ++o.io_refs;
    st.cur_op = m.op_id;
  } else {
    if (!m.in_tmp) {
      // One message is always admitted into an empty backlog (so a message larger than
      // the cap cannot deadlock a blocking send-then-receive exchange); beyond that the
      // cap holds. Memory is taken stripe by stripe as bytes arrive (below).
      if (ps.unexpected_bytes > 0 && ps.unexpected_bytes + backlog_charge(m) > opt.unexpected_cap_bytes) {
        st.paused = true;  // back-pressure: resume() retries when receives drain the backlog
        return ok_status();
      }
      m.in_tmp = true;
      ps.unexpected_bytes += backlog_charge(m);
    }
    m.tmp.emplace_back(h.offset, std::vector<std::byte>(h.stripe_len));
    st.cur_dst = m.tmp.back().second.data();
  }
  return ok_status();
}

void transport_impl::start_payload(rank_t p, unsigned s) {
  stream& st = *peers[p].streams[s];
  if (auto placed = place_stripe(p, st); !placed.ok()) {
    peer_gone(p, data_loss("protocol error from " + peer_name(p) + ": " + placed.message()));
    return;
  }
  if (st.paused) return;
  st.reading = true;
  asio::async_read(st.sock, asio::buffer(st.cur_dst, st.cur.stripe_len),
                   [this, p, s, r = handler_ref(this)](const asio::error_code& ec, std::size_t) { on_payload(p, s, ec); });
}

void transport_impl::on_payload(rank_t p, unsigned s, const asio::error_code& ec) {
  stream* stp = nullptr;
  {
    std::lock_guard lock(mu);
    stp = peers[p].streams[s].get();
    stp->reading = false;
    if (ec) {
      if (stp->cur_op != 0) --ops.at(stp->cur_op).io_refs;
      stp->cur_op = 0;
      peer_gone(p, aborted(peer_name(p) + " gone: " + (ec == asio::error::eof ? std::string("connection closed") : ec.message())));
      cv.notify_all();
      return;
    }
  }
  // The buffer stays ours (io ref held), so the checksum runs without the lock.
  stream& st = *stp;
  const bool good = frame_checksum(st.rx_hdr, std::span<const std::byte>(st.cur_dst, st.cur.stripe_len)) == st.cur.checksum;
  std::lock_guard lock(mu);
  peer_state& ps = peers[p];
  if (st.cur_op != 0) --ops.at(st.cur_op).io_refs;
  st.cur_op = 0;
  if (!good) {
    peer_gone(p, data_loss("checksum mismatch in a stripe from " + peer_name(p) + " (message " +
                           std::to_string(st.cur.msg_seq) + ", offset " + std::to_string(st.cur.offset) + ")"));
    cv.notify_all();
    return;
  }
  auto it = ps.inbound.find(st.cur.msg_seq);
  if (it != ps.inbound.end()) {
    it->second.received += st.cur.stripe_len;
    if (it->second.received == it->second.len) complete(p, st.cur.msg_seq);
  }
  cv.notify_all();
  read_header(p, s);
}

void transport_impl::schedule_resume(rank_t p) {
  bool paused = false;
  for (auto& st : peers[p].streams) paused |= st->paused;
  if (!paused) return;
  // Sockets are only touched on the I/O thread; callers may be user threads.
  asio::post(io, [this, p, r = handler_ref(this)] {
    std::lock_guard lock(mu);
    resume(p);
  });
}

void transport_impl::resume(rank_t p) {
  peer_state& ps = peers[p];
  for (unsigned s = 0; s < ps.streams.size(); ++s) {
    stream& st = *ps.streams[s];
    if (!st.paused || ps.gone) continue;
    st.paused = false;
    start_payload(p, s);
  }
}

// ---- matching (lock held) ------------------------------------------------------------

void transport_impl::try_bind(rank_t p) {
  peer_state& ps = peers[p];
  for (;;) {
    auto it = ps.inbound.find(ps.next_bind);
    if (it == ps.inbound.end()) return;
    const std::uint64_t seq = ps.next_bind++;
    inbound_msg& m = it->second;
    if (m.cancelled) {
      ps.inbound.erase(it);
      continue;
    }
    if (!broken.ok()) {  // nobody will receive on a broken group: drain and drop
      m.discard = true;
      if (m.complete) complete(p, seq);
      continue;
    }
    auto pq = ps.posted.find(m.tag);
    if (pq == ps.posted.end()) {
      ps.unexpected[m.tag].push_back(seq);
      continue;
    }
    const std::uint64_t id = pq->second.front();
    pq->second.pop_front();
    if (pq->second.empty()) ps.posted.erase(pq);
    op_rec& o = ops.at(id);
    if (m.len > o.len) {
      o.done = true;
      o.error = resource_exhausted("tcp: message of " + std::to_string(m.len) + " bytes from " + peer_name(p) +
                                   " exceeds the receive buffer of " + std::to_string(o.len) + " bytes");
      m.discard = true;
      if (m.complete) complete(p, seq);
      continue;
    }
    m.op_id = id;
    o.bound = true;
    o.bound_seq = seq;
    if (m.complete) complete(p, seq);
  }
}

void transport_impl::complete(rank_t p, std::uint64_t seq) {
  peer_state& ps = peers[p];
  auto it = ps.inbound.find(seq);
  DTRAIN_ASSERT(it != ps.inbound.end());
  inbound_msg& m = it->second;
  const bool was_tmp = m.in_tmp;
  if (m.discard) {
    // fall through to erase
  } else if (m.op_id != 0) {
    op_rec& o = ops.at(m.op_id);
    // Offsets were checked against m.len <= o.len when the stripes were placed.
    for (const auto& [off, bytes] : m.tmp)
      if (!bytes.empty()) std::memcpy(o.dst + off, bytes.data(), bytes.size());
    o.done = true;
    o.transferred = m.len;
    ps.received += m.len;  // stats count completed operations only
  } else {
    m.complete = true;  // unexpected: kept until a receive matches it
    return;
  }
  if (was_tmp) ps.unexpected_bytes -= backlog_charge(m);
  ps.inbound.erase(it);
  if (was_tmp) schedule_resume(p);
  cv.notify_all();
}

void transport_impl::cancel_op(std::uint64_t id, op_rec& o, const status& why, bool hard) {
  o.done = true;
  o.error = why;
  peer_state& ps = peers[o.peer];
  if (o.is_send) {
    if (ps.gone) {
      for (auto& st : ps.streams) {
        const auto before = st->txq.size();
        std::erase_if(st->txq, [&](const tx_job& j) { return j.type == frame_type::data && j.op_id == id; });
        o.io_refs -= static_cast<int>(before - st->txq.size());
      }
      return;
    }
    if (o.stripes_started == 0) {
      // Nothing left yet: withdraw the message and tell the receiver its number is skipped.
      for (auto& st : ps.streams) {
        const auto before = st->txq.size();
        std::erase_if(st->txq, [&](const tx_job& j) { return j.type == frame_type::data && j.op_id == id; });
        o.io_refs -= static_cast<int>(before - st->txq.size());
      }
      tx_job c;
      c.type = frame_type::cancel;
      c.msg_seq = o.msg_seq;
      ps.streams[o.msg_seq % ps.streams.size()]->txq.push_back(c);
      kick(o.peer);
    } else if (hard && broken.ok() && o.stripes_done < o.stripes_total) {
      // The peer is not draining (deadline): cut it off, which ends the writes. In a group
      // that is already broken the peer is probably healthy and busy failing too: wait()
      // gives its bytes a grace period instead (see abandon_grace).
      peer_gone(o.peer, aborted("send to " + peer_name(o.peer) + " timed out mid-message; connection closed"));
    }
    // Otherwise the rest of the message keeps going out (the peer is alive and reading);
    // wait() returns once the last stripe has left the buffer.
    return;
  }
  if (!o.bound) {
    auto pq = ps.posted.find(o.tag);
    if (pq != ps.posted.end()) {
      std::erase(pq->second, id);
      if (pq->second.empty()) ps.posted.erase(pq);
    }
    return;
  }
  auto it = ps.inbound.find(o.bound_seq);
  if (it != ps.inbound.end()) {
    it->second.op_id = 0;
    it->second.discard = true;
  }
  if (hard && broken.ok() && o.io_refs > 0 && !ps.gone)
    peer_gone(o.peer, aborted("receive from " + peer_name(o.peer) + " timed out mid-stripe; connection closed"));
}

void transport_impl::peer_gone(rank_t p, status why, bool crash) {
  peer_state& ps = peers[p];
  if (ps.gone) return;
  ps.gone = true;
  ps.why = why;
  for (auto& [id, o] : ops)
    if (o.peer == p && !o.done) cancel_op(id, o, why, false);
  drop_tx(ps);
  ps.posted.clear();
  // Messages that arrived whole before the loss stay receivable; partial ones are dropped.
  for (auto it = ps.unexpected.begin(); it != ps.unexpected.end();) {
    std::erase_if(it->second, [&](std::uint64_t seq) {
      auto m = ps.inbound.find(seq);
      return m == ps.inbound.end() || !m->second.complete;
    });
    it = it->second.empty() ? ps.unexpected.erase(it) : std::next(it);
  }
  asio::post(io, [this, p, r = handler_ref(this)] { close_io(p); });
  if (crash && opt.fail_group_on_peer_loss && !closing && !leaving) {
    if (broken.ok()) broken = aborted("group broken: " + why.message());
    for (auto& [id, o] : ops)
      if (!o.done) cancel_op(id, o, broken, false);
    // Tell the others, so each survivor fails now rather than at its deadline.
    for (rank_t q = 0; q < n; ++q) {
      if (q == rank || peers[q].gone) continue;
      tx_job j;
      j.type = frame_type::peer_lost;
      j.msg_seq = p;
      peers[q].streams[0]->txq.push_back(j);
      kick(q);
    }
  }
  cv.notify_all();
}

void transport_impl::drop_tx(peer_state& ps) {
  // Queued stripes of ops that are already done (a soft cancel lets a started message
  // keep draining) still hold io refs: release them, or wait() would never retire the op.
  for (auto& st : ps.streams) {
    for (const tx_job& j : st->txq)
      if (j.type == frame_type::data) --ops.at(j.op_id).io_refs;
    st->txq.clear();
  }
}

void transport_impl::close_dialing() {
  std::lock_guard lock(mu);
  asio::error_code ignored;
  for (auto& ps : peers) {
    for (auto& sock : ps.dialing) sock->close(ignored);
    ps.dialing.clear();
  }
}

void transport_impl::close_io(rank_t p) {
  std::lock_guard lock(mu);
  peer_state& ps = peers[p];
  asio::error_code ignored;
  for (auto& st : ps.streams) {
    st->sock.shutdown(tcp::socket::shutdown_both, ignored);
    st->sock.close(ignored);
    st->timer.cancel();
    st->paused = false;
  }
  // No read can write into a tmp buffer once its socket is closed. Whole messages in the
  // backlog stay for post_recv.
  for (auto it = ps.inbound.begin(); it != ps.inbound.end();) {
    if (it->second.complete) {
      ++it;
      continue;
    }
    if (it->second.in_tmp) ps.unexpected_bytes -= backlog_charge(it->second);
    it = ps.inbound.erase(it);
  }
}

}  // namespace tcp::detail

// ---- tcp_transport -------------------------------------------------------------------

using tcp::detail::op_rec;
using tcp::detail::transport_impl;

tcp_transport::tcp_transport(std::shared_ptr<transport_impl> impl) noexcept : impl_(std::move(impl)) {}

result<std::unique_ptr<tcp_transport>> tcp_transport::create(tcp::tcp_context& ctx, std::uint64_t session, rank_t rank,
                                                             const std::vector<tcp::address>& peers, deadline connect_by) {
  const std::size_t n = peers.size();
  if (n < 2 || rank >= n) return invalid_argument("tcp_transport: rank " + std::to_string(rank) + " of " + std::to_string(n) + " peers");
  auto& c = ctx.impl();
  // Resolve first so an unusable address fails fast with its name.
  std::vector<tcp::detail::tcp::endpoint> eps(n);
  {
    tcp::detail::tcp::resolver resolver(c.io);
    for (rank_t r = 0; r < rank; ++r) {
      asio::error_code ec;
      auto res = resolver.resolve(peers[r].host, std::to_string(peers[r].port),
                                  tcp::detail::tcp::resolver::numeric_service, ec);
      if (ec || res.empty())
        return invalid_argument("tcp_transport: cannot resolve " + peers[r].to_string() + " (rank " + std::to_string(r) +
                                "): " + ec.message());
      eps[r] = res.begin()->endpoint();
    }
  }
  auto impl = std::make_shared<transport_impl>(c, session, rank, n);
  if (!c.register_session(session, impl))
    return invalid_argument("tcp_transport: session " + std::to_string(session) + " is already in use on this context");
  std::unique_ptr<tcp_transport> t(new tcp_transport(impl));
  asio::post(c.io, [impl = impl.get(), eps, rank, connect_by, r = tcp::detail::handler_ref(impl.get())] {
    for (rank_t to = 0; to < rank; ++to)
      for (unsigned s = 0; s < impl->opt.streams; ++s) impl->dial(to, s, eps[to], connect_by);
  });
  const std::size_t want = (n - 1) * c.options.streams;
  std::unique_lock lock(impl->mu);
  impl->cv.wait_until(lock, connect_by, [&] { return impl->streams_up == want; });
  if (impl->streams_up != want) {
    std::string missing;
    for (rank_t r = 0; r < n; ++r)
      if (r != rank && impl->peers[r].connected != c.options.streams) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
    lock.unlock();
    return unavailable("tcp_transport: rank " + std::to_string(rank) + " could not connect to rank(s) " + missing +
                       " by the deadline (session " + std::to_string(session) + ")");
  }
  return t;
}

tcp_transport::~tcp_transport() {
  leave();
  transport_impl& t = *impl_;
  {
    std::lock_guard lock(t.mu);
    t.closing = true;
    for (rank_t p = 0; p < t.n; ++p)
      if (p != t.rank) t.peer_gone(p, aborted("transport closed"));
  }
  t.ctx.unregister_session(t.session);
  asio::post(t.io, [impl = &t, r = tcp::detail::handler_ref(&t)] { impl->close_dialing(); });
  std::unique_lock lock(t.mu);
  t.cv.wait(lock, [&] { return t.pending.load() == 0; });
}

rank_t tcp_transport::rank() const noexcept { return impl_->rank; }
std::size_t tcp_transport::size() const noexcept { return impl_->n; }

result<op> tcp_transport::post_send(rank_t to, tag_t tag, std::span<const std::byte> data) {
  transport_impl& t = *impl_;
  if (to >= t.n || to == t.rank)
    return invalid_argument("tcp: bad destination " + std::to_string(to) + " for rank " + std::to_string(t.rank));
  if (data.size() > t.opt.max_message_bytes)
    return invalid_argument("tcp: message of " + std::to_string(data.size()) + " bytes exceeds max_message_bytes " +
                            std::to_string(t.opt.max_message_bytes));
  std::unique_lock lock(t.mu);
  if (t.is_aborted) return aborted("transport aborted on rank " + std::to_string(t.rank));
  if (!t.broken.ok()) return t.broken;
  auto& ps = t.peers[to];
  if (ps.gone) return ps.why;
  const std::uint64_t id = t.next_id++;
  op_rec& o = t.ops[id];
  o.is_send = true;
  o.peer = to;
  o.tag = tag;
  o.src = data.data();
  o.len = data.size();
  o.msg_seq = ps.next_send_seq++;
  const std::uint64_t stripe = t.opt.stripe_bytes;
  const std::uint64_t count = data.empty() ? 1 : (data.size() + stripe - 1) / stripe;
  for (std::uint64_t k = 0; k < count; ++k) {
    tcp::detail::tx_job j;
    j.op_id = id;
    j.tag = tag;
    j.msg_seq = o.msg_seq;
    j.msg_len = data.size();
    j.offset = k * stripe;
    j.len = static_cast<std::uint32_t>(std::min<std::uint64_t>(stripe, data.size() - j.offset));
    j.src = data.data() + j.offset;
    ps.streams[(o.msg_seq + k) % ps.streams.size()]->txq.push_back(j);
  }
  o.stripes_total = static_cast<std::uint32_t>(count);
  o.io_refs = static_cast<int>(count);
  t.kick(to);
  return op{id};
}

result<op> tcp_transport::post_recv(rank_t from, tag_t tag, std::span<std::byte> buf) {
  transport_impl& t = *impl_;
  if (from >= t.n || from == t.rank)
    return invalid_argument("tcp: bad source " + std::to_string(from) + " for rank " + std::to_string(t.rank));
  std::lock_guard lock(t.mu);
  if (t.is_aborted) return aborted("transport aborted on rank " + std::to_string(t.rank));
  if (!t.broken.ok()) return t.broken;
  auto& ps = t.peers[from];
  if (ps.gone && !ps.unexpected.contains(tag)) return ps.why;
  const std::uint64_t id = t.next_id++;
  op_rec& o = t.ops[id];
  o.peer = from;
  o.tag = tag;
  o.dst = buf.data();
  o.len = buf.size();
  auto uq = ps.unexpected.find(tag);
  if (uq == ps.unexpected.end()) {
    ps.posted[tag].push_back(id);
    return op{id};
  }
  const std::uint64_t seq = uq->second.front();
  uq->second.pop_front();
  if (uq->second.empty()) ps.unexpected.erase(uq);
  auto& m = ps.inbound.at(seq);
  if (m.len > o.len) {
    o.done = true;
    o.error = resource_exhausted("tcp: message of " + std::to_string(m.len) + " bytes from rank " + std::to_string(from) +
                                 " exceeds the receive buffer of " + std::to_string(o.len) + " bytes");
    m.discard = true;
    if (m.complete) t.complete(from, seq);
    return op{id};
  }
  m.op_id = id;
  o.bound = true;
  o.bound_seq = seq;
  if (m.complete) {
    t.complete(from, seq);  // copies out of the backlog and may resume paused streams
  } else {
    t.schedule_resume(from);  // a paused stream may now read straight into `buf`
  }
  return op{id};
}

result<std::size_t> tcp_transport::wait(op handle, deadline d) {
  transport_impl& t = *impl_;
  std::unique_lock lock(t.mu);
  for (;;) {
    // Looked up afresh after every sleep: an iterator kept across the wait could be
    // invalidated by a rehash (other threads post ops), and a second, erroneous wait() on the
    // same op from another thread may have retired it meanwhile.
    auto it = t.ops.find(handle.id);
    if (it == t.ops.end()) return invalid_argument("tcp: op " + std::to_string(handle.id) + " is not pending");
    op_rec& o = it->second;
    if (o.done && o.io_refs == 0) {
      result<std::size_t> out = o.error.ok() ? result<std::size_t>(o.transferred) : result<std::size_t>(o.error);
      t.ops.erase(it);
      return out;
    }
    const bool past = clock::now() >= d;
    if (!o.done) {
      if (past) {
        t.cancel_op(handle.id, o, status(status_code::deadline_exceeded, std::string("tcp: ") + (o.is_send ? "send to" : "receive from") +
                                                               " rank " + std::to_string(o.peer) + " timed out"),
                    true);
        continue;
      }
    } else if (past && !o.close_requested) {
      // Done (failed, or abandoned by a caller that passed an expired deadline) while I/O
      // still holds the buffer. The peer is usually healthy and mid-stripe: give its bytes
      // a grace period, then cut the connection so the I/O lets go. A local close, not a
      // crash: it does not announce the peer as lost to the others.
      const auto now = clock::now();
      if (o.abandoned_at == clock::time_point{}) o.abandoned_at = now;
      if (now - o.abandoned_at >= tcp::detail::kAbandonGrace) {
        o.close_requested = true;
        t.peer_gone(o.peer, aborted("operation with rank " + std::to_string(o.peer) + " abandoned mid-transfer; connection closed"),
                    false);
        continue;
      }
      t.cv.wait_until(lock, o.abandoned_at + tcp::detail::kAbandonGrace);
      continue;
    }
    if (d == deadline::max() || past)
      t.cv.wait(lock);
    else
      t.cv.wait_until(lock, d);
  }
}

void tcp_transport::abort() noexcept {
  transport_impl& t = *impl_;
  std::lock_guard lock(t.mu);
  t.is_aborted = true;
  for (auto& [id, o] : t.ops)
    if (!o.done) t.cancel_op(id, o, aborted("transport aborted on rank " + std::to_string(t.rank)), false);
  t.cv.notify_all();
}

void tcp_transport::reset() noexcept {
  std::lock_guard lock(impl_->mu);
  impl_->is_aborted = false;
}

transport_stats tcp_transport::stats() const {
  const transport_impl& t = *impl_;
  std::lock_guard lock(t.mu);
  transport_stats s;
  s.sent.resize(t.n);
  s.received.resize(t.n);
  for (rank_t p = 0; p < t.n; ++p) {
    s.sent[p] = t.peers[p].sent;
    s.received[p] = t.peers[p].received;
  }
  return s;
}

void tcp_transport::leave() noexcept {
  transport_impl& t = *impl_;
  {
    std::lock_guard lock(t.mu);
    if (t.closing) return;
    // Peers close their side once our goodbyes arrive: those EOFs are not crashes and must
    // not break the group or send peer_lost frames on our way out.
    t.leaving = true;
    for (rank_t p = 0; p < t.n; ++p) {
      if (p == t.rank || t.peers[p].gone) continue;
      for (auto& st : t.peers[p].streams) {
        if (!st->connected) continue;  // a failed create(): nothing to say goodbye on, nor to wait for
        tcp::detail::tx_job g;
        g.type = tcp::frame_type::goodbye;
        st->txq.push_back(g);
      }
      t.kick(p);
    }
  }
  std::unique_lock lock(t.mu);
  t.cv.wait_for(lock, std::chrono::seconds(1), [&] {
    for (rank_t p = 0; p < t.n; ++p) {
      if (p == t.rank || t.peers[p].gone) continue;
      for (auto& st : t.peers[p].streams)
        if (st->connected && (!st->txq.empty() || st->writing)) return false;
    }
    return true;
  });
  t.closing = true;  // our own leave is not a crash either
  for (rank_t p = 0; p < t.n; ++p)
    if (p != t.rank) t.peer_gone(p, aborted("this rank left"), false);
}

void tcp_transport::drop_connections() noexcept {
  transport_impl& t = *impl_;
  std::lock_guard lock(t.mu);
  t.closing = true;
  for (rank_t p = 0; p < t.n; ++p)
    if (p != t.rank) t.peer_gone(p, aborted("connections dropped"), false);
}

bool tcp_transport::peer_alive(rank_t r) const noexcept {
  std::lock_guard lock(impl_->mu);
  return r < impl_->n && r != impl_->rank && !impl_->peers[r].gone;
}

}  // namespace dtrain::net
