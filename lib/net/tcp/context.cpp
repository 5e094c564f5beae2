// tcp_context: the I/O thread and the shared listener; routes accepted streams to the
// transport that owns their session.
#include "dtrain/net/tcp/context.h"

#include <cstdio>

#include "tcp_detail.h"

namespace dtrain::net::tcp {
namespace detail {

void configure_socket(tcp::socket& s, const tcp_options& o) noexcept {
  asio::error_code ec;
  s.set_option(tcp::no_delay(true), ec);
  s.set_option(asio::socket_base::keep_alive(true), ec);
  if (o.socket_buffer_bytes > 0) {
    s.set_option(asio::socket_base::send_buffer_size(o.socket_buffer_bytes), ec);
    s.set_option(asio::socket_base::receive_buffer_size(o.socket_buffer_bytes), ec);
  }
}

void encode_hello_frame(const hello& h, frame_type type,
                        std::span<std::byte, frame_header_bytes + hello_bytes> out) noexcept {
  auto head = out.first<frame_header_bytes>();
  auto body = out.last<hello_bytes>();
  encode_hello(h, body);
  frame_header fh;
  fh.type = type;
  fh.stripe_len = hello_bytes;
  encode_header(fh, head);
  fh.checksum = frame_checksum(head, body);
  encode_header(fh, head);
}

result<hello> decode_hello_frame(std::span<const std::byte> frame, frame_type expected) {
  if (frame.size() != frame_header_bytes + hello_bytes) return data_loss("tcp hello: short frame");
  auto fh = parse_frame(frame.first(frame_header_bytes), frame.subspan(frame_header_bytes));
  if (!fh.ok()) return fh.status();
  if (fh->type != expected) return data_loss("tcp hello: unexpected frame type");
  return parse_hello(frame.subspan(frame_header_bytes));
}

void context_impl::start_accept() {
  acceptor.async_accept([this, r = handler_ref(this)](const asio::error_code& ec, tcp::socket sock) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) on_accepted(std::move(sock));
    start_accept();
  });
}

void context_impl::on_accepted(tcp::socket sock) {
  configure_socket(sock, options);
  auto hs = std::make_shared<handshake>(io);
  hs->sock = std::move(sock);
  {
    std::lock_guard lock(mu);
    if (closing) return;
    handshakes.push_back(hs);
  }
  // The dialler speaks first; give it hello_timeout to do so.
  hs->timer.expires_after(options.hello_timeout);
  hs->timer.async_wait([hs, r = handler_ref(this)](const asio::error_code& ec) {
    if (!ec) {
      asio::error_code ignored;
      hs->sock.close(ignored);
    }
  });
  asio::async_read(hs->sock, asio::buffer(hs->buf), [this, hs, r = handler_ref(this)](const asio::error_code& ec, std::size_t) {
    hs->timer.cancel();
    {
      std::lock_guard lock(mu);
      std::erase(handshakes, hs);
    }
    if (ec) return;
    auto h = decode_hello_frame(hs->buf, frame_type::hello);
    if (!h.ok()) {
      asio::error_code ignored;
      const auto remote = hs->sock.remote_endpoint(ignored);
      std::fprintf(stderr, "dtrain tcp: rejected a connection from %s:%u: %s\n", remote.address().to_string().c_str(),
                   static_cast<unsigned>(remote.port()), h.status().to_string().c_str());
      hs->sock.close(ignored);
      return;
    }
    route(std::make_shared<tcp::socket>(std::move(hs->sock)), *h);
  });
}

void context_impl::route(socket_ptr sock, const hello& h) {
  std::shared_ptr<transport_impl> t;
  {
    std::lock_guard lock(mu);
    auto it = sessions.find(h.session);
    if (it != sessions.end()) t = it->second.lock();
    if (!t) {
      const auto now = std::chrono::steady_clock::now();
      std::erase_if(parked, [&](const parked_stream& p) { return p.expires < now || !p.sock->is_open(); });
      if (parked.size() >= 1024) {
        asio::error_code ignored;
        parked.front().sock->close(ignored);
        parked.erase(parked.begin());
      }
      parked.push_back({sock, h, now + std::chrono::seconds(30)});
      return;
    }
  }
  t->adopt_accepted(std::move(sock), h);
}

bool context_impl::register_session(std::uint64_t session, const std::shared_ptr<transport_impl>& t) {
  std::vector<parked_stream> mine;
  {
    std::lock_guard lock(mu);
    auto it = sessions.find(session);
    if (it != sessions.end() && !it->second.expired()) return false;
    sessions[session] = t;
    for (auto p = parked.begin(); p != parked.end();) {
      if (p->h.session == session) {
        mine.push_back(std::move(*p));
        p = parked.erase(p);
      } else {
        ++p;
      }
    }
  }
  // The handler_ref makes the transport's teardown wait for this hand-over too.
  if (!mine.empty())
    asio::post(io, [t, mine = std::move(mine), r = handler_ref(t.get())] {
      for (const auto& p : mine) t->adopt_accepted(p.sock, p.h);
    });
  return true;
}

void context_impl::unregister_session(std::uint64_t session) {
  std::lock_guard lock(mu);
  sessions.erase(session);
}

}  // namespace detail

tcp_context::tcp_context(std::unique_ptr<detail::context_impl> impl) noexcept : impl_(std::move(impl)) {}

result<std::unique_ptr<tcp_context>> tcp_context::create(const address& listen, const tcp_options& options) {
  if (options.streams == 0 || options.streams > 64) return invalid_argument("tcp: streams must be 1..64");
  if (options.stripe_bytes < 4096 || options.stripe_bytes > (64u << 20))
    return invalid_argument("tcp: stripe_bytes must be 4 KiB..64 MiB");
  auto impl = std::make_unique<detail::context_impl>(options);
  asio::error_code ec;
  detail::tcp::resolver resolver(impl->io);
  auto results = resolver.resolve(listen.host, std::to_string(listen.port),
                                  detail::tcp::resolver::passive | detail::tcp::resolver::numeric_service, ec);
  if (ec || results.empty())
    return invalid_argument("tcp: cannot resolve listen address " + listen.to_string() + ": " + ec.message());
  const detail::tcp::endpoint ep = results.begin()->endpoint();
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return unavailable("tcp: cannot listen on " + listen.to_string() + ": " + ec.message());
  const auto bound = impl->acceptor.local_endpoint(ec);
  if (ec) return unavailable("tcp: local_endpoint: " + ec.message());
  std::string host = listen.host;
  if (bound.address().is_unspecified()) host = bound.address().is_v6() ? "::1" : "127.0.0.1";
  impl->advertised = address{host, bound.port()};
  impl->work.emplace(impl->io.get_executor());
  impl->start_accept();
  impl->thread = std::thread([io = &impl->io] { io->run(); });
  return std::unique_ptr<tcp_context>(new tcp_context(std::move(impl)));
}

tcp_context::~tcp_context() {
  auto* impl = impl_.get();
  asio::post(impl->io, [impl] {
    asio::error_code ignored;
    impl->acceptor.close(ignored);
    std::lock_guard lock(impl->mu);
    impl->closing = true;
    for (auto& hs : impl->handshakes) {
      hs->sock.close(ignored);
      hs->timer.cancel();
    }
    for (auto& p : impl->parked) p.sock->close(ignored);
    impl->parked.clear();
  });
  {
    // Every handler holds a handler_ref: once they have all run nothing points here.
    std::unique_lock lock(impl->mu);
    impl->cv.wait(lock, [&] { return impl->pending.load() == 0 && impl->closing; });
  }
  impl->work.reset();
  impl->io.stop();
  if (impl->thread.joinable()) impl->thread.join();
}

address tcp_context::advertised_address() const { return impl_->advertised; }
const tcp_options& tcp_context::options() const noexcept { return impl_->options; }

}  // namespace dtrain::net::tcp
