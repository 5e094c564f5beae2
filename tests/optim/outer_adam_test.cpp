// Tests for optim/outer_adam.h: torch Adam/AdamW semantics against an independent
// double-precision reference, hand-computed first steps, validation and error atomicity.
#include "dtrain/optim/outer_adam.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "optim/optim_test_util.h"

using namespace dtrain;
using namespace dtrain::optim;
using dtrain::optim::test::randn;

namespace {

// torch's _single_tensor_adam (Adam and AdamW), in double.
struct adam_ref {
  explicit adam_ref(const adam_options& opts) : o(opts) {}
  adam_options o;
  std::vector<double> m, v, vmax;
  int t = 0;
  void step(std::vector<double>& theta, const std::vector<float>& grad) {
    if (m.empty()) m.assign(theta.size(), 0.0), v = m, vmax = m;
    ++t;
    const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
    for (std::size_t i = 0; i < theta.size(); ++i) {
      double g = o.maximize ? -static_cast<double>(grad[i]) : grad[i];
      if (o.weight_decay != 0) {
        if (o.decoupled) {
          theta[i] *= 1 - o.lr * o.weight_decay;
        } else {
          g += o.weight_decay * theta[i];
        }
      }
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      vmax[i] = std::max(vmax[i], v[i]);
      const double vd = o.amsgrad ? vmax[i] : v[i];
      const double denom = std::sqrt(vd) / std::sqrt(bc2) + o.eps;
      theta[i] -= o.lr / bc1 * m[i] / denom;
    }
  }
};

adam_options make(double lr, double b1, double b2, double eps, double wd, bool decoupled, bool ams, bool maximize) {
  adam_options o;
  o.lr = lr;
  o.beta1 = b1;
  o.beta2 = b2;
  o.eps = eps;
  o.weight_decay = wd;
  o.decoupled = decoupled;
  o.amsgrad = ams;
  o.maximize = maximize;
  return o;
}

}  // namespace

TEST_CASE("outer_adam matches a double-precision torch reference over several steps", "[optim][adam]") {
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 7, 4096, 100003}));
  const adam_options o = GENERATE(values<adam_options>({
      make(1e-3, 0.9, 0.999, 1e-8, 0, false, false, false),
      make(1e-2, 0.9, 0.95, 1e-8, 0.1, true, false, false),    // AdamW
      make(1e-2, 0.9, 0.99, 1e-6, 0.1, false, false, false),   // Adam, coupled L2
      make(5e-3, 0.8, 0.999, 1e-8, 0.05, true, true, false),   // AdamW + amsgrad
      make(1e-2, 0.3, 0.9, 1e-8, 0, false, true, true),        // lerp weight >= 0.5, maximize
  }));
  CAPTURE(n, o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.decoupled, o.amsgrad, o.maximize);
  auto opt = outer_adam::create(n, o);
  REQUIRE(opt.ok());
  std::vector<float> theta = randn(n, 1);
  std::vector<double> theta_d(theta.begin(), theta.end());
  adam_ref ref(o);
  for (std::uint32_t s = 0; s < 8; ++s) {
    CAPTURE(s);
    // Shrinking gradients make amsgrad's running maximum differ from v.
    const auto g = randn(n, 300 + s, 0.05f, 1.0f / static_cast<float>(1 + s));
    REQUIRE(opt->step(theta, g).ok());
    ref.step(theta_d, g);
    CHECK(dtrain::optim::test::first_mismatch(theta, theta_d, 1e-5, 2e-6) == n);
  }
}

TEST_CASE("the first Adam step moves each parameter by about lr times the sign of g", "[optim][adam]") {
  // m̂ = g and v̂ = g² after one step, so the update is lr·g/(|g| + eps).
  const std::vector<float> g = {0.5f, -2.0f, 1e-3f, -1e-3f};
  SECTION("Adam") {
    auto opt = outer_adam::create(4, make(0.1, 0.9, 0.999, 1e-8, 0, false, false, false));
    REQUIRE(opt.ok());
    std::vector<float> theta(4, 1.0f);
    REQUIRE(opt->step(theta, g).ok());
    CHECK(theta[0] == Approx(0.9).epsilon(1e-6));
    CHECK(theta[1] == Approx(1.1).epsilon(1e-6));
    CHECK(theta[2] == Approx(1.0 - 0.1 * (1e-3 / (1e-3 + 1e-8))).epsilon(1e-6));  // 0.900001
    CHECK(theta[3] == Approx(1.0 + 0.1 * (1e-3 / (1e-3 + 1e-8))).epsilon(1e-6));
  }
  SECTION("AdamW decays first: θ(1 − lr·λ) − lr·sign(g)") {
    auto opt = outer_adam::create(4, adam_options::adamw(0.1, 0.5));
    REQUIRE(opt.ok());
    std::vector<float> theta(4, 1.0f);
    REQUIRE(opt->step(theta, g).ok());
    CHECK(theta[0] == Approx(0.85).epsilon(1e-6));
    CHECK(theta[1] == Approx(1.05).epsilon(1e-6));
  }
  SECTION("maximize ascends") {
    auto opt = outer_adam::create(4, make(0.1, 0.9, 0.999, 1e-8, 0, false, false, true));
    REQUIRE(opt.ok());
    std::vector<float> theta(4, 1.0f);
    REQUIRE(opt->step(theta, g).ok());
    CHECK(theta[0] == Approx(1.1).epsilon(1e-6));
    CHECK(theta[1] == Approx(0.9).epsilon(1e-6));
  }
}

TEST_CASE("Adam's coupled and AdamW's decoupled weight decay differ", "[optim][adam]") {
  // With g = 0 and θ = 1: Adam sees g = λθ and steps by ≈ lr; AdamW only shrinks θ by lr·λ.
  auto adam = outer_adam::create(1, make(0.1, 0.9, 0.999, 1e-8, 0.01, false, false, false));
  auto adamw = outer_adam::create(1, adam_options::adamw(0.1, 0.01));
  REQUIRE((adam.ok() && adamw.ok()));
  std::vector<float> a{1.0f}, w{1.0f};
  const std::vector<float> zero{0.0f};
  REQUIRE(adam->step(a, zero).ok());
  REQUIRE(adamw->step(w, zero).ok());
  CHECK(a[0] == Approx(0.9).epsilon(1e-5));
  CHECK(w[0] == Approx(0.999).epsilon(1e-7));
}

TEST_CASE("outer_adam validation and error atomicity", "[optim][adam]") {
  auto code = [](adam_options o) {
    auto r = outer_adam::create(3, o);
    return r.ok() ? status_code::ok : r.status().code();
  };
  CHECK(code(make(1e-3, 0.9, 0.999, 1e-8, 0, false, false, false)) == status_code::ok);
  CHECK(code(make(1e-3, 1.0, 0.999, 1e-8, 0, false, false, false)) == status_code::invalid_argument);
  CHECK(code(make(1e-3, 0.9, -0.1, 1e-8, 0, false, false, false)) == status_code::invalid_argument);
  CHECK(code(make(1e-3, 0.9, 0.999, 0, 0, false, false, false)) == status_code::invalid_argument);
  CHECK(code(make(1e-3, 0.9, 0.999, 1e-8, -1, false, false, false)) == status_code::invalid_argument);
  CHECK(code(make(-1e-3, 0.9, 0.999, 1e-8, 0, false, false, false)) == status_code::invalid_argument);

  const std::size_t n = 1000;
  auto opt = outer_adam::create(n, make(1e-2, 0.9, 0.999, 1e-8, 0.1, true, true, false));
  REQUIRE(opt.ok());
  std::vector<float> theta = randn(n, 1);
  REQUIRE(opt->step(theta, randn(n, 2)).ok());
  const auto theta_before = theta;
  const auto state_before = dtrain::optim::test::snapshot(*opt);
  auto g = randn(n, 3);
  g[999] = std::numeric_limits<float>::quiet_NaN();
  CHECK(opt->step(theta, g).code() == status_code::invalid_argument);
  CHECK(opt->step(theta, std::span<const float>(g).first(10)).code() == status_code::invalid_argument);
  CHECK(dtrain::optim::test::same_bits(theta, theta_before));
  CHECK(dtrain::optim::test::snapshot(*opt) == state_before);
}

TEST_CASE("outer_adam: vector body and scalar tail give the same bits (slices = whole)", "[optim][adam]") {
  // Size-1 optimizers only run the scalar path; one size-37 optimizer runs the vector body.
  const adam_options o = GENERATE(values<adam_options>({
      make(1e-2, 0.9, 0.95, 1e-8, 0.1, true, true, false),
      make(1e-2, 0.3, 0.9, 1e-8, 0.1, false, false, true),
  }));
  const std::size_t n = 37;
  auto whole = outer_adam::create(n, o);
  REQUIRE(whole.ok());
  std::vector<outer_adam> singles;
  for (std::size_t i = 0; i < n; ++i) {
    auto s = outer_adam::create(1, o);
    REQUIRE(s.ok());
    singles.push_back(std::move(*s));
  }
  std::vector<float> a = randn(n, 1), b = a;
  for (std::uint32_t t = 0; t < 5; ++t) {
    const auto g = randn(n, 40 + t, 0.0f, 1.0f / static_cast<float>(1 + t));
    REQUIRE(whole->step(a, g).ok());
    for (std::size_t i = 0; i < n; ++i)
      REQUIRE(singles[i].step(std::span<float>(b).subspan(i, 1), std::span<const float>(g).subspan(i, 1)).ok());
    CHECK(dtrain::optim::test::same_bits(a, b));
  }
}
