// tests/net/tcp_test_util.h: a TCP group inside one test process: one tcp_context (own
// I/O thread and listener on 127.0.0.1) per rank, transports created concurrently; a
// hand-driven raw peer for protocol tests; a guard that turns a hang into a failure.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "dtrain/net/tcp/frame.h"
#include "dtrain/net/transport_tcp.h"

namespace dtrain::net::test {

struct tcp_group {
  std::vector<std::unique_ptr<tcp::tcp_context>> contexts;
  std::vector<std::unique_ptr<tcp_transport>> transports;
  std::vector<tcp::address> addresses;
  std::string error;  // empty when every rank connected

  transport& at(std::size_t r) { return *transports[r]; }
  std::size_t size() const { return transports.size(); }
  /// Destroys the transports, then the contexts (the required order).
  void close() {
    transports.clear();
    contexts.clear();
  }
  ~tcp_group() { close(); }
};

inline std::unique_ptr<tcp_group> make_tcp_group(std::size_t n, const tcp::tcp_options& o = {},
                                                 std::uint64_t session = 42, const std::string& host = "127.0.0.1") {
  auto g = std::make_unique<tcp_group>();
  for (std::size_t r = 0; r < n; ++r) {
    auto c = tcp::tcp_context::create(tcp::address{host, 0}, o);
    if (!c.ok()) {
      g->error = c.status().to_string();
      return g;
    }
    g->addresses.push_back((*c)->advertised_address());
    g->contexts.push_back(std::move(*c));
  }
  g->transports.resize(n);
  std::vector<std::string> errors(n);
  std::vector<std::thread> threads;
  for (std::size_t r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      auto t = tcp_transport::create(*g->contexts[r], session, static_cast<rank_t>(r), g->addresses,
                                     after(std::chrono::seconds(10)));
      if (t.ok())
        g->transports[r] = std::move(*t);
      else
        errors[r] = t.status().to_string();
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (!e.empty()) g->error += e + "; ";
  return g;
}

/// Runs fn(rank, transport&) for every rank of g on its own thread.
template <class Fn>
void run_tcp_peers(tcp_group& g, Fn&& fn) {
  std::vector<std::thread> threads;
  for (std::size_t r = 0; r < g.size(); ++r)
    threads.emplace_back([&g, &fn, r] { fn(static_cast<rank_t>(r), g.at(r)); });
  for (auto& t : threads) t.join();
}

/// Runs fn() and returns its result; if it is still running after `limit` (a hang: the bug
/// a test guards against), prints `what` and ends the process with a failure, since a hung
/// call cannot be unwound.
template <class Fn>
auto finishes_within(std::chrono::seconds limit, const char* what, Fn&& fn) {
  auto fut = std::async(std::launch::async, std::forward<Fn>(fn));
  if (fut.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "FAILED: %s still blocked after %lld s (hang)\n", what, static_cast<long long>(limit.count()));
    std::fflush(stderr);
    std::_Exit(1);
  }
  return fut.get();
}

/// A peer driven by hand over a plain socket (IPv4 loopback): it dials a listener, speaks
/// the hello itself and then writes whatever frames a test wants, valid or not.
struct raw_peer {
  int fd = -1;
  raw_peer() = default;
  raw_peer(const raw_peer&) = delete;
  raw_peer& operator=(const raw_peer&) = delete;
  ~raw_peer() { close(); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }

  bool connect(std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    return fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  }
  bool write_all(std::span<const std::byte> b) {
    while (!b.empty()) {
      const ssize_t k = ::write(fd, b.data(), b.size());
      if (k <= 0) return false;
      b = b.subspan(static_cast<std::size_t>(k));
    }
    return true;
  }
  bool read_all(std::span<std::byte> b) {
    while (!b.empty()) {
      const ssize_t k = ::read(fd, b.data(), b.size());
      if (k <= 0) return false;
      b = b.subspan(static_cast<std::size_t>(k));
    }
    return true;
  }
  /// Writes header `h` (checksum computed over it and `payload` unless `corrupt`) and payload.
  bool send_frame(tcp::frame_header h, std::span<const std::byte> payload, bool corrupt = false) {
    std::array<std::byte, tcp::frame_header_bytes> head{};
    h.checksum = 0;
    tcp::encode_header(h, head);
    h.checksum = tcp::frame_checksum(head, payload) ^ (corrupt ? 1u : 0u);
    tcp::encode_header(h, head);
    return write_all(head) && write_all(payload);
  }
  /// Sends the hello for `h` and reads the hello_ack; true when the listener accepted.
  bool handshake(const tcp::hello& h) {
    std::array<std::byte, tcp::hello_bytes> body{};
    tcp::encode_hello(h, body);
    tcp::frame_header fh;
    fh.type = tcp::frame_type::hello;
    fh.stripe_len = tcp::hello_bytes;
    if (!send_frame(fh, body)) return false;
    std::array<std::byte, tcp::frame_header_bytes + tcp::hello_bytes> ack{};
    if (!read_all(ack)) return false;
    auto ah = tcp::parse_header(std::span<const std::byte>(ack).first(tcp::frame_header_bytes));
    return ah.ok() && ah->type == tcp::frame_type::hello_ack;
  }
};

}  // namespace dtrain::net::test
