// K workers as threads: each owns a model, an AdamW and (DiLoCo) an engine or (DDP) a
// gradient all-reduce, all over one in-process fabric. Barriers line the workers up at
// every curve point, where worker 0 evaluates.
#include "sim/simulate.h"

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "dtrain/diloco/engine.h"
#include "dtrain/net/allreduce_butterfly.h"
#include "dtrain/net/allreduce_ring.h"
#include "dtrain/net/neighbor_average.h"
#include "dtrain/net/noloco_pairing.h"
#include "dtrain/net/push_sum.h"
#include "dtrain/net/sparse_allgather.h"
#include "dtrain/net/transport_inproc.h"
#include "dtrain/optim/lr_schedule.h"
#include "dtrain/topology/generators.h"
#include "dtrain/topology/mixing.h"
#include "dtrain/topology/schedule.h"
#include "testbed/eval.h"

namespace dtrain::sim {

bool needs_topology(const std::string& collective) { return collective == "gossip" || collective == "push_sum"; }

result<topology::schedule> make_schedule(const std::string& name, std::size_t n, std::uint64_t seed,
                                         bool push_sum) {
  if (name == "one_peer_exponential") return topology::one_peer_exponential(n);
  result<topology::graph> g = invalid_argument("unknown topology '" + name + "'");
  if (name == "complete") g = topology::complete(n);
  else if (name == "ring") g = topology::ring(n);
  else if (name == "bidirectional_ring") g = topology::bidirectional_ring(n);
  else if (name == "torus") g = topology::torus(n);
  else if (name == "exponential") g = topology::exponential(n);
  else if (name == "expander") {
    // Degree 4 where possible; fewer peers take the largest degree a regular graph allows.
    std::size_t d = std::min<std::size_t>(4, n - 1);
    if ((n * d) % 2 != 0) --d;
    g = topology::random_regular(n, d, seed);
  }
  else if (name == "small_world") g = topology::small_world(n, 4, 0.2, seed);
  else if (name == "hypercube") g = topology::hypercube(n);
  if (!g.ok()) return g.status();
  auto w = push_sum ? topology::push_sum_weights(*g) : topology::uniform_weights(*g);
  if (!w.ok()) return w.status();
  return topology::static_schedule(std::move(*w));
}

result<std::unique_ptr<net::averager>> make_averager(const run_config& c, net::transport& t, std::size_t count,
                                                     std::uint32_t channel, const topology::schedule* sched) {
  net::collective_options o;
  o.codec = c.codec;
  o.channel = channel;
  o.timeout = c.collective_timeout;
  auto up = [](auto r) -> result<std::unique_ptr<net::averager>> {
    if (!r.ok()) return r.status();
    return std::unique_ptr<net::averager>(std::move(*r));
  };
  if (c.collective == "ring") return up(net::ring_allreduce::create(t, count, o));
  if (c.collective == "butterfly") return up(net::butterfly_allreduce::create(t, count, o));
  if (c.collective == "sparse") return up(net::sparse_allgather::create(t, count, o));
  if (c.collective == "gossip") return up(net::neighbor_average::create(t, count, o, *sched));
  if (c.collective == "push_sum") return up(net::push_sum::create(t, count, o, *sched));
  if (c.collective == "noloco") return up(net::noloco_pairing::create(t, count, o, c.seed + 0x9e37));
  return invalid_argument("unknown collective '" + c.collective + "'");
}

namespace {

struct worker {
  std::unique_ptr<testbed::tiny_gpt> model;
  std::unique_ptr<testbed::adamw> inner;
  std::unique_ptr<diloco::diloco_engine> engine;  // DiLoCo
  std::unique_ptr<net::averager> grad_avg;        // DDP
  std::vector<std::uint8_t> tokens;
};

}  // namespace

status run_config::validate() const {
  if (workers == 0 || workers > 256) return invalid_argument("run_config.workers must be in [1, 256]");
  if (steps == 0) return invalid_argument("run_config.steps must be >= 1");
  if (batch == 0) return invalid_argument("run_config.batch must be >= 1");
  if (inner_steps == 0) return invalid_argument("run_config.inner_steps (H) must be >= 1");
  if (eval_every == 0) return invalid_argument("run_config.eval_every must be >= 1");
  if (!(warmup_fraction >= 0 && warmup_fraction < 1)) return invalid_argument("run_config.warmup_fraction must be in [0, 1)");
  if (!(final_lr_fraction >= 0 && final_lr_fraction <= 1))
    return invalid_argument("run_config.final_lr_fraction must be in [0, 1]");
  if (method == method::ddp && collective != "ring")
    return invalid_argument("run_config: DDP all-reduces gradients with the ring only");
  return inner.validate();
}

testbed::gpt_config model_config(const run_config& c, const testbed::data_source& data) {
  testbed::gpt_config mc = c.model;
  mc.vocab = data.vocab();
  mc.context = data.context();
  mc.max_batch = std::max(mc.max_batch, c.batch);
  mc.init_seed = c.seed;
  return mc;
}

// Single-worker pretraining on a data stream no worker uses (the last worker id).
result<std::vector<float>> pretrain(const run_config& c, const testbed::data_source& data) {
  DTRAIN_RETURN_IF_ERROR(c.validate());
  const testbed::gpt_config mc = model_config(c, data);
  auto m = testbed::tiny_gpt::create(mc);
  if (!m.ok()) return m.status();
  auto a = testbed::adamw::create(m->param_count(), c.inner);
  if (!a.ok()) return a.status();
  DTRAIN_RETURN_IF_ERROR(a->set_decay_mask(testbed::decay_mask(m->param_layout())));
  const auto warm = std::max<std::uint64_t>(1, c.pretrain_steps / 10);
  const optim::lr_schedule lr = optim::lr_schedule::linear_warmup(c.inner.lr, warm);
  std::vector<std::uint8_t> tokens(c.batch * data.sequence_length());
  const std::uint64_t stream = testbed::max_workers - 1;
  for (std::size_t s = 0; s < c.pretrain_steps; ++s) {
    DTRAIN_RETURN_IF_ERROR(data.train_batch(c.seed, stream, s, tokens));
    auto loss = m->forward_backward(tokens, c.batch);
    if (!loss.ok()) return loss.status();
    DTRAIN_RETURN_IF_ERROR(a->set_lr(lr.at(s)));
    DTRAIN_RETURN_IF_ERROR(a->step(m->params(), m->grads()));
  }
  return std::vector<float>(m->params().begin(), m->params().end());
}

result<run_result> run(const run_config& c, const testbed::data_source& data, const progress_fn& progress) {
  DTRAIN_RETURN_IF_ERROR(c.validate());
  const testbed::gpt_config mc = model_config(c, data);
  DTRAIN_RETURN_IF_ERROR(mc.validate());
  const std::size_t k = c.workers;

  topology::schedule sched;
  if (c.method == method::diloco && needs_topology(c.collective)) {
    auto s = make_schedule(c.topology, k, c.seed, c.collective == "push_sum");
    if (!s.ok()) return s.status();
    sched = std::move(*s);
  }

  net::inproc_fabric fabric(k);
  std::vector<worker> ws(k);
  const auto total = static_cast<std::uint64_t>(c.steps);
  const auto warm = static_cast<std::uint64_t>(c.warmup_fraction * static_cast<double>(c.steps));
  const optim::lr_schedule lr = optim::lr_schedule::cosine(c.inner.lr, c.inner.lr * c.final_lr_fraction, warm, total);
  DTRAIN_RETURN_IF_ERROR(lr.validate());

  for (std::size_t r = 0; r < k; ++r) {
    worker& w = ws[r];
    auto m = testbed::tiny_gpt::create(mc);
    if (!m.ok()) return m.status();
    w.model = std::make_unique<testbed::tiny_gpt>(std::move(*m));
    auto a = testbed::adamw::create(w.model->param_count(), c.inner);
    if (!a.ok()) return a.status();
    w.inner = std::make_unique<testbed::adamw>(std::move(*a));
    DTRAIN_RETURN_IF_ERROR(w.inner->set_decay_mask(testbed::decay_mask(w.model->param_layout())));
    w.tokens.resize(c.batch * data.sequence_length());
  }
  // Whether every worker ends each outer step with the same parameters: true for DDP,
  // and for DiLoCo when every averager the engines build says so.
  bool consensus = true;
  // Pretraining first: the engines snapshot the parameters when they are created.
  if (!c.initial_params.empty() || c.pretrain_steps > 0) {
    std::vector<float> own;
    std::span<const float> init = c.initial_params;
    if (init.empty()) {
      auto p = pretrain(c, data);
      if (!p.ok()) return p.status();
      own = std::move(*p);
      init = own;
    }
    if (init.size() != ws[0].model->param_count())
      return invalid_argument("run_config.initial_params holds " + std::to_string(init.size()) +
                              " floats; the model has " + std::to_string(ws[0].model->param_count()));
    for (auto& w : ws) std::copy(init.begin(), init.end(), w.model->params().begin());
  }
  for (std::size_t r = 0; r < k; ++r) {
    worker& w = ws[r];
    net::transport& t = fabric.endpoint(static_cast<net::rank_t>(r));
    if (c.method == method::ddp) {
      auto g = make_averager(c, t, w.model->param_count(), 0, nullptr);
      if (!g.ok()) return g.status();
      w.grad_avg = std::move(*g);
      continue;
    }
    diloco::diloco_options o;
    o.inner_steps = c.inner_steps;
    o.fragments = c.fragments;
    o.overlap_steps = c.overlap_steps;
    o.merge_alpha = c.merge_alpha;
    o.error_feedback = c.error_feedback;
    o.ef_beta = c.ef_beta;
    o.noloco.enabled = c.collective == "noloco";
    std::vector<std::span<float>> tensors;
    auto p = w.model->params();
    for (const auto& ti : w.model->param_layout()) tensors.push_back(p.subspan(ti.offset, ti.size()));
    optim::sgd_options so{c.outer_lr, c.outer_momentum, 0, 0, c.nesterov && c.outer_momentum > 0, false};
    auto e = diloco::diloco_engine::create(
        std::move(tensors),
        [&c, &t, &sched, &consensus](std::size_t count, std::uint32_t channel) {
          auto a = make_averager(c, t, count, channel, &sched);
          if (a.ok()) consensus = consensus && (*a)->exact_consensus();
          return a;
        },
        o, diloco::sgd_factory(so));
    if (!e.ok()) return e.status();
    w.engine = std::move(*e);
  }
  auto eval_model = testbed::tiny_gpt::create(mc);
  if (!eval_model.ok()) return eval_model.status();

  run_result out;
  out.evaluated = consensus ? "worker 0" : "mean of workers";
  std::mutex err_mu;
  status first_error;
  std::atomic<bool> failed{false};
  auto fail = [&](status s, std::size_t r, std::size_t step) {
    std::lock_guard lock(err_mu);
    if (first_error.ok())
      first_error = dtrain::status(s.code(), "worker " + std::to_string(r) + " step " + std::to_string(step) + ": " +
                                                 s.message());
    failed = true;
    for (std::size_t i = 0; i < k; ++i) fabric.endpoint(static_cast<net::rank_t>(i)).abort();
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto bytes_so_far = [&] {
    double sum = 0;
    for (std::size_t i = 0; i < k; ++i)
      sum += static_cast<double>(fabric.endpoint(static_cast<net::rank_t>(i)).stats().total_sent());
    return sum / static_cast<double>(k);
  };
  // Worker 0 evaluates while the others wait at the second barrier.
  auto evaluate = [&](std::size_t step) -> status {
    auto dst = eval_model->params();
    if (consensus) {
      std::copy(ws[0].model->params().begin(), ws[0].model->params().end(), dst.begin());
    } else {
      std::fill(dst.begin(), dst.end(), 0.0f);
      for (const auto& w : ws) {
        auto src = w.model->params();
        for (std::size_t i = 0; i < dst.size(); ++i) dst[i] += src[i];
      }
      const float inv = 1.0f / static_cast<float>(k);
      for (float& v : dst) v *= inv;
    }
    auto l = testbed::eval_loss(*eval_model, data);
    if (!l.ok()) return l.status();
    point pt{step, static_cast<double>(*l), bytes_so_far(),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
    out.curve.push_back(pt);
    if (progress) progress(c, pt);
    return ok_status();
  };

  std::barrier sync(static_cast<std::ptrdiff_t>(k));
  auto body = [&](std::size_t r) {
    worker& w = ws[r];
    for (std::size_t s = 0; s < c.steps; ++s) {
      if (failed) break;
      status st = data.train_batch(c.seed, r, s, w.tokens);
      if (st.ok()) {
        auto loss = w.model->forward_backward(w.tokens, c.batch);
        if (!loss.ok()) st = loss.status();
      }
      if (st.ok()) st = w.inner->set_lr(lr.at(s));
      if (st.ok() && w.grad_avg) st = w.grad_avg->average(w.model->grads(), s);
      if (st.ok()) st = w.inner->step(w.model->params(), w.model->grads());
      if (st.ok() && w.engine) {
        st = w.engine->after_inner_step();
        // A last outer step when the run does not end on one already.
        if (st.ok() && s + 1 == c.steps && (c.steps % c.inner_steps != 0 || c.fragments > 1 || c.overlap_steps > 0))
          st = w.engine->sync_now();
      }
      if (!st.ok()) {
        fail(std::move(st), r, s);
        break;
      }
      if ((s + 1) % c.eval_every == 0 || s + 1 == c.steps) {
        sync.arrive_and_wait();
        if (failed) break;
        if (r == 0) {
          status e = evaluate(s + 1);
          if (!e.ok()) fail(std::move(e), r, s);
        }
        sync.arrive_and_wait();
      }
    }
    sync.arrive_and_drop();
  };
  std::vector<std::thread> threads;
  for (std::size_t r = 1; r < k; ++r) threads.emplace_back(body, r);
  body(0);
  for (auto& t : threads) t.join();
  if (!first_error.ok()) return first_error;

  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.bytes_per_worker = bytes_so_far();
  out.final_loss = out.curve.empty() ? std::nan("") : out.curve.back().val_loss;
  out.exchanges = ws[0].engine ? ws[0].engine->totals().exchanges : c.steps;
  return out;
}

}  // namespace dtrain::sim
