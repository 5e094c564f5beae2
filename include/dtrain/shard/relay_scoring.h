// dtrain/shard/relay_scoring.h: the client's per-relay scores (success EMA x bandwidth
// EMA), the weighted relay choice, and the hedging threshold from measured request times.
// Pure bookkeeping, no I/O: the fetch loop in lib/shard/fetch_run.cpp drives it. Rules: docs/shard.md
// "Distribution: the client".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace dtrain::shard {

/// What the client has measured about one relay during one fetch.
struct relay_score {
  std::string url;
  /// EMA (alpha 0.3) of 1 per successful request and 0 per failed one; starts at 1.
  double success_ema = 1.0;
  /// EMA (alpha 0.3) of bytes/s per completed request; a failure is a 0 sample (not the
  /// timeout, SHARDCAST's bug). The first sample sets it; 0 until then.
  double bandwidth_ema = 0.0;
  std::uint64_t requests = 0;    ///< completed requests (ok or failed; not cancelled ones)
  std::uint64_t failures = 0;    ///< failed requests, bad chunks included
  std::uint64_t bad_chunks = 0;  ///< chunks (or ranges of chunks) that failed their digest
  std::uint64_t bytes = 0;       ///< body bytes received from it
  bool down = false;             ///< marked down (connection refused/reset): not used again until revived
};

/// The scores of a fetch's relays and the weighted choice between them. Not thread-safe.
class relay_scoreboard {
 public:
  static constexpr double alpha = 0.3;

  /// One score per URL, in order (indices are the relay numbers used below). `seed` seeds
  /// the weighted choice, so a run is reproducible given the same completions.
  explicit relay_scoreboard(std::vector<std::string> urls, std::uint64_t seed = 0);

  std::size_t size() const noexcept { return scores_.size(); }
  const std::vector<relay_score>& scores() const noexcept { return scores_; }
  const relay_score& operator[](std::size_t r) const noexcept { return scores_[r]; }

  /// A request to relay r was started (pick() prefers relays never started).
  void on_start(std::size_t r) noexcept;
  /// A request to r completed with `bytes` bytes in `seconds` (a 0 or negative time
  /// counts as 1 µs).
  void on_success(std::size_t r, std::uint64_t bytes, double seconds) noexcept;
  /// A request to r of `bytes` bytes lost a hedge race after `seconds`: it counts as
  /// completed with bandwidth sample bytes/seconds (an upper bound of what it would
  /// have reached), so a relay that never answers loses its optimistic prior.
  void on_lost_race(std::size_t r, std::uint64_t bytes, double seconds) noexcept;
  /// A request to r failed (error, timeout, bad status): success and bandwidth samples 0.
  void on_failure(std::size_t r) noexcept;
  /// r sent bytes that failed their digest (after on_success counted the transfer): a
  /// failure, success and bandwidth samples 0, and a bad chunk.
  void on_bad_chunk(std::size_t r) noexcept;
  /// r sent part of a chunk that failed its digest when the chunk's ranges came from
  /// several relays (which one lied is not known yet): success and bandwidth samples 0.
  void on_suspect(std::size_t r) noexcept;
  /// Counts one more failure and bad chunk without another EMA sample (a bad range found
  /// out later, when the good copy of its chunk arrived; on_suspect took the sample).
  void add_bad_chunk(std::size_t r) noexcept {
    ++scores_[r].failures;
    ++scores_[r].bad_chunks;
  }
  /// r is unreachable: pick() never returns it again.
  void mark_down(std::size_t r) noexcept { scores_[r].down = true; }
  /// r may be picked again (a client retrying a relay some time after it went down); its
  /// scores stay as they were, so it wins traffic back only as its requests succeed.
  void revive(std::size_t r) noexcept { scores_[r].down = false; }
  bool up(std::size_t r) const noexcept { return !scores_[r].down; }
  std::size_t up_count() const noexcept;

  /// The choice weight: success_ema x bandwidth_ema once r has completed a request; before
  /// that an optimistic prior, the largest weight of the relays that have (1 when none has).
  double weight(std::size_t r) const noexcept;

  /// A relay for the next request, from the up relays not in `avoid`: the first one never
  /// started, if any (so every relay gets tried); else a weighted random choice, each
  /// weight floored at 1% of the largest so that a relay with one bad sample can recover
  /// (all zero: uniform). nullopt when no up relay is left outside `avoid`.
  std::optional<std::size_t> pick(std::span<const std::size_t> avoid);

 private:
  std::vector<relay_score> scores_;
  std::vector<std::uint64_t> started_;
  std::vector<bool> has_bandwidth_;
  std::mt19937_64 rng_;
};

/// Completed request times, for the hedging threshold. Not thread-safe.
class request_timer {
 public:
  /// A request of `bytes` bytes completed in `seconds`. Keeps the last 64 per size class.
  void record(std::uint64_t bytes, double seconds);
  /// Median time of completed requests of a similar size (same power-of-two class:
  /// floor(log2(bytes)) equal); nullopt when there is none.
  std::optional<double> median_seconds(std::uint64_t bytes) const;
  /// Seconds after which a request of `bytes` bytes is hedged:
  /// max(min_seconds, factor x median of similar size); with no similar request, the median
  /// time per byte over all recorded requests scaled to `bytes`; with no history at all,
  /// 10 x min_seconds.
  double hedge_after(std::uint64_t bytes, double factor, double min_seconds) const;
  std::size_t count() const noexcept { return count_; }

 private:
  struct sample {
    std::uint64_t bytes;
    double seconds;
  };
  std::vector<std::vector<sample>> classes_ = std::vector<std::vector<sample>>(65);
  std::size_t count_ = 0;
};

}  // namespace dtrain::shard
