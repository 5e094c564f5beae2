// Relay scores (success EMA x bandwidth EMA), the weighted choice and hedging thresholds.
#include "dtrain/shard/relay_scoring.h"

#include <algorithm>
#include <bit>

namespace dtrain::shard {

relay_scoreboard::relay_scoreboard(std::vector<std::string> urls, std::uint64_t seed)
    : started_(urls.size(), 0), has_bandwidth_(urls.size(), false), rng_(seed) {
  scores_.reserve(urls.size());
  for (auto& u : urls) {
    relay_score s;
    s.url = std::move(u);
    scores_.push_back(std::move(s));
  }
}

void relay_scoreboard::on_start(std::size_t r) noexcept { ++started_[r]; }

void relay_scoreboard::on_success(std::size_t r, std::uint64_t bytes, double seconds) noexcept {
  auto& s = scores_[r];
  ++s.requests;
  s.bytes += bytes;
  s.success_ema = (1 - alpha) * s.success_ema + alpha * 1.0;
  const double bw = static_cast<double>(bytes) / std::max(seconds, 1e-6);
  if (!has_bandwidth_[r]) {
    s.bandwidth_ema = bw;
    has_bandwidth_[r] = true;
  } else {
    s.bandwidth_ema = (1 - alpha) * s.bandwidth_ema + alpha * bw;
  }
}

void relay_scoreboard::on_lost_race(std::size_t r, std::uint64_t bytes, double seconds) noexcept {
  auto& s = scores_[r];
  ++s.requests;
  const double bw = static_cast<double>(bytes) / std::max(seconds, 1e-6);
  s.bandwidth_ema = has_bandwidth_[r] ? (1 - alpha) * s.bandwidth_ema + alpha * bw : bw;
  has_bandwidth_[r] = true;
}

void relay_scoreboard::on_failure(std::size_t r) noexcept {
  auto& s = scores_[r];
  ++s.requests;
  ++s.failures;
  s.success_ema = (1 - alpha) * s.success_ema;
  // A failure is a bandwidth sample of 0: it moved no useful bytes.
  s.bandwidth_ema = has_bandwidth_[r] ? (1 - alpha) * s.bandwidth_ema : 0.0;
  has_bandwidth_[r] = true;
}

void relay_scoreboard::on_suspect(std::size_t r) noexcept {
  auto& s = scores_[r];
  s.success_ema = (1 - alpha) * s.success_ema;
  s.bandwidth_ema = (1 - alpha) * s.bandwidth_ema;
}

void relay_scoreboard::on_bad_chunk(std::size_t r) noexcept {
  on_suspect(r);
  ++scores_[r].failures;
  ++scores_[r].bad_chunks;
}

std::size_t relay_scoreboard::up_count() const noexcept {
  return static_cast<std::size_t>(std::count_if(scores_.begin(), scores_.end(), [](const relay_score& s) { return !s.down; }));
}

double relay_scoreboard::weight(std::size_t r) const noexcept {
  if (scores_[r].requests > 0) return scores_[r].success_ema * scores_[r].bandwidth_ema;
  double best = 0;
  bool any = false;
  for (std::size_t i = 0; i < scores_.size(); ++i) {
    if (scores_[i].requests == 0) continue;
    any = true;
    best = std::max(best, scores_[i].success_ema * scores_[i].bandwidth_ema);
  }
  return any ? best : 1.0;
}

std::optional<std::size_t> relay_scoreboard::pick(std::span<const std::size_t> avoid) {
  std::vector<std::size_t> cand;
  for (std::size_t r = 0; r < scores_.size(); ++r) {
    if (scores_[r].down) continue;
    if (std::find(avoid.begin(), avoid.end(), r) != avoid.end()) continue;
    cand.push_back(r);
  }
  if (cand.empty()) return std::nullopt;
  for (std::size_t r : cand) {
    if (started_[r] == 0) return r;
  }
  std::vector<double> w(cand.size());
  double top = 0;
  for (std::size_t i = 0; i < cand.size(); ++i) {
    w[i] = weight(cand[i]);
    top = std::max(top, w[i]);
  }
  if (top <= 0) {
    std::uniform_int_distribution<std::size_t> u(0, cand.size() - 1);
    return cand[u(rng_)];
  }
  double total = 0;
  for (auto& x : w) {
    x = std::max(x, 0.01 * top);
    total += x;
  }
  std::uniform_real_distribution<double> u(0.0, total);
  double at = u(rng_);
  for (std::size_t i = 0; i < cand.size(); ++i) {
    if (at < w[i]) return cand[i];
    at -= w[i];
  }
  return cand.back();
}

namespace {
std::size_t size_class(std::uint64_t bytes) noexcept {
  return bytes == 0 ? 0 : static_cast<std::size_t>(std::bit_width(bytes));
}
double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
}  // namespace

void request_timer::record(std::uint64_t bytes, double seconds) {
  auto& c = classes_[size_class(bytes)];
  if (c.size() == 64) c.erase(c.begin());
  c.push_back({bytes, std::max(seconds, 0.0)});
  ++count_;
}

std::optional<double> request_timer::median_seconds(std::uint64_t bytes) const {
  const auto& c = classes_[size_class(bytes)];
  if (c.empty()) return std::nullopt;
  std::vector<double> v;
  v.reserve(c.size());
  for (const auto& s : c) v.push_back(s.seconds);
  return median_of(std::move(v));
}

double request_timer::hedge_after(std::uint64_t bytes, double factor, double min_seconds) const {
  if (auto m = median_seconds(bytes)) return std::max(min_seconds, factor * *m);
  std::vector<double> per_byte;
  for (const auto& c : classes_) {
    for (const auto& s : c) per_byte.push_back(s.seconds / static_cast<double>(std::max<std::uint64_t>(s.bytes, 1)));
  }
  if (per_byte.empty()) return 10 * min_seconds;
  return std::max(min_seconds, factor * median_of(std::move(per_byte)) * static_cast<double>(std::max<std::uint64_t>(bytes, 1)));
}

}  // namespace dtrain::shard
