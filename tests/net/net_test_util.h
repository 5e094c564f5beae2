// tests/net/net_test_util.h: helpers for multi-peer tests: run n peers as threads over an
// inproc_fabric, a transport that crashes its peer after a number of sends, the Gloo
// exact-sum fixture, noisy inputs with their exact weighted mean, and the checks the
// collectives' tests share.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/core/status.h"
#include "dtrain/net/averager.h"
#include "dtrain/net/collective_options.h"
#include "dtrain/net/transport_forward.h"
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
class crashing_transport final : public forwarding_transport {
 public:
  crashing_transport(inproc_fabric& f, rank_t rank, std::size_t crash_at)
      : forwarding_transport(f.endpoint(rank)), fabric_(f), crash_at_(crash_at) {}

  result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override {
    if (sends_++ == crash_at_) fabric_.kill(rank());
    return forwarding_transport::post_send(to, tag, data);
  }

 private:
  inproc_fabric& fabric_;
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

/// The fixture for all n ranks: x[r] = exact_sum_input(n, r, count).
inline std::vector<std::vector<float>> exact_sum_inputs(std::size_t n, std::size_t count) {
  std::vector<std::vector<float>> x;
  for (std::size_t r = 0; r < n; ++r) x.push_back(exact_sum_input(n, r, count));
  return x;
}

/// x_r = base + 0.25 * noise_r (standard normals from counter_rng(seed, 1000) and
/// counter_rng(seed, r)): peers agree roughly, as pseudo-gradients do.
inline std::vector<std::vector<float>> noisy_inputs(std::size_t n, std::size_t count, std::uint64_t seed) {
  std::vector<float> base(count);
  counter_rng b(seed, 1000);
  for (auto& v : base) v = b.next_normal();
  std::vector<std::vector<float>> x(n, base);
  for (std::size_t r = 0; r < n; ++r) {
    counter_rng g(seed, r);
    for (auto& v : x[r]) v += 0.25f * g.next_normal();
  }
  return x;
}

/// The weighted mean sum_r w_r x_r / sum_r w_r, in double.
inline std::vector<double> exact_mean(const std::vector<std::vector<float>>& x, const std::vector<float>& w) {
  std::vector<double> m(x[0].size(), 0.0);
  double W = 0;
  for (std::size_t r = 0; r < x.size(); ++r) {
    W += w[r];
    for (std::size_t i = 0; i < m.size(); ++i) m[i] += static_cast<double>(w[r]) * x[r][i];
  }
  for (auto& v : m) v /= W;
  return m;
}

/// RMS of y - m (0 for empty y).
inline double rms_error(const std::vector<float>& y, const std::vector<double>& m) {
  double s = 0;
  for (std::size_t i = 0; i < y.size(); ++i) s += (y[i] - m[i]) * (y[i] - m[i]);
  return y.empty() ? 0.0 : std::sqrt(s / static_cast<double>(y.size()));
}

/// Same length and the same bits (so +0 != -0 and equal NaNs match).
inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

/// Options with `codec`, `weight` and a 10 s timeout; everything else default.
inline collective_options opts(std::string codec, float weight = 1.0f) {
  collective_options o;
  o.codec = std::move(codec);
  o.weight = weight;
  o.timeout = std::chrono::seconds(10);
  return o;
}

/// REQUIREs every status ok, naming the first rank that is not.
inline void require_all_ok(const std::vector<status>& st) {
  for (std::size_t r = 0; r < st.size(); ++r) {
    CAPTURE(r, st[r].to_string());
    REQUIRE(st[r].ok());
  }
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

/// REQUIREs every peer's status ok, naming the first rank that is not.
inline void check_all_ok(const std::vector<peer_outcome>& out) {
  for (std::size_t r = 0; r < out.size(); ++r) {
    CAPTURE(r, out[r].st.to_string());
    REQUIRE(out[r].st.ok());
  }
}

/// The identity run of the exact-sum grid: every peer ok, every value fl(exact_sum / n)
/// (counted, so a wrong grid fails once, not count times) and a report of n contributors,
/// none dropped, weight sum n.
inline void check_exact_sum_result(const std::vector<peer_outcome>& out, std::size_t n, std::size_t count) {
  check_all_ok(out);
  for (std::size_t r = 0; r < n; ++r) {
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < count; ++i) wrong += out[r].data[i] != exact_sum_mean(n, i);
    CAPTURE(r);
    CHECK(wrong == 0);
    CHECK(out[r].report.contributors == n);
    CHECK(out[r].report.dropped == 0);
    CHECK(out[r].report.weight_sum == static_cast<double>(n));
  }
}

/// Largest |data[i] - exact_sum_mean(n, i)| / ((i n + n) * factor) over the exact-sum grid
/// (i n + n bounds the inputs at index i), for rounding bounds relative to the inputs.
inline double worst_exact_sum_error(const std::vector<float>& data, std::size_t n, double factor = 1.0) {
  double worst = 0;
  for (std::size_t i = 0; i < data.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(data[i]) - exact_sum_mean(n, i)) /
                                (static_cast<double>(i * n + n) * factor));
  return worst;
}

/// hivemind's example weights for 4 peers (one of them zero).
inline const std::vector<float> kHivemindWeights{0.15f, 0.0f, 0.35f, 0.45f};

/// An identity run with kHivemindWeights on inputs x: every peer ok and bit-identical to
/// `expect` (the collective's replay), 3 contributors, weight sum summed in rank order in
/// fp32, and the exact weighted mean within 1e-6.
inline void check_hivemind_weights(const std::vector<peer_outcome>& out, const std::vector<std::vector<float>>& x,
                                   const std::vector<float>& expect) {
  check_all_ok(out);
  const auto m = exact_mean(x, kHivemindWeights);
  for (std::size_t r = 0; r < out.size(); ++r) {
    CHECK(same_bits(out[r].data, expect));
    CHECK(out[r].report.contributors == 3);
    CHECK(out[r].report.weight_sum == static_cast<double>(((0.15f + 0.0f) + 0.35f) + 0.45f));
  }
  for (std::size_t i = 0; i < m.size(); ++i) REQUIRE(out[0].data[i] == Approx(m[i]).margin(1e-6));
}

}  // namespace dtrain::net::test
