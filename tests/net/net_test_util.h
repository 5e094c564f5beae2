// tests/net/net_test_util.h: helpers for multi-peer tests: run n peers as threads over an
// inproc_fabric, a transport that crashes its peer after a number of sends, and the
// Gloo exact-sum fixture.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/net/averager.h"
#include "dtrain/net/transport_inproc.h"

namespace dtrain::net::test {

/// Runs fn(rank, transport&) for every rank of `f`, each on its own thread, and joins
/// them all. Catch2 v2 assertions are not thread-safe: have fn record what it sees per
/// rank and check after run_peers() returns.
template <class Fn>
void run_peers(inproc_fabric& f, Fn&& fn) {
  std::vector<std::thread> threads;
  threads.reserve(f.size());
  for (std::size_t r = 0; r < f.size(); ++r)
    threads.emplace_back([&f, &fn, r] {
      const auto rank = static_cast<rank_t>(r);
      fn(rank, static_cast<transport&>(f.endpoint(rank)));
    });
  for (auto& t : threads) t.join();
}

/// Runs fn(rank, transport&) for n peers of a fresh inproc_fabric(n).
template <class Fn>
void run_peers(std::size_t n, Fn&& fn) {
  inproc_fabric f(n);
  run_peers(f, std::forward<Fn>(fn));
}

/// Forwards to the fabric endpoint of `rank`; the post_send() call number `crash_at`
/// (0-based) kills `rank` on the fabric instead of sending: a peer crashing mid-run. That
/// call and everything after it fail with aborted, and the peers see the rank gone.
class crashing_transport final : public transport {
 public:
  crashing_transport(inproc_fabric& f, rank_t rank, std::size_t crash_at)
      : fabric_(f), inner_(f.endpoint(rank)), crash_at_(crash_at) {}

  rank_t rank() const noexcept override { return inner_.rank(); }
  std::size_t size() const noexcept override { return inner_.size(); }
  result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override {
    if (sends_++ == crash_at_) fabric_.kill(inner_.rank());
    return inner_.post_send(to, tag, data);
  }
  result<op> post_recv(rank_t from, tag_t tag, std::span<std::byte> buf) override {
    return inner_.post_recv(from, tag, buf);
  }
  result<std::size_t> wait(op o, deadline d) override { return inner_.wait(o, d); }
  void abort() noexcept override { inner_.abort(); }
  void reset() noexcept override { inner_.reset(); }
  transport_stats stats() const override { return inner_.stats(); }

 private:
  inproc_fabric& fabric_;
  transport& inner_;
  std::size_t crash_at_;
  std::size_t sends_ = 0;
};

/// Gloo's exact-sum fixture (gloo/test/allreduce_test.cc) with one buffer per rank:
/// rank r holds v[i] = i * n + r. Every partial sum is an integer below 2^24 when
/// count * n * n < 2^24, so fp32 sums are exact in any order.
inline std::vector<float> exact_sum_input(std::size_t n, std::size_t rank, std::size_t count) {
  std::vector<float> v(count);
  for (std::size_t i = 0; i < count; ++i) v[i] = static_cast<float>(i * n + rank);
  return v;
}

/// fl(exact_sum / n) of the fixture at index i: sum_r (i n + r) = i n^2 + n(n-1)/2.
inline float exact_sum_mean(std::size_t n, std::size_t i) {
  const double sum = static_cast<double>(i * n * n + n * (n - 1) / 2);
  return static_cast<float>(sum) / static_cast<float>(n);
}

/// What one peer saw in average_on_peers().
struct peer_outcome {
  dtrain::status st;            ///< create() error, else average()'s status
  std::vector<float> data;      ///< the data after the call
  std::vector<float> residual;  ///< the residual after the call (empty if not asked for)
  average_report report;        ///< last_report() after the call
};

/// Creates one averager per peer with make(rank, transport&) (returning
/// result<unique_ptr<A>> for some averager A), runs average(inputs[rank], round,
/// residual) on every peer at once, and returns what each peer saw. A residual buffer is
/// passed (prefilled with `residual_fill`) when want_residual is set.
template <class Make>
std::vector<peer_outcome> average_on_peers(inproc_fabric& f, Make&& make, const std::vector<std::vector<float>>& inputs,
                                           bool want_residual = false, std::uint64_t round = 0,
                                           float residual_fill = -7.0f) {
  std::vector<peer_outcome> out(f.size());
  run_peers(f, [&](rank_t r, transport& t) {
    peer_outcome& o = out[r];
    o.data = inputs[r];
    if (want_residual) o.residual.assign(o.data.size(), residual_fill);
    auto a = make(r, t);
    if (!a.ok()) {
      o.st = a.status();
      return;
    }
    o.st = (*a)->average(o.data, round, o.residual);
    o.report = (*a)->last_report();
  });
  return out;
}

template <class Make>
std::vector<peer_outcome> average_on_peers(std::size_t n, Make&& make, const std::vector<std::vector<float>>& inputs,
                                           bool want_residual = false, std::uint64_t round = 0) {
  inproc_fabric f(n);
  return average_on_peers(f, std::forward<Make>(make), inputs, want_residual, round);
}

}  // namespace dtrain::net::test
