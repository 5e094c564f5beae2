// The DiLoCo engine: snapshots, fragment schedule, exchanges (inline or on one
// background thread), outer steps and write-back.
#include "dtrain/diloco/engine.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace dtrain::diloco {

optimizer_factory sgd_factory(const optim::sgd_options& o) {
  return [o](std::size_t n) -> result<std::unique_ptr<optim::outer_optimizer>> {
    auto r = optim::outer_sgd::create(n, o);
    if (!r.ok()) return std::move(r).status();
    return std::unique_ptr<optim::outer_optimizer>(std::make_unique<optim::outer_sgd>(std::move(r).value()));
  };
}

status validate(const diloco_options& o) {
  if (o.inner_steps == 0) return invalid_argument("diloco: inner_steps (H) must be >= 1");
  if (o.fragments == 0) return invalid_argument("diloco: fragments (P) must be >= 1");
  if (o.overlap_steps >= o.inner_steps)
    return invalid_argument("diloco: overlap_steps (tau) must be < inner_steps (H)");
  if (!(o.merge_alpha >= 0.0f && o.merge_alpha <= 1.0f)) return invalid_argument("diloco: merge_alpha must lie in [0, 1]");
  if (o.delay != delay_mode::none && o.overlap_steps != 0)
    return invalid_argument("diloco: overlap_steps must be 0 with a delay mode (the delay already overlaps a phase)");
  if (o.delay == delay_mode::eager && o.peers == 0) return invalid_argument("diloco: peers (M) must be >= 1 for eager");
  if (!(o.ef_beta >= 0.0f && o.ef_beta <= 1.0f)) return invalid_argument("diloco: ef_beta must lie in [0, 1]");
  if (o.noloco.enabled) {
    if (!std::isfinite(o.noloco.eta) || o.noloco.eta < 0) return invalid_argument("diloco: noloco.eta must be finite and >= 0");
    if (!(o.noloco.mu >= 0 && o.noloco.mu <= 1)) return invalid_argument("diloco: noloco.mu must lie in [0, 1]");
    if (!std::isfinite(o.noloco.gamma) || o.noloco.gamma < 0)
      return invalid_argument("diloco: noloco.gamma must be finite and >= 0");
    if (o.delay != delay_mode::none) return invalid_argument("diloco: noloco requires delay none");
  }
  return ok_status();
}

namespace {

struct fragment {
  std::vector<std::size_t> tensors;
  std::size_t n = 0;
  std::uint32_t offset = 0;
  std::vector<float> snapshot;  // θ^(t−1); NoLoCo: φ
  std::vector<float> xbuf;      // exchange buffer: contribution in, average out
  std::vector<float> rbuf;      // averager's residual output (EF or eager), else empty
  std::vector<float> ef;        // error-feedback residual e, else empty
  std::vector<float> delta;     // delay modes: this sync's Δ^(t)
  std::vector<float> grad;      // eager: the outer gradient
  std::vector<float> own;       // eager: x of the round in flight, then c = x − r
  std::vector<float> phi;       // NoLoCo: φ exchange buffer
  std::vector<float> mom;       // NoLoCo: momentum m
  std::unique_ptr<optim::outer_optimizer> opt;
  std::unique_ptr<net::averager> avg, avg_phi;

  std::uint64_t rounds = 0;         // exchanges launched
  bool in_flight = false;           // launched, result not yet consumed
  std::uint64_t launched_at = 0;    // inner step of the launch
  std::uint64_t job_round = 0;      // round of the exchange in flight
  bool job_zero = false;            // this peer contributed zero (joiner)
  std::uint32_t job_joiners = 0;    // J of the exchange in flight
  bool joiner_next = false;
  std::uint32_t joiners_next = 0;
  // Written by whoever ran the exchange, read after job_done (guarded by state::mtx).
  bool job_done = false;
  status job_status;
  net::average_report job_report;

  fragment_stats st;
};

}  // namespace

struct diloco_engine::state {
  diloco_options o;
  std::vector<std::span<float>> params;
  std::vector<fragment> frags;
  std::uint64_t step = 0;
  bool async = false;

  std::mutex mtx;
  std::condition_variable work_cv, done_cv;
  std::vector<std::uint32_t> queue;  // ring of fragment indices, capacity P
  std::size_t qhead = 0, qsize = 0;
  bool stop = false;
  std::thread worker;

  bool need_residual() const noexcept { return o.error_feedback || o.delay == delay_mode::eager; }

  // ---- exchanges --------------------------------------------------------------------

  // Runs fragment f's exchange (either thread). Touches only xbuf, rbuf, phi, the
  // averagers and the job_* result fields.
  void run_exchange(fragment& f) {
    std::span<float> res = need_residual() ? std::span<float>(f.rbuf) : std::span<float>();
    status s = f.avg->average(f.xbuf, f.job_round, res);
    net::average_report rep;
    if (s.ok()) {
      rep = f.avg->last_report();
      if (f.avg_phi) {
        s = f.avg_phi->average(f.phi, f.job_round);
        if (s.ok()) {
          const auto& r2 = f.avg_phi->last_report();
          rep.bytes_sent += r2.bytes_sent;
          rep.bytes_received += r2.bytes_received;
        }
      }
    }
    std::lock_guard<std::mutex> lk(mtx);
    f.job_status = std::move(s);
    f.job_report = rep;
    f.job_done = true;
    done_cv.notify_all();
  }

  void worker_loop() {
    std::unique_lock<std::mutex> lk(mtx);
    for (;;) {
      work_cv.wait(lk, [&] { return stop || qsize > 0; });
      if (qsize == 0) return;
      const std::uint32_t p = queue[qhead];
      qhead = (qhead + 1) % queue.size();
      --qsize;
      lk.unlock();
      run_exchange(frags[p]);
      lk.lock();
    }
  }

  // Starts the exchange of f.xbuf (and f.phi), consuming the joiner marks. Inline when
  // `background` is false (the result is ready on return).
  void launch(std::uint32_t p, bool background) {
    fragment& f = frags[p];
    f.job_round = f.rounds++;
    f.job_joiners = f.joiners_next;
    f.joiners_next = 0;
    f.in_flight = true;
    f.launched_at = step;
    {
      std::lock_guard<std::mutex> lk(mtx);
      f.job_done = false;
    }
    if (!background) {
      run_exchange(f);
      return;
    }
    std::lock_guard<std::mutex> lk(mtx);
    DTRAIN_ASSERT(qsize < queue.size());
    queue[(qhead + qsize) % queue.size()] = p;
    ++qsize;
    work_cv.notify_one();
  }

  // Waits for f's exchange and takes its result; updates the counters.
  status consume(fragment& f, net::average_report& rep) {
    DTRAIN_ASSERT(f.in_flight);
    status s;
    {
      std::unique_lock<std::mutex> lk(mtx);
      done_cv.wait(lk, [&] { return f.job_done; });
      s = std::move(f.job_status);
      f.job_status = ok_status();
      rep = f.job_report;
    }
    f.in_flight = false;
    if (!s.ok()) {
      ++f.st.failures;
      return s;
    }
    ++f.st.exchanges;
    f.st.bytes_sent += rep.bytes_sent;
    f.st.bytes_received += rep.bytes_received;
    f.st.last_report = rep;
    return s;
  }

  // ---- parameter traffic ------------------------------------------------------------

  // out = snapshot − params (fragment order), or 0 for a zero contribution.
  void gather_delta(const fragment& f, std::span<float> out, bool zero) const noexcept {
    if (zero) {
      std::fill(out.begin(), out.end(), 0.0f);
      return;
    }
    std::size_t k = 0;
    for (std::size_t t : f.tensors)
      for (float v : params[t]) {
        out[k] = f.snapshot[k] - v;
        ++k;
      }
  }

  // x = β·e + Δ into xbuf (Δ given, or gathered), and φ into phi for NoLoCo.
  void form_contribution(fragment& f, std::span<const float> delta, bool zero) noexcept {
    if (delta.empty()) {
      gather_delta(f, f.xbuf, zero);
    } else {
      std::copy(delta.begin(), delta.end(), f.xbuf.begin());
    }
    if (o.error_feedback && !zero) {
      const float beta = o.ef_beta;
      for (std::size_t k = 0; k < f.n; ++k) f.xbuf[k] = beta * f.ef[k] + f.xbuf[k];
    }
    if (!f.phi.empty()) std::copy(f.snapshot.begin(), f.snapshot.end(), f.phi.begin());
    f.job_zero = zero;
  }

  // params ← α·params + (1−α)·snapshot (α = 0: params ← snapshot, exactly).
  void write_back(const fragment& f, float alpha) noexcept {
    std::size_t k = 0;
    if (alpha == 0.0f) {
      for (std::size_t t : f.tensors) {
        std::copy(f.snapshot.begin() + static_cast<std::ptrdiff_t>(k),
                  f.snapshot.begin() + static_cast<std::ptrdiff_t>(k + params[t].size()), params[t].begin());
        k += params[t].size();
      }
      return;
    }
    const float beta = 1.0f - alpha;
    for (std::size_t t : f.tensors)
      for (float& v : params[t]) {
        v = alpha * v + beta * f.snapshot[k];
        ++k;
      }
  }

  // Δ̄ ← Δ̄ · fl(W / (W − J)) for joiner_denominator::excluded.
  void rescale_for_joiners(fragment& f, std::span<float> avg, const net::average_report& rep) const noexcept {
    if (o.joiner != joiner_denominator::excluded || f.job_joiners == 0) return;
    const std::size_t w = rep.contributors;
    if (f.job_joiners >= w) return;  // only joiners: the average is zero anyway
    const float s = static_cast<float>(static_cast<double>(w) / static_cast<double>(w - f.job_joiners));
    for (float& v : avg) v = s * v;
  }

  void commit_residual(fragment& f) noexcept {
    if (o.error_feedback && !f.job_zero) f.ef.swap(f.rbuf);
  }

  // The NoLoCo rule on the averaged xbuf (mean of φ − θ) and phi (mean of φ).
  status noloco_step(fragment& f) {
    for (std::size_t k = 0; k < f.n; ++k)
      if (!std::isfinite(f.xbuf[k]) || !std::isfinite(f.phi[k]))
        return invalid_argument("diloco: noloco average holds NaN/Inf at index " + std::to_string(k));
    const float mu = static_cast<float>(o.noloco.mu);
    const float neg_eta = static_cast<float>(-o.noloco.eta);
    const float gamma = static_cast<float>(o.noloco.gamma);
    for (std::size_t k = 0; k < f.n; ++k) {
      // u = mean(θ − φ) = −xbuf; m ← μ·m + η·u + γ·(φ̄ − φ); φ ← φ + m.
      const float m = (mu * f.mom[k] + neg_eta * f.xbuf[k]) + gamma * (f.phi[k] - f.snapshot[k]);
      f.mom[k] = m;
      f.snapshot[k] = f.snapshot[k] + m;
    }
    return ok_status();
  }

  // Applies a consumed (successful) undelayed exchange: rescale, outer step, residual,
  // write-back.
  status apply_now(fragment& f, const net::average_report& rep, float alpha) {
    rescale_for_joiners(f, f.xbuf, rep);
    if (o.noloco.enabled) {
      DTRAIN_RETURN_IF_ERROR(noloco_step(f));
    } else {
      DTRAIN_RETURN_IF_ERROR(f.opt->step(f.snapshot, f.xbuf));
    }
    ++f.st.outer_steps;
    commit_residual(f);
    write_back(f, alpha);
    return ok_status();
  }

  // ---- the three schedules ----------------------------------------------------------

  // delay none: exchange and apply now (τ = 0 or forced), or launch in the background.
  status sync_undelayed(std::uint32_t p, bool background, float alpha) {
    fragment& f = frags[p];
    const bool zero = f.joiner_next;
    f.joiner_next = false;
    form_contribution(f, {}, zero);
    launch(p, background);
    if (background) return ok_status();
    net::average_report rep;
    DTRAIN_RETURN_IF_ERROR(consume(f, rep));
    return apply_now(f, rep, alpha);
  }

  status finish_overlap(std::uint32_t p, float alpha) {
    fragment& f = frags[p];
    net::average_report rep;
    DTRAIN_RETURN_IF_ERROR(consume(f, rep));
    return apply_now(f, rep, alpha);
  }

  // delay one_step / eager. With `fresh` the current Δ^(t) is computed and launched;
  // without (the drain of sync_now) Δ^(t) = 0 and nothing is launched.
  status sync_delayed(std::uint32_t p, bool fresh, float alpha) {
    fragment& f = frags[p];
    net::average_report rep;
    bool have = false;
    if (f.in_flight) {
      DTRAIN_RETURN_IF_ERROR(consume(f, rep));
      have = true;
    }
    const bool zero = fresh && f.joiner_next;
    if (fresh) {
      f.joiner_next = false;
      gather_delta(f, f.delta, zero);
    } else {
      std::fill(f.delta.begin(), f.delta.end(), 0.0f);
    }
    const bool eager = o.delay == delay_mode::eager;
    if (have) rescale_for_joiners(f, f.xbuf, rep);
    if (eager) {
      const float m = static_cast<float>(o.peers);
      if (have) {
        const bool prev_zero = f.job_zero;
        for (std::size_t k = 0; k < f.n; ++k) {
          // c = x − r: this peer's share as the others decoded it (0 for a joiner).
          const float c = prev_zero ? 0.0f : f.own[k] - f.rbuf[k];
          f.grad[k] = (f.xbuf[k] - c / m) + f.delta[k] / m;
        }
      } else {
        for (std::size_t k = 0; k < f.n; ++k) f.grad[k] = f.delta[k] / m;
      }
      DTRAIN_RETURN_IF_ERROR(f.opt->step(f.snapshot, f.grad));
      ++f.st.outer_steps;
    } else if (have) {
      DTRAIN_RETURN_IF_ERROR(f.opt->step(f.snapshot, f.xbuf));
      ++f.st.outer_steps;
    }
    if (have) commit_residual(f);
    if (fresh) {
      form_contribution(f, f.delta, zero);
      if (eager) std::copy(f.xbuf.begin(), f.xbuf.end(), f.own.begin());
      launch(p, true);
    }
    write_back(f, alpha);
    return ok_status();
  }

  status sync_due(std::uint32_t p) {
    if (o.delay != delay_mode::none) return sync_delayed(p, true, o.merge_alpha);
    return sync_undelayed(p, o.overlap_steps > 0, o.merge_alpha);
  }

  // sync_now() for the fragments in [first, last): same call order on every peer.
  status flush(std::uint32_t first, std::uint32_t last) {
    status err;
    auto keep = [&](status s) {
      if (err.ok() && !s.ok()) err = std::move(s);
    };
    if (o.delay != delay_mode::none) {
      for (std::uint32_t p = first; p < last; ++p) keep(sync_delayed(p, true, o.merge_alpha));
      for (std::uint32_t p = first; p < last; ++p)
        if (frags[p].in_flight) keep(sync_delayed(p, false, 0.0f));
      return err;
    }
    for (std::uint32_t p = first; p < last; ++p)
      if (frags[p].in_flight) keep(finish_overlap(p, o.merge_alpha));
    for (std::uint32_t p = first; p < last; ++p) keep(sync_undelayed(p, false, 0.0f));
    return err;
  }

  // Builds fragment averagers into `out` (one per fragment, two with NoLoCo).
  status make_averagers(const averager_factory& make, std::vector<std::unique_ptr<net::averager>>& out) {
    const auto P = static_cast<std::uint32_t>(frags.size());
    const std::uint32_t per = o.noloco.enabled ? 2 : 1;
    out.clear();
    out.resize(std::size_t{per} * P);
    for (std::uint32_t i = 0; i < per * P; ++i) {
      const std::uint32_t p = i % P;
      const std::uint32_t channel = o.base_channel + i;
      auto r = make(frags[p].n, channel);
      if (!r.ok()) return std::move(r).status();
      if (!*r) return invalid_argument("diloco: averager factory returned null for fragment " + std::to_string(p));
      if ((*r)->count() != frags[p].n)
        return invalid_argument("diloco: averager of fragment " + std::to_string(p) + " has count " +
                                std::to_string((*r)->count()) + ", expected " + std::to_string(frags[p].n));
      if (o.joiner == joiner_denominator::excluded && !(*r)->exact_consensus())
        return invalid_argument("diloco: joiner_denominator::excluded needs an exact-consensus averager, got '" +
                                std::string((*r)->name()) + "'");
      out[i] = std::move(r).value();
    }
    return ok_status();
  }

  void install_averagers(std::vector<std::unique_ptr<net::averager>>& v) noexcept {
    const std::size_t P = frags.size();
    for (std::size_t p = 0; p < P; ++p) {
      frags[p].avg = std::move(v[p]);
      if (o.noloco.enabled) frags[p].avg_phi = std::move(v[P + p]);
    }
  }
};

diloco_engine::diloco_engine(std::unique_ptr<state> s) : s_(std::move(s)) {}

diloco_engine::~diloco_engine() {
  if (!s_ || !s_->worker.joinable()) return;
  {
    std::lock_guard<std::mutex> lk(s_->mtx);
    s_->stop = true;
  }
  s_->work_cv.notify_all();
  s_->worker.join();
}

result<std::unique_ptr<diloco_engine>> diloco_engine::create(std::vector<std::span<float>> params,
                                                             const averager_factory& make_averager,
                                                             const diloco_options& options,
                                                             const optimizer_factory& make_optimizer) {
  DTRAIN_RETURN_IF_ERROR(validate(options));
  if (params.empty()) return invalid_argument("diloco: no parameter tensors");
  if (!make_averager) return invalid_argument("diloco: empty averager factory");
  if (!options.noloco.enabled && !make_optimizer) return invalid_argument("diloco: empty optimizer factory");
  const std::uint32_t P = options.fragments;
  const std::uint64_t per = options.noloco.enabled ? 2 : 1;
  if (std::uint64_t{options.base_channel} + per * P > (std::uint64_t{1} << 24))
    return invalid_argument("diloco: base_channel + averagers exceeds the 24-bit channel range");
  auto assign = assign_fragments(params.size(), P, options.layout);
  if (!assign.ok()) return std::move(assign).status();

  auto s = std::make_unique<state>();
  s->o = options;
  s->params = std::move(params);
  s->frags.resize(P);
  for (std::size_t t = 0; t < s->params.size(); ++t) {
    fragment& f = s->frags[(*assign)[t]];
    f.tensors.push_back(t);
    f.n += s->params[t].size();
  }
  const bool eager = options.delay == delay_mode::eager;
  for (std::uint32_t p = 0; p < P; ++p) {
    fragment& f = s->frags[p];
    f.offset = sync_offset(p, P, options.inner_steps, options.staggered);
    f.snapshot.reserve(f.n);
    for (std::size_t t : f.tensors) f.snapshot.insert(f.snapshot.end(), s->params[t].begin(), s->params[t].end());
    f.xbuf.assign(f.n, 0.0f);
    if (s->need_residual()) f.rbuf.assign(f.n, 0.0f);
    if (options.error_feedback) f.ef.assign(f.n, 0.0f);
    if (options.delay != delay_mode::none) f.delta.assign(f.n, 0.0f);
    if (eager) {
      f.grad.assign(f.n, 0.0f);
      f.own.assign(f.n, 0.0f);
    }
    if (options.noloco.enabled) {
      f.phi.assign(f.n, 0.0f);
      f.mom.assign(f.n, 0.0f);
    } else {
      auto r = make_optimizer(f.n);
      if (!r.ok()) return std::move(r).status();
      if (!*r) return invalid_argument("diloco: optimizer factory returned null for fragment " + std::to_string(p));
      if ((*r)->size() != f.n)
        return invalid_argument("diloco: outer optimizer of fragment " + std::to_string(p) + " has size " +
                                std::to_string((*r)->size()) + ", expected " + std::to_string(f.n));
      f.opt = std::move(r).value();
    }
    f.st.tensors = f.tensors.size();
    f.st.elements = f.n;
    f.st.offset = f.offset;
  }
  std::vector<std::unique_ptr<net::averager>> avgs;
  DTRAIN_RETURN_IF_ERROR(s->make_averagers(make_averager, avgs));
  s->install_averagers(avgs);

  s->async = options.overlap_steps > 0 || options.delay != delay_mode::none;
  if (s->async) {
    s->queue.assign(P, 0);
    state* raw = s.get();
    s->worker = std::thread([raw] { raw->worker_loop(); });
  }
  return std::unique_ptr<diloco_engine>(new diloco_engine(std::move(s)));
}

status diloco_engine::after_inner_step() {
  state& s = *s_;
  ++s.step;
  status err;
  auto keep = [&](status st) {
    if (err.ok() && !st.ok()) err = std::move(st);
  };
  const auto P = static_cast<std::uint32_t>(s.frags.size());
  if (s.o.delay == delay_mode::none && s.o.overlap_steps > 0) {
    for (std::uint32_t p = 0; p < P; ++p) {
      const fragment& f = s.frags[p];
      if (f.in_flight && s.step == f.launched_at + s.o.overlap_steps) keep(s.finish_overlap(p, s.o.merge_alpha));
    }
  }
  for (std::uint32_t p = 0; p < P; ++p)
    if (syncs_at(s.step, s.frags[p].offset, s.o.inner_steps)) keep(s.sync_due(p));
  return err;
}

status diloco_engine::sync_now() { return s_->flush(0, static_cast<std::uint32_t>(s_->frags.size())); }

status diloco_engine::sync_fragment(std::size_t p) {
  DTRAIN_ASSERT(p < s_->frags.size());
  return s_->flush(static_cast<std::uint32_t>(p), static_cast<std::uint32_t>(p + 1));
}

void diloco_engine::mark_joiner() noexcept {
  for (auto& f : s_->frags) f.joiner_next = true;
}

void diloco_engine::expect_joiners(std::uint32_t joiners) noexcept {
  for (auto& f : s_->frags) f.joiners_next = joiners;
}

status diloco_engine::reset_averagers(const averager_factory& make_averager) {
  if (!make_averager) return invalid_argument("diloco: empty averager factory");
  for (std::size_t p = 0; p < s_->frags.size(); ++p)
    if (s_->frags[p].in_flight)
      return failed_precondition("diloco: fragment " + std::to_string(p) + " has an exchange in flight");
  std::vector<std::unique_ptr<net::averager>> avgs;
  DTRAIN_RETURN_IF_ERROR(s_->make_averagers(make_averager, avgs));
  s_->install_averagers(avgs);
  return ok_status();
}

const diloco_options& diloco_engine::options() const noexcept { return s_->o; }
std::size_t diloco_engine::fragments() const noexcept { return s_->frags.size(); }

std::span<const std::size_t> diloco_engine::fragment_tensors(std::size_t p) const noexcept {
  DTRAIN_ASSERT(p < s_->frags.size());
  return s_->frags[p].tensors;
}

std::span<const float> diloco_engine::snapshot(std::size_t p) const noexcept {
  DTRAIN_ASSERT(p < s_->frags.size());
  return s_->frags[p].snapshot;
}

std::span<const float> diloco_engine::residual(std::size_t p) const noexcept {
  DTRAIN_ASSERT(p < s_->frags.size());
  return s_->frags[p].ef;
}

optim::outer_optimizer* diloco_engine::outer_optimizer(std::size_t p) noexcept {
  DTRAIN_ASSERT(p < s_->frags.size());
  return s_->frags[p].opt.get();
}

bool diloco_engine::in_flight(std::size_t p) const noexcept {
  DTRAIN_ASSERT(p < s_->frags.size());
  return s_->frags[p].in_flight;
}

std::uint64_t diloco_engine::inner_steps() const noexcept { return s_->step; }

const fragment_stats& diloco_engine::stats(std::size_t p) const noexcept {
  DTRAIN_ASSERT(p < s_->frags.size());
  return s_->frags[p].st;
}

engine_stats diloco_engine::totals() const noexcept {
  engine_stats t;
  t.inner_steps = s_->step;
  for (const auto& f : s_->frags) {
    t.exchanges += f.st.exchanges;
    t.failures += f.st.failures;
    t.outer_steps += f.st.outer_steps;
    t.bytes_sent += f.st.bytes_sent;
    t.bytes_received += f.st.bytes_received;
  }
  return t;
}

}  // namespace dtrain::diloco
