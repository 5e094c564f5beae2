// DiLoCo acceptance test (reference notes diloco.md §(c) 2): logistic regression on
// synthetic data, K = 4 workers, per-worker batch 16, 400 inner Adam steps (β = 0.9,
// 0.95), each method's lr tuned over {3e-3, 1e-2, 3e-2}. DiLoCo (H = 50, outer Nesterov
// 0.7/0.9) must reach a test loss no worse than the best data-parallel run on each of 3
// seeds while communicating 8 times instead of 400, and outer Nesterov must beat FedAvg
// (outer SGD lr 1) on average.
#include "dtrain/diloco/engine.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "diloco_test_util.h"
#include "dtrain/core/rng.h"
#include "dtrain/optim/outer_adam.h"
#include "dtrain/optim/outer_sgd.h"

using namespace dtrain;
using namespace dtrain::diloco;
using namespace dtrain::diloco::test;

namespace {

constexpr std::size_t kDim = 100;
constexpr std::size_t kWorkers = 4;
constexpr std::size_t kBatch = 16;
constexpr std::uint64_t kSteps = 400;
constexpr std::uint32_t kH = 50;

// y ~ Bernoulli(sigmoid(w*·x)), x ~ N(0, I), w* ~ N(0, I).
struct dataset {
  std::size_t n_train = 0, n_test = 0;
  std::vector<float> x_train, x_test;  // row-major, kDim per row
  std::vector<float> y_train, y_test;  // 0 or 1
  std::vector<float> w_true;
};

dataset make_data(std::uint64_t seed, std::size_t n_train, std::size_t n_test) {
  dataset d;
  d.n_train = n_train;
  d.n_test = n_test;
  counter_rng g(seed, 1);
  d.w_true.resize(kDim);
  for (float& v : d.w_true) v = g.next_normal();
  auto fill = [&](std::vector<float>& x, std::vector<float>& y, std::size_t n) {
    x.resize(n * kDim);
    y.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      double z = 0;
      for (std::size_t j = 0; j < kDim; ++j) {
        x[i * kDim + j] = g.next_normal();
        z += static_cast<double>(x[i * kDim + j]) * d.w_true[j];
      }
      const double p = 1.0 / (1.0 + std::exp(-z));
      y[i] = static_cast<double>(g.next_uniform()) < p ? 1.0f : 0.0f;
    }
  };
  fill(d.x_train, d.y_train, n_train);
  fill(d.x_test, d.y_test, n_test);
  return d;
}

double mean_loss(const std::vector<float>& x, const std::vector<float>& y, std::size_t n, std::span<const float> w) {
  double total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double z = 0;
    for (std::size_t j = 0; j < kDim; ++j) z += static_cast<double>(x[i * kDim + j]) * w[j];
    // log(1 + e^z) − y·z, computed stably.
    total += std::max(z, 0.0) + std::log1p(std::exp(-std::fabs(z))) - y[i] * z;
  }
  return total / static_cast<double>(n);
}

// Worker k's shard is the samples i ≡ k (mod K), visited in a fixed shuffled order.
std::vector<std::size_t> shard_order(std::size_t n_train, std::size_t k, std::uint64_t seed) {
  std::vector<std::size_t> idx;
  for (std::size_t i = k; i < n_train; i += kWorkers) idx.push_back(i);
  counter_rng g(seed, 100 + k);
  for (std::size_t i = idx.size() - 1; i > 0; --i)
    std::swap(idx[i], idx[g.next_below(static_cast<std::uint32_t>(i + 1))]);
  return idx;
}

// Gradient of the mean loss over worker k's batch at inner step `step` (1-based).
void batch_grad(const dataset& d, const std::vector<std::size_t>& order, std::uint64_t step, std::span<const float> w,
                std::span<float> g) {
  std::vector<double> acc(kDim, 0.0);
  for (std::size_t b = 0; b < kBatch; ++b) {
    const std::size_t i = order[((step - 1) * kBatch + b) % order.size()];
    const float* xi = &d.x_train[i * kDim];
    double z = 0;
    for (std::size_t j = 0; j < kDim; ++j) z += static_cast<double>(xi[j]) * w[j];
    const double r = 1.0 / (1.0 + std::exp(-z)) - d.y_train[i];
    for (std::size_t j = 0; j < kDim; ++j) acc[j] += r * xi[j];
  }
  for (std::size_t j = 0; j < kDim; ++j) g[j] = static_cast<float>(acc[j] / kBatch);
}

optim::adam_options inner_adam(double lr) {
  optim::adam_options a;
  a.lr = lr;
  a.beta1 = 0.9;
  a.beta2 = 0.95;
  return a;
}

// Data parallel: every step the K batch gradients are averaged (one communication round
// per step) and one Adam step is taken on the shared model.
double run_dp(const dataset& d, const std::vector<std::vector<std::size_t>>& orders, double lr) {
  std::vector<float> w(kDim, 0.0f), g(kDim), gsum(kDim);
  auto adam = optim::outer_adam::create(kDim, inner_adam(lr));
  REQUIRE(adam.ok());
  for (std::uint64_t s = 1; s <= kSteps; ++s) {
    std::fill(gsum.begin(), gsum.end(), 0.0f);
    for (std::size_t k = 0; k < kWorkers; ++k) {
      batch_grad(d, orders[k], s, w, g);
      for (std::size_t j = 0; j < kDim; ++j) gsum[j] += g[j];
    }
    for (float& v : gsum) v /= static_cast<float>(kWorkers);
    REQUIRE(adam->step(w, gsum).ok());
  }
  return mean_loss(d.x_test, d.y_test, d.n_test, w);
}

// DiLoCo through the engine: K peers on threads, each with its own inner Adam.
double run_diloco(const dataset& d, const std::vector<std::vector<std::size_t>>& orders, double lr,
                  const optim::sgd_options& outer, std::uint64_t* exchanges) {
  net::inproc_fabric fabric(kWorkers);
  std::vector<std::vector<float>> final_w(kWorkers);
  std::vector<status> errors(kWorkers);
  std::vector<std::uint64_t> ex(kWorkers, 0);
  run_peers(kWorkers, [&](std::uint32_t r) {
    std::vector<float> w(kDim, 0.0f), g(kDim);
    auto adam = optim::outer_adam::create(kDim, inner_adam(lr));
    if (!adam.ok()) {
      errors[r] = adam.status();
      return;
    }
    diloco_options o;
    o.inner_steps = kH;
    auto make = [&](std::size_t n, std::uint32_t ch) { return reference_averager::create(fabric.endpoint(r), n, ch); };
    auto e = diloco_engine::create({std::span<float>(w)}, make, o, sgd_factory(outer));
    if (!e.ok()) {
      errors[r] = e.status();
      return;
    }
    for (std::uint64_t s = 1; s <= kSteps; ++s) {
      batch_grad(d, orders[r], s, w, g);
      status st = adam->step(w, g);
      if (st.ok()) st = (*e)->after_inner_step();
      if (!st.ok()) {
        errors[r] = st;
        return;
      }
    }
    ex[r] = (*e)->totals().exchanges;
    final_w[r] = w;
  });
  for (std::size_t r = 0; r < kWorkers; ++r) REQUIRE(errors[r].ok());
  // 400 is a multiple of H: the run ends on a sync, every worker holds the global model.
  for (std::size_t r = 1; r < kWorkers; ++r) REQUIRE(same_bits(final_w[r], final_w[0]));
  *exchanges = ex[0];
  return mean_loss(d.x_test, d.y_test, d.n_test, final_w[0]);
}

}  // namespace

TEST_CASE("diloco acceptance: DiLoCo matches tuned data parallel with 50x fewer rounds (logistic regression)") {
  const double lrs[] = {3e-3, 1e-2, 3e-2};
  const std::uint64_t seeds[] = {1, 2, 3};
  double sum_nesterov = 0, sum_fedavg = 0;
  for (std::uint64_t seed : seeds) {
    const dataset d = make_data(seed, 32768, 8192);
    std::vector<std::vector<std::size_t>> orders;
    for (std::size_t k = 0; k < kWorkers; ++k) orders.push_back(shard_order(d.n_train, k, seed));
    double best_dp = INFINITY, best_diloco = INFINITY, best_fedavg = INFINITY;
    for (double lr : lrs) {
      std::uint64_t ex_n = 0, ex_f = 0;
      best_dp = std::min(best_dp, run_dp(d, orders, lr));
      best_diloco = std::min(best_diloco, run_diloco(d, orders, lr, optim::sgd_options::diloco(), &ex_n));
      best_fedavg = std::min(best_fedavg, run_diloco(d, orders, lr, optim::sgd_options::fedavg(), &ex_f));
      CHECK(ex_n == kSteps / kH);  // 8 rounds vs DP's 400
      CHECK(ex_f == kSteps / kH);
    }
    const double optimum = mean_loss(d.x_test, d.y_test, d.n_test, d.w_true);
    CAPTURE(seed, optimum, best_dp, best_diloco, best_fedavg);
    CHECK(best_diloco <= best_dp);
    CHECK(best_diloco > optimum - 0.05);  // sanity: nobody beats the true model by much
    UNSCOPED_INFO("seed " << seed << ": optimum " << optimum << ", best DP " << best_dp << ", DiLoCo "
                          << best_diloco << ", FedAvg " << best_fedavg);
    sum_nesterov += best_diloco;
    sum_fedavg += best_fedavg;
  }
  CHECK(sum_nesterov < sum_fedavg);
}
