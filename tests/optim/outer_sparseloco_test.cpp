// Tests for optim/outer_sparseloco.h: error-feedback compression with several codecs
// (identity, fp16, top-k once registered), the global step, decode_mean, and errors.
#include "dtrain/optim/outer_sparseloco.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "dtrain/codec/registry.h"
#include "dtrain/optim/outer_sgd.h"
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

std::vector<float> decoded(std::span<const std::byte> payload, std::size_t n) {
  std::vector<float> out(n);
  REQUIRE(codec::decode_any(payload, out).ok());
  return out;
}

// Runs T compress rounds and checks e against a double recurrence e ← β·e + Δ − sent
// (with β = 1: Σ sent + e_T = Σ Δ, the error-feedback telescoping invariant).
void check_error_feedback(std::string_view spec, std::size_t n, double beta) {
  CAPTURE(spec, n, beta);
  auto c = make(spec);
  auto opt = outer_sparseloco::create(n, {1.0, beta});
  REQUIRE(opt.ok());
  std::vector<std::byte> payload(c->max_encoded_bytes(n));
  std::vector<double> e(n, 0.0);
  for (std::uint32_t t = 0; t < 5; ++t) {
    CAPTURE(t);
    const auto delta = randn(n, 700 + t, 0.0f, 0.01f);
    auto w = opt->compress(delta, *c, payload);
    REQUIRE(w.ok());
    CHECK(*w == payload.size());
    const auto sent = decoded(std::span(payload).first(*w), n);
    for (std::size_t i = 0; i < n; ++i) e[i] = beta * e[i] + delta[i] - sent[i];
    const std::vector<float> got(opt->error().begin(), opt->error().end());
    CHECK(dtrain::optim::test::first_mismatch(got, e, 1e-4, 1e-7) == n);
  }
}

}  // namespace

TEST_CASE("sparseloco compress with the identity codec sends β·e + Δ and keeps nothing", "[optim][sparseloco]") {
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 7, 4096, 100003}));
  CAPTURE(n);
  auto c = make("identity");
  auto opt = outer_sparseloco::create(n, {1.0, 0.95});
  REQUIRE(opt.ok());
  std::vector<std::byte> payload(c->max_encoded_bytes(n));
  for (std::uint32_t t = 0; t < 3; ++t) {
    const auto delta = randn(n, 40 + t);
    auto w = opt->compress(delta, *c, payload);
    REQUIRE(w.ok());
    CHECK(dtrain::optim::test::same_bits(decoded(payload, n), delta));  // e was 0: β·0 + Δ = Δ
    bool zero = true;
    for (float x : opt->error()) zero = zero && x == 0.0f;
    CHECK(zero);
  }
}

TEST_CASE("sparseloco error feedback keeps what the codec dropped", "[optim][sparseloco]") {
  const std::size_t n = GENERATE(values<std::size_t>({1, 7, 4096, 100003}));
  check_error_feedback("fp16", n, 1.0);
  check_error_feedback("bf16", n, 0.95);
}

TEST_CASE("sparseloco with the top-k codec", "[optim][sparseloco][topk]") {
  auto probe = codec::make_codec("topk:chunk=4096,k=64,values=q2");
  if (!probe.ok()) {
    WARN("topk codec not registered in this build: " << probe.status().to_string());
    return;
  }
  const std::size_t n = GENERATE(values<std::size_t>({1, 7, 4096, 100003}));
  check_error_feedback("topk:chunk=4096,k=64,values=q2", n, 1.0);
  check_error_feedback("topk:chunk=4096,k=64,values=q2", n, 0.95);
  // Only k of every 4096 values go out; the rest stays in e.
  auto c = make("topk:chunk=4096,k=64,values=q2");
  auto opt = outer_sparseloco::create(n, {1.0, 0.95});
  REQUIRE(opt.ok());
  std::vector<std::byte> payload(c->max_encoded_bytes(n));
  REQUIRE(opt->compress(randn(n, 1), *c, payload).ok());
  const auto sent = decoded(payload, n);
  for (std::size_t chunk = 0; chunk < n; chunk += 4096) {
    std::size_t nz = 0;
    for (std::size_t i = chunk; i < std::min(n, chunk + 4096); ++i) nz += sent[i] != 0.0f;
    CHECK(nz <= 64);
  }
}

TEST_CASE("sparseloco global step with the identity codec is outer SGD on the mean", "[optim][sparseloco]") {
  const std::size_t n = GENERATE(values<std::size_t>({1, 7, 4096}));
  CAPTURE(n);
  auto c = make("identity");
  const double lr = 0.8;
  std::vector<outer_sparseloco> peers;
  for (int k = 0; k < 3; ++k) {
    auto p = outer_sparseloco::create(n, {lr, 0.95});
    REQUIRE(p.ok());
    peers.push_back(std::move(*p));
  }
  auto sgd = outer_sgd::create(n, {lr, 0, 0, 0, false, false});
  REQUIRE(sgd.ok());
  std::vector<float> theta = randn(n, 1), theta_sgd = theta;
  for (std::uint32_t t = 0; t < 3; ++t) {
    std::vector<std::vector<std::byte>> payloads;
    std::vector<double> mean_d(n, 0.0);
    for (std::uint32_t k = 0; k < 3; ++k) {
      const auto delta = randn(n, 100 * t + k);
      for (std::size_t i = 0; i < n; ++i) mean_d[i] += delta[i] / 3.0;
      payloads.emplace_back(c->max_encoded_bytes(n));
      REQUIRE(peers[k].compress(delta, *c, payloads.back()).ok());
    }
    std::vector<std::span<const std::byte>> views(payloads.begin(), payloads.end());
    std::vector<float> mean(n);
    REQUIRE(decode_mean(views, mean).ok());
    CHECK(dtrain::optim::test::first_mismatch(mean, mean_d, 1e-6, 1e-7) == n);
    for (auto& p : peers) {
      std::vector<float> theta_k = theta;
      REQUIRE(p.step(theta_k, mean).ok());
      if (&p == &peers.back()) theta = theta_k;
    }
    REQUIRE(sgd->step(theta_sgd, mean).ok());
    CHECK(dtrain::optim::test::same_bits(theta, theta_sgd));
  }
}

TEST_CASE("sparseloco errors leave the accumulator unchanged", "[optim][sparseloco]") {
  const std::size_t n = 5000;
  auto c = make("fp16");
  auto opt = outer_sparseloco::create(n, {1.0, 0.9});
  REQUIRE(opt.ok());
  std::vector<std::byte> payload(c->max_encoded_bytes(n));
  REQUIRE(opt->compress(randn(n, 1), *c, payload).ok());
  const auto before = dtrain::optim::test::snapshot(*opt);

  auto bad = randn(n, 2);
  bad[4999] = std::numeric_limits<float>::infinity();
  CHECK(opt->compress(bad, *c, payload).status().code() == status_code::invalid_argument);
  CHECK(opt->compress(std::span<const float>(bad).first(10), *c, payload).status().code() ==
        status_code::invalid_argument);
  CHECK(opt->compress(randn(n, 3), *c, std::span(payload).first(payload.size() - 1)).status().code() ==
        status_code::resource_exhausted);
  // fp16 turns 1e6 into Inf: the residual would be non-finite, so compress refuses it.
  auto huge = randn(n, 4);
  huge[7] = 1e6f;
  CHECK(opt->compress(huge, *c, payload).status().code() == status_code::out_of_range);
  CHECK(dtrain::optim::test::snapshot(*opt) == before);
  CHECK(decode_mean({}, std::span<float>{}).code() == status_code::invalid_argument);
  CHECK(outer_sparseloco::create(3, {1.0, 1.5}).status().code() == status_code::invalid_argument);
  CHECK(outer_sparseloco::create(3, {-1.0, 0.5}).status().code() == status_code::invalid_argument);
}
