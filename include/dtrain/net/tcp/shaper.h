// dtrain/net/tcp/shaper.h: a user-space model of a slow, unreliable link (rate, latency,
// jitter, loss) applied on the TCP transport's send path, to simulate WAN links between
// processes on one host where traffic-control qdiscs are unavailable.
#pragma once

#include <chrono>
#include <cstdint>

#include "dtrain/core/rng.h"

namespace dtrain::net::tcp {

struct shaper_options {
  double rate_bytes_per_s = 0;                  ///< 0 = unlimited
  std::chrono::microseconds latency{0};         ///< one-way delay added to every stripe
  std::chrono::microseconds jitter{0};          ///< uniform in [-jitter, +jitter], clamped so delay >= 0
  double loss = 0;                              ///< probability a stripe is "lost" (0..1)
  std::chrono::microseconds loss_penalty{200'000};  ///< a lost stripe arrives one RTO late (TCP retransmits)
  std::uint64_t seed = 1;
  bool enabled() const noexcept {
    return rate_bytes_per_s > 0 || latency.count() > 0 || jitter.count() > 0 || loss > 0;
  }
};

/// One directed link's model. release() says when a stripe of `bytes`, handed over at
/// `now`, may go on the wire: after the bytes before it have drained at the link rate, plus
/// latency, jitter and any loss penalty. Release times never go backwards, so per-link
/// order is kept (TCP delivers in order). Not thread-safe: one per link, one caller.
class link_shaper {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  explicit link_shaper(const shaper_options& o, std::uint64_t link_id = 0) noexcept
      : o_(o), rng_(o.seed, link_id) {}

  time_point release(time_point now, std::uint64_t bytes) noexcept {
    using namespace std::chrono;
    time_point t = now > drained_ ? now : drained_;
    if (o_.rate_bytes_per_s > 0)
      t += duration_cast<steady_clock::duration>(duration<double>(static_cast<double>(bytes) / o_.rate_bytes_per_s));
    drained_ = t;
    auto delay = duration_cast<steady_clock::duration>(o_.latency);
    if (o_.jitter.count() > 0) {
      const double u = static_cast<double>(rng_.next_uniform()) * 2.0 - 1.0;  // [-1, 1)
      delay += duration_cast<steady_clock::duration>(duration<double, std::micro>(u * static_cast<double>(o_.jitter.count())));
      if (delay.count() < 0) delay = steady_clock::duration::zero();
    }
    if (o_.loss > 0 && static_cast<double>(rng_.next_uniform()) < o_.loss) delay += duration_cast<steady_clock::duration>(o_.loss_penalty);
    time_point out = t + delay;
    if (out < last_) out = last_;
    last_ = out;
    return out;
  }

 private:
  shaper_options o_;
  counter_rng rng_;
  time_point drained_{};
  time_point last_{};
};

}  // namespace dtrain::net::tcp
