// Tests for optim/outer_sgd.h: torch.optim.SGD semantics (vectors, a float torch-order
// reference, a double reference), FedAvg identities, validation and error atomicity.
#include "dtrain/optim/outer_sgd.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "dtrain/optim/lr_schedule.h"
#include "dtrain/optim/outer_adam.h"
#include "optim/optim_test_util.h"

using namespace dtrain;
using namespace dtrain::optim;
using dtrain::optim::test::randn;

namespace {

// ---- a tiny JSON number reader for outer_sgd.json -------------------------------------
struct sgd_case {
  std::string name;
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  std::vector<double> theta;
};

std::string data_dir() { return DTRAIN_TEST_SOURCE_DIR "/optim/data"; }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// Value text right after "key": inside [from, to).
std::size_t value_at(const std::string& j, const std::string& key, std::size_t from, std::size_t to) {
  const std::size_t k = j.find("\"" + key + "\":", from);
  if (k == std::string::npos || k >= to) return std::string::npos;
  std::size_t p = j.find(':', k) + 1;
  while (p < j.size() && (j[p] == ' ' || j[p] == '\n')) ++p;
  return p;
}

std::vector<sgd_case> parse_cases(const std::string& j) {
  std::vector<sgd_case> out;
  std::size_t pos = j.find("\"cases\"");
  while (pos != std::string::npos) {
    const std::size_t start = j.find("\"name\"", pos);
    if (start == std::string::npos) break;
    const std::size_t end = j.find('}', start);
    sgd_case c;
    std::size_t p = value_at(j, "name", start, end) + 1;
    c.name = j.substr(p, j.find('"', p) - p);
    auto num = [&](const char* key) {
      const std::size_t v = value_at(j, key, start, end);
      return v == std::string::npos ? std::nan("") : std::strtod(j.c_str() + v, nullptr);
    };
    c.lr = num("lr");
    c.momentum = num("momentum");
    c.dampening = num("dampening");
    c.weight_decay = num("weight_decay");
    c.nesterov = j.compare(value_at(j, "nesterov", start, end), 4, "true") == 0;
    p = j.find('[', value_at(j, "theta_after_steps", start, end));
    const std::size_t q = j.find(']', p);
    while (p < q) {
      char* e = nullptr;
      c.theta.push_back(std::strtod(j.c_str() + p + 1, &e));
      p = static_cast<std::size_t>(e - j.c_str());
      while (p < q && j[p] != ',') ++p;
    }
    out.push_back(c);
    pos = end;
  }
  return out;
}

// ---- independent references ------------------------------------------------------------
// torch's _single_tensor_sgd in double.
struct sgd_ref {
  explicit sgd_ref(const sgd_options& opts) : o(opts) {}
  sgd_options o;
  std::vector<double> b;
  bool started = false;
  template <class G>
  void step(std::vector<double>& theta, const std::vector<G>& grad, double lr) {
    if (b.empty()) b.assign(theta.size(), 0.0);
    for (std::size_t i = 0; i < theta.size(); ++i) {
      double g = o.maximize ? -static_cast<double>(grad[i]) : grad[i];
      if (o.weight_decay != 0) g += o.weight_decay * theta[i];
      double d = g;
      if (o.momentum != 0) {
        b[i] = started ? o.momentum * b[i] + (1 - o.dampening) * g : g;
        d = o.nesterov ? g + o.momentum * b[i] : b[i];
      }
      theta[i] -= lr * d;
    }
    started = true;
  }
};

// The same in float, spelled as torch's tensor ops: grad.add(param, alpha=wd),
// buf.mul_(m).add_(grad, alpha=1-damp), grad.add(buf, alpha=m), param.add_(grad, alpha=-lr).
struct sgd_ref_f32 {
  explicit sgd_ref_f32(const sgd_options& opts) : o(opts) {}
  sgd_options o;
  std::vector<float> b;
  bool started = false;
  void step(std::vector<float>& theta, const std::vector<float>& grad, double lr) {
    if (b.empty()) b.assign(theta.size(), 0.0f);
    const float wd = static_cast<float>(o.weight_decay), mu = static_cast<float>(o.momentum);
    const float alpha_g = static_cast<float>(1 - o.dampening), alpha_p = static_cast<float>(-lr);
    for (std::size_t i = 0; i < theta.size(); ++i) {
      float g = o.maximize ? -grad[i] : grad[i];
      if (o.weight_decay != 0) g = g + wd * theta[i];
      if (o.momentum != 0) {
        if (!started) {
          b[i] = g;
        } else {
          const float scaled = b[i] * mu;
          b[i] = scaled + alpha_g * g;
        }
        g = o.nesterov ? g + mu * b[i] : b[i];
      }
      theta[i] = theta[i] + alpha_p * g;
    }
    started = true;
  }
};

void check_vectors_file(const std::string& path) {
  const std::string text = read_file(path);
  REQUIRE(!text.empty());
  const auto cases = parse_cases(text);
  REQUIRE(cases.size() == 2);
  const float grads[] = {0.5f, 0.3f, -0.2f};
  const double grads_d[] = {0.5, 0.3, -0.2};
  for (const auto& c : cases) {
    CAPTURE(path, c.name);
    REQUIRE(c.theta.size() == 3);
    sgd_options o{c.lr, c.momentum, c.dampening, c.weight_decay, c.nesterov, false};
    auto opt = outer_sgd::create(1, o);
    REQUIRE(opt.ok());
    std::vector<float> theta{1.0f};
    std::vector<double> theta_d{1.0};
    sgd_ref ref{o};
    for (int s = 0; s < 3; ++s) {
      CAPTURE(s);
      REQUIRE(opt->step(theta, std::span<const float>(&grads[s], 1)).ok());
      ref.step(theta_d, std::vector<double>{grads_d[s]}, c.lr);
      CHECK(theta[0] == Approx(c.theta[s]).epsilon(1e-6));
      // The double reference reproduces the file to double precision (it checks the test).
      CHECK(std::fabs(theta_d[0] - c.theta[s]) <= 1e-12);
    }
  }
}

}  // namespace

TEST_CASE("outer_sgd matches the shared torch SGD vectors", "[optim][sgd]") {
  SECTION("in-tree copy") { check_vectors_file(data_dir() + "/outer_sgd.json"); }
  SECTION("shared original") {
    const std::string shared = DTRAIN_SHARED_DIR "/vectors/outer_sgd.json";
    if (read_file(shared).empty()) {
      WARN("shared vectors not found at " << shared << "; only the in-tree copy was checked");
    } else {
      check_vectors_file(shared);
      CHECK(read_file(shared) == read_file(data_dir() + "/outer_sgd.json"));
    }
  }
}

TEST_CASE("outer_sgd follows torch's operation order bit for bit and a double reference", "[optim][sgd]") {
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 7, 4096, 100003}));
  // lr, momentum, dampening, weight_decay, nesterov, maximize
  const sgd_options o = GENERATE(values<sgd_options>({
      {0.7, 0.9, 0, 0, true, false},
      {0.7, 0.9, 0.5, 0, false, false},
      {0.1, 0, 0, 0, false, false},
      {0.1, 0, 0, 0.01, false, true},
      {0.3, 0.5, 0, 0.1, true, true},
      {1.0, 0.99, 0.1, 0.05, false, false},
  }));
  CAPTURE(n, o.lr, o.momentum, o.dampening, o.weight_decay, o.nesterov, o.maximize);
  auto opt = outer_sgd::create(n, o);
  REQUIRE(opt.ok());
  std::vector<float> theta = randn(n, 1), theta_f = theta;
  std::vector<double> theta_d(theta.begin(), theta.end());
  sgd_ref ref{o};
  sgd_ref_f32 ref_f{o};
  for (std::uint32_t s = 0; s < 6; ++s) {
    CAPTURE(s);
    const auto g = randn(n, 100 + s, 0.1f, 0.5f);
    REQUIRE(opt->step(theta, g).ok());
    ref.step(theta_d, g, o.lr);
    ref_f.step(theta_f, g, o.lr);
    CHECK(dtrain::optim::test::same_bits(theta, theta_f));
    CHECK(dtrain::optim::test::first_mismatch(theta, theta_d, 1e-5, 1e-5) == n);
  }
  CHECK(opt->steps() == 6);
}

TEST_CASE("outer_sgd with lr 1 and momentum 0 on the mean pseudo-gradient is FedAvg", "[optim][sgd]") {
  SECTION("dyadic values: exact") {
    // Every value is a small dyadic rational, so each float operation below is exact.
    const std::vector<float> theta0 = {1.0f, -2.0f, 0.5f, 0.0f};
    const std::vector<std::vector<float>> workers = {
        {0.75f, -2.5f, 0.25f, 1.0f}, {1.25f, -1.5f, 1.0f, -0.5f}, {0.5f, -2.0f, 0.5f, 0.25f}, {1.5f, -3.0f, 0.75f, 0.5f}};
    std::vector<float> delta(4, 0.0f), mean(4, 0.0f);
    for (const auto& w : workers)
      for (std::size_t i = 0; i < 4; ++i) {
        delta[i] += (theta0[i] - w[i]) / 4.0f;
        mean[i] += w[i] / 4.0f;
      }
    auto opt = outer_sgd::create(4, sgd_options::fedavg());
    REQUIRE(opt.ok());
    std::vector<float> theta = theta0;
    REQUIRE(opt->step(theta, delta).ok());
    CHECK(theta == mean);
  }
  SECTION("random values: within rounding") {
    const std::size_t n = GENERATE(values<std::size_t>({1, 7, 4096}));
    const auto theta0 = randn(n, 5);
    std::vector<double> delta_d(n, 0.0), mean_d(n, 0.0);
    for (std::uint32_t k = 0; k < 3; ++k) {
      const auto w = randn(n, 50 + k);
      for (std::size_t i = 0; i < n; ++i) {
        delta_d[i] += (static_cast<double>(theta0[i]) - w[i]) / 3.0;
        mean_d[i] += static_cast<double>(w[i]) / 3.0;
      }
    }
    std::vector<float> delta(delta_d.begin(), delta_d.end()), theta = theta0;
    auto opt = outer_sgd::create(n, sgd_options::fedavg());
    REQUIRE(opt.ok());
    REQUIRE(opt->step(theta, delta).ok());
    CHECK(dtrain::optim::test::first_mismatch(theta, mean_d, 1e-6, 1e-6) == n);
  }
}

TEST_CASE("one worker, one inner step, outer SGD lr 1 momentum 0 equals the inner optimizer", "[optim][sgd]") {
  const std::size_t n = GENERATE(values<std::size_t>({1, 7, 4096}));
  CAPTURE(n);
  const auto theta0 = randn(n, 9), target = randn(n, 10);
  // Inner optimizer: AdamW on the quadratic 0.5·|θ − target|².
  auto inner = outer_adam::create(n, adam_options::adamw(0.05, 0.1));
  REQUIRE(inner.ok());
  std::vector<float> local = theta0, grad(n);
  for (std::size_t i = 0; i < n; ++i) grad[i] = local[i] - target[i];
  REQUIRE(inner->step(local, grad).ok());
  std::vector<float> delta(n);
  for (std::size_t i = 0; i < n; ++i) delta[i] = theta0[i] - local[i];
  auto outer = outer_sgd::create(n, sgd_options::fedavg());
  REQUIRE(outer.ok());
  std::vector<float> theta = theta0;
  REQUIRE(outer->step(theta, delta).ok());
  const std::vector<double> want(local.begin(), local.end());
  // θ − (θ − θ_inner) = θ_inner up to one rounding of the subtraction.
  CHECK(dtrain::optim::test::first_mismatch(theta, want, 1e-6, 1e-7) == n);
}

TEST_CASE("outer_sgd follows a learning-rate schedule through set_lr", "[optim][sgd][lr]") {
  const std::size_t n = 33;
  const sgd_options o = sgd_options::diloco();
  auto opt = outer_sgd::create(n, o);
  REQUIRE(opt.ok());
  const auto sched = lr_schedule::cosine(0.7, 0.1, 2, 8);
  std::vector<float> theta = randn(n, 3);
  std::vector<double> theta_d(theta.begin(), theta.end());
  sgd_ref ref{o};
  for (std::uint32_t s = 0; s < 8; ++s) {
    REQUIRE(opt->set_lr(sched.at(opt->steps())).ok());
    CHECK(opt->lr() == sched.at(s));
    const auto g = randn(n, 200 + s);
    REQUIRE(opt->step(theta, g).ok());
    ref.step(theta_d, g, sched.at(s));
  }
  CHECK(dtrain::optim::test::first_mismatch(theta, theta_d, 1e-5, 1e-5) == n);
  CHECK(opt->set_lr(-1.0).code() == status_code::invalid_argument);
  CHECK(opt->set_lr(std::numeric_limits<double>::infinity()).code() == status_code::invalid_argument);
  CHECK(opt->lr() == sched.at(7));
}

TEST_CASE("outer_sgd rejects invalid hyperparameters like torch", "[optim][sgd]") {
  auto code = [](sgd_options o) {
    auto r = outer_sgd::create(4, o);
    return r.ok() ? status_code::ok : r.status().code();
  };
  CHECK(code({0.7, 0.9, 0, 0, true, false}) == status_code::ok);
  CHECK(code({0.7, 0.0, 0, 0, true, false}) == status_code::invalid_argument);  // nesterov, μ = 0
  CHECK(code({0.7, 0.9, 0.1, 0, true, false}) == status_code::invalid_argument);  // nesterov, τ ≠ 0
  CHECK(code({-0.1, 0.9, 0, 0, false, false}) == status_code::invalid_argument);
  CHECK(code({std::nan(""), 0.9, 0, 0, false, false}) == status_code::invalid_argument);
  CHECK(code({0.1, -0.1, 0, 0, false, false}) == status_code::invalid_argument);
  CHECK(code({0.1, 1.5, 0, 0, false, false}) == status_code::invalid_argument);
  CHECK(code({0.1, 0.9, 2.0, 0, false, false}) == status_code::invalid_argument);
  CHECK(code({0.1, 0.9, 0, -1, false, false}) == status_code::invalid_argument);
}

TEST_CASE("outer_sgd step errors change nothing", "[optim][sgd]") {
  const std::size_t n = GENERATE(values<std::size_t>({1, 7, 4096, 100003}));
  CAPTURE(n);
  auto opt = outer_sgd::create(n, sgd_options::diloco());
  REQUIRE(opt.ok());
  std::vector<float> theta = randn(n, 1);
  REQUIRE(opt->step(theta, randn(n, 2)).ok());  // leave the first-step path
  const auto theta_before = theta;
  const auto state_before = dtrain::optim::test::snapshot(*opt);
  REQUIRE(!state_before.empty());

  std::vector<float> short_grad(n - 1, 0.1f);
  CHECK(opt->step(theta, short_grad).code() == status_code::invalid_argument);
  std::vector<float> long_params(n + 1, 0.0f);
  CHECK(opt->step(long_params, randn(n, 3)).code() == status_code::invalid_argument);

  const float bad = GENERATE(std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                             -std::numeric_limits<float>::infinity());
  for (std::size_t at : {std::size_t{0}, n / 2, n - 1}) {
    CAPTURE(at, bad);
    auto g = randn(n, 4);
    g[at] = bad;
    const status st = opt->step(theta, g);
    CHECK(st.code() == status_code::invalid_argument);
    CHECK(st.message().find(std::to_string(at)) != std::string::npos);
  }
  CHECK(dtrain::optim::test::same_bits(theta, theta_before));
  CHECK(dtrain::optim::test::snapshot(*opt) == state_before);
  CHECK(opt->steps() == 1);
}

TEST_CASE("outer_sgd on zero parameters", "[optim][sgd]") {
  auto opt = outer_sgd::create(0, sgd_options::diloco());
  REQUIRE(opt.ok());
  std::vector<float> empty;
  CHECK(opt->step(empty, empty).ok());
  CHECK(opt->steps() == 1);
}
