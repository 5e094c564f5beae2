// tests/net/tcp_test_util.h: a TCP group inside one test process: one tcp_context (own
// I/O thread and listener on 127.0.0.1) per rank, transports created concurrently.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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

}  // namespace dtrain::net::test
