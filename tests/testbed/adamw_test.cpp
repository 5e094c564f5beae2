// Tests for testbed/adamw.h: a hand-computed two-step example (decoupled decay, bias
// correction, eps outside the square root), the decay mask, reset, set_lr and errors.
#include "testbed/adamw.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

using namespace dtrain;
using namespace dtrain::testbed;

namespace {
adamw_options example_options() {
  adamw_options o;
  o.lr = 0.1;
  o.beta1 = 0.9;
  o.beta2 = 0.95;
  o.eps = 1e-8;
  o.weight_decay = 0.1;
  return o;
}
}  // namespace

// Hand computation, element 0 (θ = 1, g = 0.5 then −0.25, lr 0.1, λ 0.1):
//  step 1: θ = 0.99; m = 0.05; v = 0.0125; m̂ = 0.5; v̂ = 0.25
//          θ = 0.99 − 0.1·0.5/(0.5 + 1e-8) = 0.890000002
//  step 2: θ = 0.890000002·0.99 = 0.88110000198; m = 0.02; v = 0.015
//          m̂ = 0.02/0.19, v̂ = 0.015/0.0975; θ = 0.88110000198 − 0.1·m̂/(√v̂ + 1e-8)
//            = 0.854263057855827
// Element 2 has g = 0 then 1e-9, so eps dominates the denominator: with eps inside the
// square root the second update would be ~1e-7 instead of 4.9e-3.
TEMPLATE_TEST_CASE("adamw: two steps match the hand-computed torch.optim.AdamW values", "[testbed][adamw]", float,
                   double) {
  const double tol = sizeof(TestType) == 8 ? 1e-12 : 2e-6;
  auto opt = basic_adamw<TestType>::create(3, example_options());
  REQUIRE(opt.ok());
  std::vector<TestType> theta = {TestType(1.0), TestType(-2.0), TestType(0.5)};
  const std::vector<TestType> g1 = {TestType(0.5), TestType(0.001), TestType(0)};
  const std::vector<TestType> g2 = {TestType(-0.25), TestType(-3.0), TestType(1e-9)};

  REQUIRE(opt->step(theta, g1).ok());
  CHECK(opt->steps() == 1);
  CHECK(static_cast<double>(theta[0]) == Approx(0.890000002).epsilon(tol));
  CHECK(static_cast<double>(theta[1]) == Approx(-2.07999900001).epsilon(tol));
  CHECK(static_cast<double>(theta[2]) == Approx(0.495).epsilon(tol));
  CHECK(static_cast<double>(opt->first_moment()[0]) == Approx(0.05).epsilon(tol));
  CHECK(static_cast<double>(opt->second_moment()[0]) == Approx(0.0125).epsilon(tol));

  REQUIRE(opt->step(theta, g2).ok());
  CHECK(opt->steps() == 2);
  CHECK(static_cast<double>(theta[0]) == Approx(0.85426305785582735).epsilon(tol));
  CHECK(static_cast<double>(theta[1]) == Approx(-1.9857250627994005).epsilon(tol));
  CHECK(static_cast<double>(theta[2]) == Approx(0.48513855778740556).epsilon(tol));
  CHECK(static_cast<double>(opt->first_moment()[1]) == Approx(-0.29991).epsilon(tol));
  CHECK(static_cast<double>(opt->second_moment()[1]) == Approx(0.4500000475).epsilon(tol));
}

TEST_CASE("adamw: decay mask, reset and learning rate", "[testbed][adamw]") {
  auto opt = basic_adamw<double>::create(2, example_options());
  REQUIRE(opt.ok());
  const std::uint8_t mask[2] = {1, 0};
  REQUIRE(opt->set_decay_mask(mask).ok());
  std::vector<double> theta = {1.0, 1.0};
  const std::vector<double> zero = {0.0, 0.0};
  REQUIRE(opt->step(theta, zero).ok());  // zero gradient: only decay moves θ
  CHECK(theta[0] == Approx(0.99).epsilon(1e-15));
  CHECK(theta[1] == 1.0);
  REQUIRE(opt->set_decay_mask({}).ok());  // decay everything again
  REQUIRE(opt->step(theta, zero).ok());
  CHECK(theta[1] == Approx(0.99).epsilon(1e-15));

  // reset restarts the bias correction: the first step after it is again lr·sign(g).
  opt->reset();
  CHECK(opt->steps() == 0);
  REQUIRE(opt->set_lr(0.01).ok());
  CHECK(opt->lr() == 0.01);
  std::vector<double> p = {0.0, 0.0};
  const std::vector<double> g = {3.0, -0.5};
  REQUIRE(opt->step(p, g).ok());
  CHECK(p[0] == Approx(-0.01).epsilon(1e-7));
  CHECK(p[1] == Approx(0.01).epsilon(1e-7));
  CHECK(opt->first_moment()[0] == Approx(0.3));

  // lr 0 with decay leaves θ unchanged.
  REQUIRE(opt->set_lr(0.0).ok());
  const auto before = p;
  REQUIRE(opt->step(p, g).ok());
  CHECK(p == before);
}

TEST_CASE("adamw: errors leave parameters and state unchanged", "[testbed][adamw]") {
  auto bad_opts = [](auto mutate) {
    adamw_options o;
    mutate(o);
    return o.validate().code() == status_code::invalid_argument && !adamw::create(4, o).ok();
  };
  CHECK(adamw_options{}.validate().ok());
  CHECK(bad_opts([](adamw_options& o) { o.lr = -1; }));
  CHECK(bad_opts([](adamw_options& o) { o.lr = INFINITY; }));
  CHECK(bad_opts([](adamw_options& o) { o.beta1 = 1; }));
  CHECK(bad_opts([](adamw_options& o) { o.beta2 = -0.1; }));
  CHECK(bad_opts([](adamw_options& o) { o.beta2 = std::nan(""); }));
  CHECK(bad_opts([](adamw_options& o) { o.eps = 0; }));
  CHECK(bad_opts([](adamw_options& o) { o.weight_decay = -0.1; }));

  auto opt = adamw::create(4, adamw_options{});
  REQUIRE(opt.ok());
  CHECK(opt->size() == 4);
  std::vector<float> p = {1, 2, 3, 4};
  std::vector<float> g = {1, 1, 1, 1};
  REQUIRE(opt->step(p, g).ok());
  const auto p1 = p;
  const std::vector<float> m1(opt->first_moment().begin(), opt->first_moment().end());
  g[2] = NAN;
  CHECK(opt->step(p, g).code() == status_code::invalid_argument);
  g[2] = INFINITY;
  CHECK(opt->step(p, g).code() == status_code::invalid_argument);
  g[2] = 1;
  CHECK(opt->step(std::span(p).subspan(1), std::span<const float>(g).subspan(1)).code() ==
        status_code::invalid_argument);
  CHECK(opt->step(p, std::span<const float>(g).subspan(1)).code() == status_code::invalid_argument);
  CHECK(p == p1);
  CHECK(std::equal(m1.begin(), m1.end(), opt->first_moment().begin()));
  CHECK(opt->steps() == 1);
  CHECK(opt->set_lr(-1).code() == status_code::invalid_argument);
  CHECK(opt->set_lr(NAN).code() == status_code::invalid_argument);
  CHECK(opt->lr() == adamw_options{}.lr);
  const std::uint8_t short_mask[3] = {1, 1, 1};
  CHECK(opt->set_decay_mask(short_mask).code() == status_code::invalid_argument);
}
