// Helpers for the membership tests: fast timing settings, captured logs, seeded
// identities and running blocking calls on several threads at once.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dtrain/membership/coordinator.h"
#include "dtrain/membership/peer_client.h"

namespace dtrain::membership::testing {

using namespace std::chrono_literals;

inline constexpr auto hb = 50ms;             // heartbeat interval in the tests
inline constexpr auto fd = 300ms;            // failure deadline
inline constexpr auto grace = 200ms;         // rejoin grace after a restart
inline constexpr auto long_wait = 5000ms;    // an upper bound nothing correct gets near

/// Collects log lines from any thread.
struct log_sink {
  mutable std::mutex m;
  std::vector<std::string> lines;
  log_fn fn() {
    return [this](std::string_view s) {
      std::lock_guard lk(m);
      lines.emplace_back(s);
    };
  }
  std::size_t count(const std::string& needle) const {
    std::lock_guard lk(m);
    std::size_t n = 0;
    for (const auto& l : lines) n += l.find(needle) != std::string::npos;
    return n;
  }
  std::string all() const {
    std::lock_guard lk(m);
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
  }
};

inline identity seeded(std::uint8_t base) {
  std::vector<std::byte> seed(32);
  for (std::size_t i = 0; i < 32; ++i) seed[i] = static_cast<std::byte>(base * 37 + i);
  return identity::from_seed(seed).value();
}

inline coordinator_options fast_coordinator(log_sink& log, std::size_t min_peers = 1) {
  coordinator_options o;
  o.heartbeat_interval = hb;
  o.failure_deadline = fd;
  o.rejoin_grace = grace;
  o.min_peers = min_peers;
  o.logger = log.fn();
  return o;
}

inline client_options fast_client(const coordinator& c, std::uint16_t data_port, log_sink& log,
                                   std::uint32_t group = 0) {
  client_options o;
  o.coordinator = c.address();
  o.coordinator_id = c.id();
  o.data_address = {"127.0.0.1", data_port};
  o.group = group;
  o.heartbeat_interval = hb;
  o.max_backoff = hb;
  o.logger = log.fn();
  return o;
}

/// Runs fn(0..n-1) on n threads and returns the results in index order.
template <class F>
auto in_parallel(std::size_t n, F fn) {
  using R = decltype(fn(std::size_t{0}));
  std::vector<std::optional<R>> out(n);
  std::vector<std::thread> ts;
  for (std::size_t i = 0; i < n; ++i) ts.emplace_back([&, i] { out[i].emplace(fn(i)); });
  for (auto& t : ts) t.join();
  std::vector<R> r;
  for (auto& o : out) r.push_back(std::move(*o));
  return r;
}

/// Polls `pred` every 5 ms until it holds or `limit` passes; returns its last value.
inline bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = long_wait) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

}  // namespace dtrain::membership::testing
