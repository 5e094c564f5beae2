// Tests for optim/outer_delayed_nesterov.h: the N = 1 identity with torch Nesterov SGD
// (bit for bit), a double reference of the documented rule, and validation.
#include "dtrain/optim/outer_delayed_nesterov.h"

#include <catch2/catch.hpp>

#include <vector>

#include "dtrain/optim/outer_sgd.h"
#include "optim/optim_test_util.h"

using namespace dtrain;
using namespace dtrain::optim;
using dtrain::optim::test::randn;

namespace {

// The rule documented in the header, in double.
struct dn_ref {
  explicit dn_ref(const delayed_nesterov_options& opts) : o(opts) {}
  delayed_nesterov_options o;
  std::vector<double> m, a;
  std::uint64_t t = 0;
  void step(std::vector<double>& theta, const std::vector<float>& g) {
    if (m.empty()) m.assign(theta.size(), 0.0), a = m;
    ++t;
    for (std::size_t i = 0; i < theta.size(); ++i) a[i] += g[i];
    if (t % o.delay != 0) {
      for (std::size_t i = 0; i < theta.size(); ++i) theta[i] -= o.lr * g[i] / o.delay;
      return;
    }
    for (std::size_t i = 0; i < theta.size(); ++i) {
      m[i] = o.momentum * m[i] + a[i] / o.delay;  // m starts at 0, so the first update is ḡ
      theta[i] -= o.lr * (g[i] / o.delay + o.momentum * m[i]);
      a[i] = 0;
    }
  }
};

}  // namespace

TEST_CASE("delayed Nesterov with N = 1 is torch Nesterov SGD bit for bit", "[optim][delayed_nesterov]") {
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 7, 4096, 100003}));
  CAPTURE(n);
  auto dn = outer_delayed_nesterov::create(n, {0.7, 0.9, 1});
  auto sgd = outer_sgd::create(n, sgd_options::diloco());
  REQUIRE((dn.ok() && sgd.ok()));
  std::vector<float> a = randn(n, 1), b = a;
  for (std::uint32_t s = 0; s < 7; ++s) {
    CAPTURE(s);
    auto g = randn(n, 10 + s);
    if (n > 2) g[1] = -0.0f, g[2] = 0.0f;  // signed zeros must not break the identity
    REQUIRE(dn->step(a, g).ok());
    REQUIRE(sgd->step(b, g).ok());
    CHECK(dtrain::optim::test::same_bits(a, b));
  }
}

TEST_CASE("delayed Nesterov follows its documented rule", "[optim][delayed_nesterov]") {
  const std::size_t n = GENERATE(values<std::size_t>({1, 7, 4096, 100003}));
  const std::uint32_t N = GENERATE(2u, 3u, 5u);
  CAPTURE(n, N);
  const delayed_nesterov_options o{0.7, 0.9, N};
  auto dn = outer_delayed_nesterov::create(n, o);
  REQUIRE(dn.ok());
  std::vector<float> theta = randn(n, 2);
  std::vector<double> theta_d(theta.begin(), theta.end());
  dn_ref ref(o);
  for (std::uint32_t s = 0; s < 3 * N + 1; ++s) {
    CAPTURE(s);
    const auto g = randn(n, 50 + s, 0.1f, 0.3f);
    const auto before = theta;
    REQUIRE(dn->step(theta, g).ok());
    ref.step(theta_d, g);
    CHECK(dtrain::optim::test::first_mismatch(theta, theta_d, 1e-5, 1e-5) == n);
    if ((s + 1) % N != 0) {
      // Between momentum updates: exactly one plain gradient step scaled by 1/N.
      const float k = -0.7f, div = static_cast<float>(N);
      bool plain = true;
      for (std::size_t i = 0; i < n; ++i) plain = plain && theta[i] == before[i] + k * (g[i] / div);
      CHECK(plain);
    }
  }
}

TEST_CASE("delayed Nesterov validation", "[optim][delayed_nesterov]") {
  auto code = [](delayed_nesterov_options o) {
    auto r = outer_delayed_nesterov::create(2, o);
    return r.ok() ? status_code::ok : r.status().code();
  };
  CHECK(code({0.7, 0.9, 4}) == status_code::ok);
  CHECK(code({0.7, 0.9, 0}) == status_code::invalid_argument);
  CHECK(code({0.7, 0.0, 4}) == status_code::invalid_argument);
  CHECK(code({0.7, 1.5, 4}) == status_code::invalid_argument);
  CHECK(code({-0.7, 0.9, 4}) == status_code::invalid_argument);
}
