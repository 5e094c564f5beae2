// tests/diloco/diloco_test_util.h: test doubles for the DiLoCo engine tests: a reference
// all-to-all averager over a transport (weighted mean in rank order), a one-peer averager
// with an optional lossy codec and injected failures, a thread runner for K peers, and
// bit comparison helpers.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "dtrain/codec/codec.h"
#include "dtrain/codec/registry.h"
#include "dtrain/core/rng.h"
#include "dtrain/diloco/engine.h"
#include "dtrain/net/averager.h"
#include "dtrain/net/collective_options.h"
#include "dtrain/net/transport.h"
#include "dtrain/net/transport_inproc.h"

namespace dtrain::diloco::test {

inline bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

/// Log of a test averager, shared with the test (the engine owns the averager).
struct solo_log {
  std::vector<std::uint64_t> rounds;             // every call's round, failed ones too
  std::vector<std::vector<float>> inputs;        // data on entry, successful calls
  std::vector<std::vector<float>> outputs;       // data on return (solo) or own decoded contribution (reference)
};

/// k fresh logs, one per peer.
inline std::vector<std::shared_ptr<solo_log>> solo_logs(std::size_t k) {
  std::vector<std::shared_ptr<solo_log>> logs;
  for (std::size_t i = 0; i < k; ++i) logs.push_back(std::make_shared<solo_log>());
  return logs;
}

/// TEST DOUBLE, not a collective to ship: every peer sends (weight, codec payload of its
/// vector) to every other peer; each decodes all K contributions (its own too, so all
/// peers agree bit for bit) and computes sum_r w_r·x_r / sum_r w_r in rank order, in
/// float, starting from 0 (all weights 0: the plain mean). The residual is
/// data − decode(own payload). Allocates freely.
class reference_averager final : public net::averager {
 public:
  static result<std::unique_ptr<net::averager>> create(net::transport& t, std::size_t count, std::uint32_t channel,
                                                       float weight = 1.0f, const std::string& codec_spec = "identity",
                                                       std::set<std::uint64_t> fail_rounds = {},
                                                       std::shared_ptr<solo_log> log = nullptr) {
    auto c = codec::make_codec(codec_spec);
    if (!c.ok()) return std::move(c).status();
    auto a = std::unique_ptr<reference_averager>(new reference_averager(t, count, channel, weight));
    a->codec_ = std::move(c).value();
    a->fail_rounds_ = std::move(fail_rounds);
    a->log_ = std::move(log);
    return std::unique_ptr<net::averager>(std::move(a));
  }

  std::string_view name() const noexcept override { return "reference"; }
  std::size_t count() const noexcept override { return n_; }
  bool exact_consensus() const noexcept override { return true; }
  const net::average_report& last_report() const noexcept override { return report_; }

  status average(std::span<float> data, std::uint64_t round, std::span<float> residual = {}) override {
    const std::uint32_t seq = seq_++;
    if (log_) log_->rounds.push_back(round);
    if (data.size() != n_ || (!residual.empty() && residual.size() != n_))
      return invalid_argument("reference_averager: size mismatch");
    if (fail_rounds_.count(round)) return aborted("reference_averager: injected failure in round " + std::to_string(round));
    const std::size_t K = t_.size();
    const net::rank_t me = t_.rank();
    const std::size_t cap = sizeof(float) + codec_->max_encoded_bytes(n_);
    std::vector<std::vector<std::byte>> msg(K, std::vector<std::byte>(cap));
    std::memcpy(msg[me].data(), &weight_, sizeof(float));
    auto enc = codec_->encode(data, std::span<std::byte>(msg[me]).subspan(sizeof(float)));
    if (!enc.ok()) return std::move(enc).status();
    const std::size_t len = sizeof(float) + *enc;
    std::vector<std::size_t> got(K, 0);
    got[me] = len;
    std::vector<net::op> ops;
    const net::tag_t tag = net::make_tag(channel_, seq, 0);
    for (net::rank_t r = 0; r < K; ++r) {
      if (r == me) continue;
      auto s = t_.post_send(r, tag, std::span<const std::byte>(msg[me].data(), len));
      if (!s.ok()) {
        net::wait_all(t_, ops, net::after(timeout_)).ignore();
        return std::move(s).status();
      }
      ops.push_back(*s);
    }
    std::vector<net::op> recvs(K);
    for (net::rank_t r = 0; r < K; ++r) {
      if (r == me) continue;
      auto s = t_.post_recv(r, tag, msg[r]);
      if (!s.ok()) {
        net::wait_all(t_, ops, net::after(timeout_)).ignore();
        return std::move(s).status();
      }
      recvs[r] = *s;
    }
    const auto d = net::after(timeout_);
    status first = net::wait_all(t_, ops, d);
    for (net::rank_t r = 0; r < K; ++r) {
      if (r == me) continue;
      auto w = t_.wait(recvs[r], d);
      if (!w.ok()) {
        if (first.ok()) first = std::move(w).status();
      } else {
        got[r] = *w;
      }
    }
    if (!first.ok()) return first;
    std::vector<std::vector<float>> dec(K, std::vector<float>(n_));
    std::vector<float> w(K);
    for (net::rank_t r = 0; r < K; ++r) {
      if (got[r] < sizeof(float)) return data_loss("reference_averager: short message from " + std::to_string(r));
      std::memcpy(&w[r], msg[r].data(), sizeof(float));
      DTRAIN_RETURN_IF_ERROR(codec_->decode(std::span<const std::byte>(msg[r]).subspan(sizeof(float), got[r] - sizeof(float)), dec[r]));
    }
    float wsum = 0.0f;
    for (float x : w) wsum += x;
    if (wsum == 0.0f) {
      std::fill(w.begin(), w.end(), 1.0f);
      wsum = static_cast<float>(K);
    }
    std::vector<float> acc(n_, 0.0f);
    for (net::rank_t r = 0; r < K; ++r)
      for (std::size_t i = 0; i < n_; ++i) acc[i] = acc[i] + w[r] * dec[r][i];
    if (log_) {
      log_->inputs.emplace_back(data.begin(), data.end());
      log_->outputs.push_back(dec[me]);
    }
    if (!residual.empty())
      for (std::size_t i = 0; i < n_; ++i) residual[i] = data[i] - dec[me][i];
    for (std::size_t i = 0; i < n_; ++i) data[i] = acc[i] / wsum;
    report_ = {};
    report_.contributors = K;
    report_.weight_sum = wsum;
    report_.bytes_sent = (K - 1) * len;
    for (net::rank_t r = 0; r < K; ++r)
      if (r != me) report_.bytes_received += got[r];
    return ok_status();
  }

 private:
  reference_averager(net::transport& t, std::size_t n, std::uint32_t channel, float weight)
      : t_(t), n_(n), channel_(channel), weight_(weight) {}
  net::transport& t_;
  std::size_t n_;
  std::uint32_t channel_;
  float weight_;
  std::uint32_t seq_ = 0;
  std::chrono::milliseconds timeout_{20000};
  std::unique_ptr<codec::codec> codec_;
  std::set<std::uint64_t> fail_rounds_;
  std::shared_ptr<solo_log> log_;
  net::average_report report_;
};

/// TEST DOUBLE for one peer alone: the average of one contribution is its decoded self
/// (exact with "identity"); the residual is data − decoded. Fails with `aborted` (data and
/// residual untouched) in the rounds listed.
class solo_averager final : public net::averager {
 public:
  static result<std::unique_ptr<net::averager>> create(std::size_t n, const std::string& codec_spec = "identity",
                                                       std::set<std::uint64_t> fail_rounds = {},
                                                       std::shared_ptr<solo_log> log = nullptr) {
    auto c = codec::make_codec(codec_spec);
    if (!c.ok()) return std::move(c).status();
    auto a = std::unique_ptr<solo_averager>(new solo_averager(n));
    a->codec_ = std::move(c).value();
    a->fail_ = std::move(fail_rounds);
    a->log_ = std::move(log);
    return std::unique_ptr<net::averager>(std::move(a));
  }
  std::string_view name() const noexcept override { return "solo"; }
  std::size_t count() const noexcept override { return n_; }
  bool exact_consensus() const noexcept override { return true; }
  const net::average_report& last_report() const noexcept override { return report_; }
  status average(std::span<float> data, std::uint64_t round, std::span<float> residual = {}) override {
    if (log_) log_->rounds.push_back(round);
    if (fail_.count(round)) return aborted("solo_averager: injected failure in round " + std::to_string(round));
    std::vector<std::byte> buf(codec_->max_encoded_bytes(n_));
    auto e = codec_->encode(data, buf);
    if (!e.ok()) return std::move(e).status();
    std::vector<float> dec(n_);
    DTRAIN_RETURN_IF_ERROR(codec_->decode(std::span<const std::byte>(buf.data(), *e), dec));
    if (log_) log_->inputs.emplace_back(data.begin(), data.end());
    if (!residual.empty())
      for (std::size_t i = 0; i < n_; ++i) residual[i] = data[i] - dec[i];
    std::copy(dec.begin(), dec.end(), data.begin());
    if (log_) log_->outputs.push_back(dec);
    report_ = {1, 0, 1.0, 0, 0};
    return ok_status();
  }

 private:
  explicit solo_averager(std::size_t n) : n_(n) {}
  std::size_t n_;
  std::unique_ptr<codec::codec> codec_;
  std::set<std::uint64_t> fail_;
  std::shared_ptr<solo_log> log_;
  net::average_report report_;
};

/// Runs fn(rank) on K threads and joins them. Catch2 assertions are not thread-safe:
/// fn records what it sees, the test checks after run_peers returns.
inline void run_peers(std::size_t K, const std::function<void(std::uint32_t)>& fn) {
  std::vector<std::thread> th;
  th.reserve(K);
  for (std::uint32_t r = 0; r < K; ++r) th.emplace_back(fn, r);
  for (auto& t : th) t.join();
}

/// Flattens tensors in order.
inline std::vector<float> flatten(const std::vector<std::vector<float>>& tensors) {
  std::vector<float> out;
  for (const auto& t : tensors) out.insert(out.end(), t.begin(), t.end());
  return out;
}

inline std::vector<std::span<float>> spans_of(std::vector<std::vector<float>>& tensors) {
  std::vector<std::span<float>> s;
  for (auto& t : tensors) s.emplace_back(t);
  return s;
}

}  // namespace dtrain::diloco::test

namespace dtrain::diloco::test {

using tensors = std::vector<std::vector<float>>;

/// What one peer saw in run_engine().
struct peer_trace {
  tensors final_params;
  std::vector<std::vector<float>> final_snapshots;  // per fragment
  std::vector<std::vector<float>> final_residuals;  // per fragment (EF)
  status create_error;
  std::vector<status> errors;          // after_inner_step() result per step (then sync_now's)
  std::vector<tensors> before;         // params before each after_inner_step() (trace only)
  std::vector<tensors> after;          // params after each after_inner_step() (trace only)
  std::vector<std::vector<std::uint64_t>> exchanges;  // per step: stats(p).exchanges for each p
  engine_stats totals;
  std::uint64_t transport_sent = 0;    // endpoint stats after the run
};

struct run_config {
  std::size_t K = 2;
  diloco_options o;
  optimizer_factory opt = sgd_factory();
  std::uint64_t steps = 0;
  bool sync_now_at_end = false;
  bool trace = false;
  std::function<tensors(std::uint32_t)> init;
  std::function<void(tensors&, std::uint32_t rank, std::uint64_t step)> inner;
  /// Averager per peer; default: reference_averager with weight 1 and identity codec.
  std::function<result<std::unique_ptr<net::averager>>(net::transport&, std::uint32_t rank, std::size_t n,
                                                       std::uint32_t channel)>
      make_avg;
  /// Called before each after_inner_step() (after the inner update), e.g. mark_joiner().
  std::function<void(diloco_engine&, std::uint32_t rank, std::uint64_t step)> before_call;
};

/// Runs K peers as threads over an inproc_fabric: each builds its engine from init(rank),
/// then for s = 1..steps runs inner(params, rank, s) and after_inner_step().
inline std::vector<peer_trace> run_engine(const run_config& c) {
  net::inproc_fabric fabric(c.K);
  std::vector<peer_trace> out(c.K);
  run_peers(c.K, [&](std::uint32_t r) {
    peer_trace& tr = out[r];
    tensors w = c.init(r);
    net::transport& t = fabric.endpoint(r);
    averager_factory make = [&](std::size_t n, std::uint32_t ch) -> result<std::unique_ptr<net::averager>> {
      if (c.make_avg) return c.make_avg(t, r, n, ch);
      return reference_averager::create(t, n, ch);
    };
    auto e = diloco_engine::create(spans_of(w), make, c.o, c.opt);
    if (!e.ok()) {
      tr.create_error = e.status();
      return;
    }
    diloco_engine& eng = **e;
    for (std::uint64_t s = 1; s <= c.steps; ++s) {
      c.inner(w, r, s);
      if (c.before_call) c.before_call(eng, r, s);
      if (c.trace) tr.before.push_back(w);
      tr.errors.push_back(eng.after_inner_step());
      if (c.trace) tr.after.push_back(w);
      std::vector<std::uint64_t> ex;
      for (std::size_t p = 0; p < eng.fragments(); ++p) ex.push_back(eng.stats(p).exchanges);
      tr.exchanges.push_back(std::move(ex));
    }
    if (c.sync_now_at_end) tr.errors.push_back(eng.sync_now());
    tr.final_params = w;
    for (std::size_t p = 0; p < eng.fragments(); ++p) {
      tr.final_snapshots.emplace_back(eng.snapshot(p).begin(), eng.snapshot(p).end());
      tr.final_residuals.emplace_back(eng.residual(p).begin(), eng.residual(p).end());
    }
    tr.totals = eng.totals();
    e.value().reset();  // joins the engine's thread before reading the transport
    tr.transport_sent = t.stats().total_sent();
  });
  return out;
}

/// True when every recorded status is ok.
inline bool all_ok(const peer_trace& t) {
  if (!t.create_error.ok()) return false;
  for (const auto& s : t.errors)
    if (!s.ok()) return false;
  return true;
}

/// Tensors of the given shapes, values 2 u - 1 in [−1, 1) with u = counter_rng(seed)
/// at 0, 1, 2, ... across the tensors in order.
inline tensors init_shapes(const std::vector<std::size_t>& shapes, std::uint64_t seed) {
  const counter_rng g(seed);
  tensors w;
  std::uint64_t k = 0;
  for (std::size_t n : shapes) {
    std::vector<float> t(n);
    for (float& v : t) v = 2.0f * g.uniform_at(k++) - 1.0f;
    w.push_back(std::move(t));
  }
  return w;
}

/// The common starting model of the engine tests: tensors of kCommonShapes (one of them
/// empty), values in [−1, 1), the same on every peer (DiLoCo starts from one model).
inline const std::vector<std::size_t> kCommonShapes{7, 0, 13, 1, 5};

inline tensors common_init(std::uint32_t /*rank*/) { return init_shapes(kCommonShapes, 5); }

// Deterministic stand-in for an inner optimizer step: a pull toward a per-rank target
// (counter_rng(seed, rank)) plus per-(rank, step, index) noise (counter_rng(seed + 1 +
// rank, step)), in float.
inline void seeded_pull_step(tensors& w, std::uint32_t rank, std::uint64_t step, std::uint64_t seed) {
  const counter_rng tgt(seed, rank), noise(seed + 1 + rank, step);
  std::uint64_t k = 0;
  for (auto& t : w)
    for (float& v : t) {
      const float target = 2.0f * tgt.uniform_at(k) - 1.0f;
      v = v - 0.125f * (v - target) + 0.01f * (noise.uniform_at(k) - 0.5f);
      ++k;
    }
}

/// The engine tests' inner step: seeded_pull_step with seed 77.
inline void pull_step(tensors& w, std::uint32_t rank, std::uint64_t step) { seeded_pull_step(w, rank, step, 77); }

// The shipped collectives as run_config::make_avg (identity codec, weight 1).
template <class Collective>
inline result<std::unique_ptr<net::averager>> make_collective(net::transport& t, std::uint32_t, std::size_t n, std::uint32_t ch) {
  net::collective_options co;
  co.channel = ch;
  auto r = Collective::create(t, n, co);
  if (!r.ok()) return std::move(r).status();
  return std::unique_ptr<net::averager>(std::move(r).value());
}

inline averager_factory solo_factory(const std::string& codec = "identity", std::set<std::uint64_t> fail = {},
                              std::shared_ptr<solo_log> log = nullptr) {
  return [=](std::size_t n, std::uint32_t) { return solo_averager::create(n, codec, fail, log); };
}

}  // namespace dtrain::diloco::test
