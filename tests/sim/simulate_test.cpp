// The simulation harness behind examples/diloco_sim and bench/compare: it trains, it is
// deterministic, and its byte accounting matches the collectives' message pattern.
#include "sim/simulate.h"

#include <catch2/catch.hpp>

#include <cmath>

using namespace dtrain;

namespace {

sim::run_config tiny(sim::method m) {
  sim::run_config c;
  c.method = m;
  c.workers = 3;
  c.steps = 200;
  c.batch = 4;
  c.inner_steps = 10;
  c.eval_every = 100;
  c.inner.lr = 1e-2;
  c.model.d_model = 16;
  c.model.n_head = 2;
  c.model.d_ff = 32;
  c.model.n_layer = 1;
  c.model.context = 8;
  return c;
}

const testbed::markov_source& source() {
  static auto s = testbed::markov_source::create(8);
  REQUIRE(s.ok());
  return *s;
}

}  // namespace

TEST_CASE("sim: DDP and DiLoCo train, and DiLoCo sends H times fewer bytes") {
  const auto& data = source();
  auto ddp = sim::run(tiny(sim::method::ddp), data);
  auto dil = sim::run(tiny(sim::method::diloco), data);
  REQUIRE(ddp.ok());
  REQUIRE(dil.ok());
  REQUIRE(ddp->curve.size() == 2);
  REQUIRE(dil->curve.size() == 2);
  CHECK(ddp->curve.back().step == 200);
  // Below the best loss without context (the unigram entropy): both learned something.
  const double unigram = data.chain().unigram_entropy();
  CHECK(ddp->final_loss < unigram - 0.1);
  CHECK(dil->final_loss < unigram - 0.1);
  // Same ring, same count: 200 gradient all-reduces against 20 outer steps.
  CHECK(ddp->bytes_per_worker == Approx(10.0 * dil->bytes_per_worker).epsilon(1e-12));
  CHECK(dil->exchanges == 20);
  CHECK(ddp->evaluated == "worker 0");
}

TEST_CASE("sim: a run is deterministic, and a checkpoint replaces pretraining") {
  const auto& data = source();
  auto c = tiny(sim::method::diloco);
  c.codec = "minmax:bits=8";
  auto a = sim::run(c, data);
  auto b = sim::run(c, data);
  REQUIRE((a.ok() && b.ok()));
  REQUIRE(a->curve.size() == b->curve.size());
  for (std::size_t i = 0; i < a->curve.size(); ++i) {
    CHECK(a->curve[i].val_loss == b->curve[i].val_loss);
    CHECK(a->curve[i].bytes_per_worker == b->curve[i].bytes_per_worker);
  }

  c.pretrain_steps = 15;
  auto ckpt = sim::pretrain(c, data);
  REQUIRE(ckpt.ok());
  auto pre = sim::run(c, data);
  auto c2 = c;
  c2.initial_params = *ckpt;
  auto from_ckpt = sim::run(c2, data);
  REQUIRE((pre.ok() && from_ckpt.ok()));
  CHECK(pre->final_loss == from_ckpt->final_loss);
  CHECK(pre->final_loss != a->final_loss);

  std::vector<float> wrong(3);
  c2.initial_params = wrong;
  CHECK(sim::run(c2, data).status().code() == status_code::invalid_argument);
}

TEST_CASE("sim: gossip evaluates the mean model; bad configs are refused") {
  const auto& data = source();
  auto c = tiny(sim::method::diloco);
  c.collective = "gossip";
  c.topology = "ring";
  auto g = sim::run(c, data);
  REQUIRE(g.ok());
  CHECK(g->evaluated == "mean of workers");

  auto bad = tiny(sim::method::ddp);
  bad.collective = "butterfly";
  CHECK(sim::run(bad, data).status().code() == status_code::invalid_argument);
  auto bad_topo = c;
  bad_topo.topology = "moebius";
  CHECK(sim::run(bad_topo, data).status().code() == status_code::invalid_argument);
  auto bad_codec = tiny(sim::method::diloco);
  bad_codec.codec = "topk";  // the ring refuses sparse codecs
  CHECK(sim::run(bad_codec, data).status().code() == status_code::invalid_argument);
  auto zero = tiny(sim::method::diloco);
  zero.steps = 0;
  CHECK(sim::run(zero, data).status().code() == status_code::invalid_argument);
}
