// sim/simulate.h: one training run of the tiny GPT by K workers as threads of this
// process, over the in-process transport: DDP (a gradient all-reduce every step) or
// DiLoCo (the dtrain engine) with a chosen codec, collective, topology and outer rule.
// Shared by examples/diloco_sim and bench/compare. Guide: docs/compare.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <chrono>
#include <memory>

#include "dtrain/core/status.h"
#include "dtrain/net/averager.h"
#include "dtrain/net/transport.h"
#include "dtrain/topology/schedule.h"
#include "testbed/adamw.h"
#include "testbed/corpus.h"
#include "testbed/tiny_gpt.h"

namespace dtrain::sim {

enum class method : std::uint8_t {
  ddp = 0,     ///< every step: all-reduce the gradients (ring), one AdamW step everywhere
  diloco = 1,  ///< H local AdamW steps, then the engine's outer step
};

/// One run. Compute is the same for every method at equal (workers, steps, batch).
struct run_config {
  std::string label;                 ///< name in tables and plots
  sim::method method = method::diloco;
  std::size_t workers = 4;           ///< K
  std::size_t steps = 1000;          ///< inner steps per worker
  std::size_t batch = 8;             ///< sequences per worker per step
  std::uint32_t inner_steps = 50;    ///< H (DiLoCo)
  /// Wire codec spec (codec/registry.h); for DDP the gradients' codec.
  std::string codec = "identity";
  /// ring | butterfly | sparse (sparse_allgather, mean over all) | gossip
  /// (neighbor_average on `topology`) | push_sum (on `topology`) | noloco (pairs; NoLoCo rule)
  std::string collective = "ring";
  /// complete | ring | bidirectional_ring | torus | exponential | one_peer_exponential |
  /// expander (d = 4) | small_world (k = 4, beta = 0.2) | hypercube
  std::string topology = "complete";
  /// Outer SGD: Nesterov 0.7/0.9 by default; momentum 0 and lr 1 is FedAvg.
  double outer_lr = 0.7;
  double outer_momentum = 0.9;
  bool nesterov = true;
  bool error_feedback = false;
  float ef_beta = 1.0f;
  std::uint32_t fragments = 1;       ///< Streaming DiLoCo P
  std::uint32_t overlap_steps = 0;   ///< τ
  float merge_alpha = 0.0f;          ///< α
  testbed::adamw_options inner{};    ///< inner AdamW; lr is the peak of a warmup + cosine schedule
  double warmup_fraction = 0.05;     ///< of steps
  double final_lr_fraction = 0.1;    ///< cosine floor, as a fraction of the peak
  std::uint64_t seed = 0;            ///< model init and data
  /// Steps of single-worker AdamW pretraining (batch `batch`, constant lr inner.lr after a
  /// 10% warmup) before the K workers start, as DiLoCo's main experiments start from a
  /// pretrained checkpoint (arXiv 2311.08105 §3). Every method of a comparison starts from
  /// the same checkpoint, so compute stays equal. Not counted in `steps` or the curve.
  std::size_t pretrain_steps = 0;
  /// A checkpoint from pretrain() to start from instead of pretraining again (e.g. one per
  /// seed, shared by every run of a sweep). Must hold the model's parameter count; the
  /// caller keeps it alive during run(). Empty: pretrain_steps decides.
  std::span<const float> initial_params;
  std::size_t eval_every = 50;       ///< validation-loss points (also at the last step)
  testbed::gpt_config model = testbed::gpt_config::small();
  /// Deadline of one exchange (collective_options::timeout).
  std::chrono::milliseconds collective_timeout{120000};
  /// invalid_argument naming the first bad field.
  status validate() const;
};

/// A point of the learning curve.
struct point {
  std::size_t step = 0;             ///< inner steps done by each worker
  double val_loss = 0;              ///< validation loss (nats) of the evaluated model
  double bytes_per_worker = 0;      ///< mean payload bytes sent per worker so far
  double seconds = 0;               ///< wall time since the start
};

struct run_result {
  std::vector<point> curve;
  double final_loss = 0;            ///< val loss after the last step (and final sync)
  double bytes_per_worker = 0;      ///< mean payload bytes sent per worker in total
  double seconds = 0;
  std::uint64_t exchanges = 0;      ///< collective calls per worker
  /// Which model was evaluated: "worker 0" where every worker holds the same parameters,
  /// "mean of workers" for gossip (no exact consensus).
  std::string evaluated;
};

/// Called from the run's thread at each curve point.
using progress_fn = std::function<void(const run_config&, const point&)>;

/// Runs `c` on `data`. Deterministic: every reduction has a fixed order and no result
/// depends on thread timing, so a rerun of a config gives the same curve (the seconds
/// aside).
/// Errors: invalid_argument for a bad config or one the data does not fit (vocab,
/// context); any error of the model, the engine or a collective (with the step).
result<run_result> run(const run_config& c, const testbed::data_source& data, const progress_fn& progress = {});

/// The parameters after c.pretrain_steps steps of single-worker AdamW from the seed's
/// initialisation (the checkpoint run() would compute). Errors: as run().
result<std::vector<float>> pretrain(const run_config& c, const testbed::data_source& data);

// ---- building blocks, shared with examples/swarm ------------------------------------

/// True for collectives that need a topology schedule (gossip, push_sum).
bool needs_topology(const std::string& collective);
/// The schedule of `name` (run_config::topology) over n peers; push-sum weights if asked.
/// Errors: invalid_argument for an unknown name or one n does not allow.
result<topology::schedule> make_schedule(const std::string& name, std::size_t n, std::uint64_t seed, bool push_sum);
/// The averager c.collective with c.codec over `t` (sched: the topology for gossip and
/// push_sum). Errors: the collective's create() errors; invalid_argument for an unknown name.
result<std::unique_ptr<net::averager>> make_averager(const run_config& c, net::transport& t, std::size_t count,
                                                     std::uint32_t channel, const topology::schedule* sched);
/// The model config c.model adapted to `data` (vocab, context) and c (batch, seed).
testbed::gpt_config model_config(const run_config& c, const testbed::data_source& data);

}  // namespace dtrain::sim
