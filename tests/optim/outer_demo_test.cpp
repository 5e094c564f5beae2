// Tests for optim/outer_demo.h: the sign update with decoupled weight decay, momentum as
// error feedback through a codec, scale invariance and errors.
#include "dtrain/optim/outer_demo.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "dtrain/codec/registry.h"
#include "optim/optim_test_util.h"

using namespace dtrain;
using namespace dtrain::optim;
using dtrain::optim::test::randn;

namespace {
std::unique_ptr<codec::codec> make(std::string_view spec) {
  auto c = codec::make_codec(spec);
  REQUIRE(c.ok());
  return std::move(*c);
}
}  // namespace

TEST_CASE("demo global step: θ(1 − lr·λ) − lr·sign(a), sign(0) = 0", "[optim][demo]") {
  const std::vector<float> a = {0.3f, -2.0f, 0.0f, -0.0f, 1e-30f};
  SECTION("no weight decay") {
    auto opt = outer_demo::create(5, {0.125, 0.999, 0});
    REQUIRE(opt.ok());
    std::vector<float> theta(5, 1.0f);
    REQUIRE(opt->step(theta, a).ok());
    CHECK(theta == std::vector<float>{0.875f, 1.125f, 1.0f, 1.0f, 0.875f});
  }
  SECTION("decoupled weight decay") {
    auto opt = outer_demo::create(5, {0.125, 0.999, 0.5});
    REQUIRE(opt.ok());
    std::vector<float> theta(5, 2.0f);
    REQUIRE(opt->step(theta, a).ok());
    // 2·(1 − 0.0625) = 1.875, then ∓ 0.125 (all exact in binary).
    CHECK(theta == std::vector<float>{1.75f, 2.0f, 1.875f, 1.875f, 1.75f});
  }
}

TEST_CASE("demo step depends only on the sign of the aggregate", "[optim][demo]") {
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 7, 4096, 100003}));
  CAPTURE(n);
  auto a = outer_demo::create(n, {1e-3, 0.999, 0.1});
  auto b = outer_demo::create(n, {1e-3, 0.999, 0.1});
  REQUIRE((a.ok() && b.ok()));
  const auto agg = randn(n, 1);
  std::vector<float> scaled(n);
  for (std::size_t i = 0; i < n; ++i) scaled[i] = agg[i] * 3.7f;
  std::vector<float> ta = randn(n, 2), tb = ta;
  REQUIRE(a->step(ta, agg).ok());
  REQUIRE(b->step(tb, scaled).ok());
  CHECK(dtrain::optim::test::same_bits(ta, tb));
  std::vector<double> want(n);
  const auto t0 = randn(n, 2);
  for (std::size_t i = 0; i < n; ++i)
    want[i] = t0[i] * (1 - 1e-4) - 1e-3 * ((agg[i] > 0) - (agg[i] < 0));
  CHECK(dtrain::optim::test::first_mismatch(ta, want, 1e-6, 1e-7) == n);
}

TEST_CASE("demo compress: momentum doubles as error feedback", "[optim][demo]") {
  const std::size_t n = GENERATE(values<std::size_t>({1, 7, 4096, 100003}));
  CAPTURE(n);
  SECTION("identity sends β·δ + g and keeps nothing") {
    auto c = make("identity");
    auto opt = outer_demo::create(n, {1e-3, 0.9, 0});
    REQUIRE(opt.ok());
    std::vector<std::byte> payload(c->max_encoded_bytes(n));
    const auto g = randn(n, 3);
    REQUIRE(opt->compress(g, *c, payload).ok());
    std::vector<float> sent(n);
    REQUIRE(codec::decode_any(payload, sent).ok());
    CHECK(dtrain::optim::test::same_bits(sent, g));
    bool zero = true;
    for (float x : opt->momentum()) zero = zero && x == 0.0f;
    CHECK(zero);
  }
  SECTION("bf16 keeps exactly the rounding residual") {
    auto c = make("bf16");
    const float beta = 0.9f;
    auto opt = outer_demo::create(n, {1e-3, beta, 0});
    REQUIRE(opt.ok());
    std::vector<std::byte> payload(c->max_encoded_bytes(n));
    std::vector<float> delta(n, 0.0f);
    for (std::uint32_t t = 0; t < 3; ++t) {
      const auto g = randn(n, 10 + t);
      std::vector<float> s(n);
      for (std::size_t i = 0; i < n; ++i) s[i] = delta[i] * beta + g[i];
      REQUIRE(opt->compress(g, *c, payload).ok());
      std::vector<float> sent(n);
      REQUIRE(codec::decode_any(payload, sent).ok());
      for (std::size_t i = 0; i < n; ++i) delta[i] = s[i] - sent[i];  // exact: bf16 residuals fit in f32
      CHECK(dtrain::optim::test::same_bits(std::vector<float>(opt->momentum().begin(), opt->momentum().end()), delta));
    }
  }
}

TEST_CASE("demo with the DCT top-k codec", "[optim][demo][dct_topk]") {
  auto probe = codec::make_codec("dct_topk:chunk=64,k=8");
  if (!probe.ok()) {
    WARN("dct_topk codec not registered in this build: " << probe.status().to_string());
    return;
  }
  const std::size_t n = GENERATE(values<std::size_t>({64, 4096, 100032}));
  CAPTURE(n);
  auto c = make("dct_topk:chunk=64,k=8");
  auto opt = outer_demo::create(n, {1e-3, 1.0, 0});
  REQUIRE(opt.ok());
  std::vector<std::byte> payload(c->max_encoded_bytes(n));
  std::vector<double> sum_g(n, 0.0), sum_sent(n, 0.0);
  for (std::uint32_t t = 0; t < 4; ++t) {
    const auto g = randn(n, 20 + t);
    auto w = opt->compress(g, *c, payload);
    REQUIRE(w.ok());
    std::vector<float> sent(n);
    REQUIRE(codec::decode_any(std::span(payload).first(*w), sent).ok());
    for (std::size_t i = 0; i < n; ++i) sum_g[i] += g[i], sum_sent[i] += sent[i];
  }
  // β = 1: Σ sent + δ_T = Σ g (telescoping), up to float rounding of the DCT.
  std::vector<float> got(opt->momentum().begin(), opt->momentum().end());
  std::vector<double> want(n);
  for (std::size_t i = 0; i < n; ++i) want[i] = sum_g[i] - sum_sent[i];
  CHECK(dtrain::optim::test::first_mismatch(got, want, 1e-4, 1e-4) == n);
}

TEST_CASE("demo errors change nothing", "[optim][demo]") {
  const std::size_t n = 300;
  auto c = make("fp16");
  auto opt = outer_demo::create(n, {1e-3, 0.9, 0.1});
  REQUIRE(opt.ok());
  std::vector<std::byte> payload(c->max_encoded_bytes(n));
  REQUIRE(opt->compress(randn(n, 1), *c, payload).ok());
  std::vector<float> theta = randn(n, 2);
  REQUIRE(opt->step(theta, randn(n, 3)).ok());
  const auto before = dtrain::optim::test::snapshot(*opt);
  const auto theta_before = theta;
  auto bad = randn(n, 4);
  bad[0] = std::numeric_limits<float>::quiet_NaN();
  CHECK(opt->compress(bad, *c, payload).status().code() == status_code::invalid_argument);
  CHECK(opt->step(theta, bad).code() == status_code::invalid_argument);
  CHECK(opt->compress(randn(n, 5), *c, std::span(payload).first(10)).status().code() ==
        status_code::resource_exhausted);
  CHECK(dtrain::optim::test::snapshot(*opt) == before);
  CHECK(dtrain::optim::test::same_bits(theta, theta_before));
  CHECK(outer_demo::create(3, {1e-3, -0.1, 0}).status().code() == status_code::invalid_argument);
  CHECK(outer_demo::create(3, {1e-3, 0.9, -1}).status().code() == status_code::invalid_argument);
}
