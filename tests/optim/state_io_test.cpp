// Tests for optim/state_io.h and outer_optimizer::save_state/load_state: the documented
// layout, mid-run round trips for every optimizer, and rejection of every truncation,
// corruption and mismatch with the optimizer left unchanged.
#include "dtrain/optim/state_io.h"

#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "dtrain/codec/registry.h"
#include "dtrain/core/bytes.h"
#include "dtrain/core/hash.h"
#include "dtrain/optim/outer_adam.h"
#include "dtrain/optim/outer_delayed_nesterov.h"
#include "dtrain/optim/outer_demo.h"
#include "dtrain/optim/outer_sgd.h"
#include "dtrain/optim/outer_sparseloco.h"
#include "optim/optim_test_util.h"

using namespace dtrain;
using namespace dtrain::optim;
using dtrain::optim::test::randn;
using dtrain::optim::test::snapshot;

namespace {

template <class T>
std::unique_ptr<outer_optimizer> boxed(result<T> r) {
  REQUIRE(r.ok());
  return std::make_unique<T>(std::move(*r));
}

// One factory per optimizer (and per state shape), and one "round" of use for each.
struct subject {
  std::string name;
  std::function<std::unique_ptr<outer_optimizer>(std::size_t)> make;
};

std::vector<subject> subjects() {
  return {
      {"sgd nesterov", [](std::size_t n) { return boxed(outer_sgd::create(n, sgd_options::diloco())); }},
      {"sgd plain", [](std::size_t n) { return boxed(outer_sgd::create(n, {0.5, 0, 0, 0.01, false, false})); }},
      {"adam amsgrad",
       [](std::size_t n) {
         adam_options o = adam_options::adamw(1e-2, 0.1);
         o.amsgrad = true;
         return boxed(outer_adam::create(n, o));
       }},
      {"adam", [](std::size_t n) { return boxed(outer_adam::create(n, adam_options{})); }},
      {"delayed nesterov N=3", [](std::size_t n) { return boxed(outer_delayed_nesterov::create(n, {0.7, 0.9, 3})); }},
      {"delayed nesterov N=1", [](std::size_t n) { return boxed(outer_delayed_nesterov::create(n, {0.7, 0.9, 1})); }},
      {"sparseloco", [](std::size_t n) { return boxed(outer_sparseloco::create(n, {0.9, 0.95})); }},
      {"demo", [](std::size_t n) { return boxed(outer_demo::create(n, {1e-3, 0.999, 0.1})); }},
  };
}

// A round: SparseLoCo and DeMo first compress (with fp16, which leaves a residual).
void round(outer_optimizer& o, std::vector<float>& theta, std::uint32_t seed) {
  const std::size_t n = theta.size();
  const auto g = randn(n, seed, 0.01f, 0.2f);
  auto c = codec::make_codec("fp16");
  REQUIRE(c.ok());
  std::vector<std::byte> payload((*c)->max_encoded_bytes(n));
  if (auto* s = dynamic_cast<outer_sparseloco*>(&o)) REQUIRE(s->compress(g, **c, payload).ok());
  if (auto* d = dynamic_cast<outer_demo*>(&o)) REQUIRE(d->compress(g, **c, payload).ok());
  REQUIRE(o.step(theta, g).ok());
}

}  // namespace

TEST_CASE("state blob layout follows docs/formats/optimizer_state.md", "[optim][state]") {
  // SGD, n = 2, momentum 0.9, after one step: the buffer is the first gradient.
  auto opt = outer_sgd::create(2, {0.5, 0.9, 0.25, 0.0, false, true});
  REQUIRE(opt.ok());
  std::vector<float> theta{1.0f, 2.0f};
  const std::vector<float> g{0.5f, -0.25f};
  REQUIRE(opt->step(theta, g).ok());
  // Built by hand from the documented layout.
  std::vector<std::byte> want(36 + 25 + 8 + 8);
  std::byte* p = want.data();
  std::memcpy(p, "DTOS", 4);
  store_le<std::uint16_t>(p + 4, 1);
  p[6] = std::byte{1};  // sgd
  p[7] = std::byte{1};  // one buffer
  store_le<std::uint64_t>(p + 8, 2);
  store_le<std::uint64_t>(p + 16, 1);
  store_le<double>(p + 24, 0.5);
  store_le<std::uint16_t>(p + 32, 25);
  store_le<double>(p + 36, 0.9);    // momentum
  store_le<double>(p + 44, 0.25);   // dampening
  store_le<double>(p + 52, 0.0);    // weight decay
  p[60] = std::byte{2};             // flags: maximize
  store_le<float>(p + 61, -0.5f);   // b = −g (maximize)
  store_le<float>(p + 65, 0.25f);
  store_le<std::uint64_t>(p + 69, xxh3_64(std::span<const std::byte>(want).first(69)));
  CHECK(opt->state_bytes() == want.size());
  CHECK(snapshot(*opt) == want);
  CHECK(state_size(25, 1, 2) == want.size());
}

TEST_CASE("save mid-run, load into a fresh optimizer, continue: bit-identical", "[optim][state]") {
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 7, 4096, 100003}));
  for (const auto& s : subjects()) {
    CAPTURE(n, s.name);
    auto a = s.make(n);
    std::vector<float> theta = randn(n, 1);
    for (std::uint32_t t = 0; t < 3; ++t) round(*a, theta, 10 + t);
    std::vector<std::byte> blob(a->state_bytes() + 5);
    auto w = a->save_state(blob);
    REQUIRE(w.ok());
    CHECK(*w == a->state_bytes());
    blob.resize(*w);
    REQUIRE(a->set_lr(a->lr() * 0.5).ok());  // the blob keeps the lr it was saved with
    REQUIRE(a->set_lr(a->lr() * 2.0).ok());

    auto b = s.make(n);
    REQUIRE(b->set_lr(123.0).ok());
    REQUIRE(b->load_state(blob).ok());
    CHECK(b->steps() == 3);
    CHECK(b->lr() == a->lr());
    CHECK(snapshot(*b) == blob);
    std::vector<float> theta_b = theta;
    for (std::uint32_t t = 3; t < 7; ++t) {
      round(*a, theta, 10 + t);
      round(*b, theta_b, 10 + t);
    }
    CHECK(dtrain::optim::test::same_bits(theta, theta_b));
    CHECK(snapshot(*a) == snapshot(*b));
  }
}

TEST_CASE("every truncation and every single-byte corruption is rejected, nothing changes", "[optim][state]") {
  const std::size_t n = GENERATE(values<std::size_t>({0, 1, 7}));
  for (const auto& s : subjects()) {
    CAPTURE(n, s.name);
    auto src = s.make(n);
    std::vector<float> theta = randn(n, 1);
    for (std::uint32_t t = 0; t < 2; ++t) round(*src, theta, 30 + t);
    const auto blob = snapshot(*src);
    REQUIRE(!blob.empty());

    auto dst = s.make(n);
    std::vector<float> scratch = randn(n, 2);
    round(*dst, scratch, 99);  // give dst state of its own to protect
    const auto before = snapshot(*dst);

    for (std::size_t len = 0; len < blob.size(); ++len) {
      CAPTURE(len);
      CHECK(dst->load_state(std::span(blob).first(len)).code() == status_code::data_loss);
    }
    auto longer = blob;
    longer.push_back(std::byte{0});
    CHECK(dst->load_state(longer).code() == status_code::data_loss);
    for (std::size_t i = 0; i < blob.size(); ++i) {
      for (unsigned flip : {0x01u, 0x80u, 0xffu}) {
        CAPTURE(i, flip);
        auto bad = blob;
        bad[i] ^= std::byte(flip);
        const status st = dst->load_state(bad);
        CHECK(!st.ok());
        // Only a version field raised above 1 reads as "newer format" instead of corruption.
        if (i != 4 && i != 5) CHECK(st.code() == status_code::data_loss);
      }
    }
    CHECK(snapshot(*dst) == before);
    CHECK(dst->load_state(blob).ok());  // and the pristine blob still loads
    CHECK(snapshot(*dst) == blob);
  }
}

TEST_CASE("well-formed blobs that do not fit are rejected, nothing changes", "[optim][state]") {
  const std::size_t n = 16;
  auto sgd = outer_sgd::create(n, sgd_options::diloco());
  REQUIRE(sgd.ok());
  std::vector<float> theta = randn(n, 1);
  REQUIRE(sgd->step(theta, randn(n, 2)).ok());
  const auto blob = snapshot(*sgd);

  auto fresh = outer_sgd::create(n, sgd_options::diloco());
  REQUIRE(fresh.ok());
  const auto before = snapshot(*fresh);
  auto sealed = [&](auto edit) {
    auto b = blob;
    edit(b.data());
    seal_state(b);
    return fresh->load_state(b).code();
  };

  SECTION("wrong kind, size or hyperparameters: failed_precondition") {
    auto adam = outer_adam::create(n, adam_options{});
    REQUIRE(adam.ok());
    CHECK(adam->load_state(blob).code() == status_code::failed_precondition);
    auto bigger = outer_sgd::create(n + 1, sgd_options::diloco());
    REQUIRE(bigger.ok());
    CHECK(bigger->load_state(blob).code() == status_code::failed_precondition);
    auto other = outer_sgd::create(n, {0.7, 0.8, 0, 0, true, false});
    REQUIRE(other.ok());
    CHECK(other->load_state(blob).code() == status_code::failed_precondition);
    auto dn = outer_delayed_nesterov::create(n, {0.7, 0.9, 1});
    REQUIRE(dn.ok());
    CHECK(dn->load_state(blob).code() == status_code::failed_precondition);
    CHECK(sealed([](std::byte* p) { p[6] = std::byte{2}; }) == status_code::failed_precondition);
  }
  SECTION("newer format version: unimplemented; version 0: data_loss") {
    CHECK(sealed([](std::byte* p) { store_le<std::uint16_t>(p + 4, 2); }) == status_code::unimplemented);
    CHECK(sealed([](std::byte* p) { store_le<std::uint16_t>(p + 4, 0); }) == status_code::data_loss);
  }
  SECTION("re-sealed semantic corruption: data_loss") {
    CHECK(sealed([](std::byte* p) { store_le<float>(p + 36 + 25 + 4 * 3, std::numeric_limits<float>::infinity()); }) ==
          status_code::data_loss);
    CHECK(sealed([](std::byte* p) { store_le<float>(p + 36 + 25, std::numeric_limits<float>::quiet_NaN()); }) ==
          status_code::data_loss);
    CHECK(sealed([](std::byte* p) { store_le<double>(p + 24, -0.7); }) == status_code::data_loss);
    CHECK(sealed([](std::byte* p) { store_le<double>(p + 24, std::numeric_limits<double>::quiet_NaN()); }) ==
          status_code::data_loss);
    CHECK(sealed([](std::byte* p) { store_le<std::uint16_t>(p + 34, 1); }) == status_code::data_loss);
    CHECK(sealed([](std::byte* p) { p[0] = std::byte{'X'}; }) == status_code::data_loss);
    CHECK(sealed([](std::byte* p) { store_le<std::uint64_t>(p + 8, 1ull << 62); }) == status_code::data_loss);
    CHECK(sealed([](std::byte* p) { p[7] = std::byte{0}; }) == status_code::data_loss);
    CHECK(sealed([](std::byte* p) { store_le<std::uint16_t>(p + 32, 0xffff); }) == status_code::data_loss);
  }
  CHECK(snapshot(*fresh) == before);
  CHECK(fresh->steps() == 0);
}

TEST_CASE("save_state into a short buffer is resource_exhausted and writes nothing", "[optim][state]") {
  auto opt = outer_adam::create(10, adam_options{});
  REQUIRE(opt.ok());
  std::vector<std::byte> out(opt->state_bytes() - 1, std::byte{0x5a});
  CHECK(opt->save_state(out).status().code() == status_code::resource_exhausted);
  bool untouched = true;
  for (auto b : out) untouched = untouched && b == std::byte{0x5a};
  CHECK(untouched);
}
