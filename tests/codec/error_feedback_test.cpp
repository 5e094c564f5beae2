// Tests for codec/error_feedback.h: the telescoping invariant over every lossy inner codec
// this build registers, zero residual for identity, beta = 0, untouched state on failed
// encodes, the NaN policy, and "ef:" spec parsing.
#include "dtrain/codec/error_feedback.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "codec/codec_test_util.h"
#include "dtrain/codec/payload.h"

using namespace dtrain;
using namespace dtrain::test;

namespace {

bool registered(const std::string& spec) { return codec::make_codec(spec).ok(); }

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

std::unique_ptr<codec::error_feedback> make_ef(const std::string& spec) {
  auto c = make(spec);
  auto* ef = dynamic_cast<codec::error_feedback*>(c.get());
  REQUIRE(ef != nullptr);
  c.release();
  return std::unique_ptr<codec::error_feedback>(ef);
}

}  // namespace

TEST_CASE("ef: decoded sum plus residual telescopes to the input sum", "[codec][ef]") {
  struct inner_case {
    std::string spec;
    std::size_t n;
  };
  std::vector<inner_case> cases;
  for (const char* s : {"identity", "fp16", "bf16", "topk:chunk=64,k=4", "sign", "minmax:bits=2", "randomk",
                        "blockwise:bits=4", "fp4"})
    for (std::size_t n : {1u, 7u, 300u}) cases.push_back({s, n});
  cases.push_back({"powersgd:rows=12,cols=25,rank=2", 300});
  cases.push_back({"powersgd:rows=1,cols=7,rank=1", 7});

  int tested = 0;
  for (const auto& ic : cases) {
    if (!registered(ic.spec)) {
      if (ic.n == cases.front().n || ic.spec.starts_with("powersgd")) WARN("inner codec '" << ic.spec << "' is not registered in this build; skipped");
      continue;
    }
    ++tested;
    CAPTURE(ic.spec, ic.n);
    auto ef = make_ef("ef:beta=1,gamma=1,inner=" + ic.spec);
    REQUIRE(ef->id() == ef->inner().id());
    const std::size_t n = ic.n;
    std::vector<double> sum_g(n, 0.0), sum_d(n, 0.0), abs_g(n, 0.0);
    const int steps = 25;
    for (int t = 0; t < steps; ++t) {
      const auto g = make_input(t % 2 ? family::heavy_tail : family::random, n, 100 + static_cast<std::uint64_t>(t));
      const auto p = encode(*ef, g);
      // The payload is an ordinary inner-codec payload.
      std::vector<float> d(n), d2(n);
      REQUIRE(codec::decode_any(p, d).ok());
      REQUIRE(ef->decode(p, d2).ok());
      REQUIRE(same_bits(d, d2));
      for (std::size_t i = 0; i < n; ++i) {
        sum_g[i] += g[i];
        sum_d[i] += d[i];
        abs_g[i] += std::fabs(g[i]);
      }
    }
    const auto r = ef->residual();
    REQUIRE(r.size() == n);
    for (std::size_t i = 0; i < n; ++i) {
      CAPTURE(i, sum_g[i], sum_d[i], r[i]);
      // Each step rounds x = r + g and r = x - d once, so the gap is a few float ulps of
      // the running magnitudes, summed over the steps.
      REQUIRE(std::fabs(sum_d[i] + r[i] - sum_g[i]) <= 1e-5 * abs_g[i] + 1e-30);
    }
  }
  CHECK(tested >= 4);  // identity, fp16, bf16, powersgd at least
}

TEST_CASE("ef: lossy inner codecs leave a residual the next step sends", "[codec][ef]") {
  // bf16 drops the low mantissa bits. Sending the same g four times, plain bf16 is off by
  // 4 rounding errors per element; with error feedback the sum is off only by the last
  // residual, about one rounding error.
  const std::size_t n = 1000;
  const int steps = 4;
  const auto g = make_input(family::random, n, 3);
  auto ef = make_ef("ef:inner=bf16");
  std::vector<float> d1(n), sum(n, 0.0f), d(n);
  REQUIRE(codec::decode_any(encode(*ef, g), d1).ok());
  bool nonzero = false;
  for (float v : ef->residual()) nonzero |= v != 0.0f;
  CHECK(nonzero);
  sum = d1;
  for (int t = 1; t < steps; ++t) {
    REQUIRE(codec::decode_any(encode(*ef, g), d).ok());
    for (std::size_t i = 0; i < n; ++i) sum[i] += d[i];
  }
  double err_ef = 0, err_plain = 0;
  for (std::size_t i = 0; i < n; ++i) {
    err_ef += std::fabs(static_cast<double>(sum[i]) - steps * static_cast<double>(g[i]));
    err_plain += steps * std::fabs(static_cast<double>(d1[i]) - g[i]);
  }
  CHECK(err_ef < 0.5 * err_plain);
}

TEST_CASE("ef: identity inner keeps the residual exactly zero", "[codec][ef]") {
  const std::size_t n = GENERATE(0u, 1u, 7u, 4096u, 100003u);
  CAPTURE(n);
  auto ef = make_ef("ef:beta=1,gamma=1,inner=identity");
  auto plain = make("identity");
  for (int t = 0; t < 3; ++t) {
    const auto g = make_input(family::heavy_tail, n, 7 + static_cast<std::uint64_t>(t));
    REQUIRE(encode(*ef, g) == encode(*plain, g));
    for (float v : ef->residual()) REQUIRE(v == 0.0f);
  }
}

TEST_CASE("ef: beta = 0 keeps no memory, gamma scales the input", "[codec][ef]") {
  const std::size_t n = 513;
  auto ef = make_ef("ef:beta=0,gamma=0.5,inner=fp16");
  CHECK(ef->beta() == 0.0f);
  CHECK(ef->gamma() == 0.5f);
  auto plain = make("fp16");
  for (int t = 0; t < 3; ++t) {
    auto g = make_input(family::random, n, 20 + static_cast<std::uint64_t>(t));
    const auto p = encode(*ef, g);
    for (float& v : g) v *= 0.5f;
    REQUIRE(p == encode(*plain, g));
  }
}

TEST_CASE("ef: failed encodes leave the residual unchanged", "[codec][ef]") {
  const std::size_t n = 64;
  auto ef = make_ef("ef:inner=bf16");
  const auto g = make_input(family::random, n, 30);
  (void)encode(*ef, g);
  const std::vector<float> r0(ef->residual().begin(), ef->residual().end());
  std::vector<std::byte> buf(ef->max_encoded_bytes(n));

  for (float bad : {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY}) {
    auto gb = g;
    gb[17] = bad;
    auto r = ef->encode(gb, buf);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == status_code::invalid_argument);
    CHECK(r.status().message().find("17") != std::string::npos);
    REQUIRE(same_bits(ef->residual(), r0));
  }
  std::vector<std::byte> tiny(buf.size() - 1);
  CHECK(ef->encode(g, tiny).status().code() == status_code::resource_exhausted);
  REQUIRE(same_bits(ef->residual(), r0));
  const auto g2 = make_input(family::random, n + 1, 31);
  std::vector<std::byte> big(ef->max_encoded_bytes(n + 1));
  CHECK(ef->encode(g2, big).status().code() == status_code::invalid_argument);
  REQUIRE(same_bits(ef->residual(), r0));
  // beta * r + gamma * g overflowing float is an error, not an Inf residual.
  auto huge = make_ef("ef:gamma=1e30,inner=bf16");
  std::vector<float> gh(n, 1e20f);
  CHECK(huge->encode(gh, buf).status().code() == status_code::invalid_argument);
  CHECK(huge->residual().empty());
  // An inner codec that cannot represent x (fp16 overflows past 65504 to Inf) would
  // leave an infinite residual: out_of_range, and r keeps its old value.
  auto half = make_ef("ef:inner=fp16");
  (void)encode(*half, g);
  const std::vector<float> rh(half->residual().begin(), half->residual().end());
  auto gbig = g;
  gbig[3] = 1e6f;
  std::vector<std::byte> hbuf(half->max_encoded_bytes(n));
  CHECK(half->encode(gbig, hbuf).status().code() == status_code::out_of_range);
  REQUIRE(same_bits(half->residual(), rh));
  // Inner preconditions propagate too (PowerSGD's shape).
  auto pe = make_ef("ef:inner=powersgd:rows=8,cols=8,rank=2");
  std::vector<std::byte> pbuf(pe->max_encoded_bytes(n));
  CHECK(pe->encode(std::span(g).first(63), pbuf).status().code() == status_code::invalid_argument);
  CHECK(pe->residual().empty());
  // After all that, the state is the one from the first encode: same next payload as a
  // twin that saw only the successful call.
  auto twin = make_ef("ef:inner=bf16");
  (void)encode(*twin, g);
  CHECK(encode(*ef, g) == encode(*twin, g));
  // reset() frees the size.
  ef->reset();
  CHECK(ef->residual().empty());
  (void)encode(*ef, g2);
  CHECK(ef->residual().size() == n + 1);
}

TEST_CASE("ef: nonfinite_policy::zero treats NaN/Inf as 0 and keeps the residual finite", "[codec][ef]") {
  const std::size_t n = 50;
  auto ef = make_ef("ef:inner=identity");
  ef->set_nonfinite(codec::nonfinite_policy::zero);
  auto g = make_input(family::random, n, 40);
  g[3] = std::numeric_limits<float>::quiet_NaN();
  g[9] = -INFINITY;
  auto clean = g;
  clean[3] = clean[9] = 0.0f;
  CHECK(encode(*ef, g) == encode(*make("identity"), clean));
  for (float v : ef->residual()) REQUIRE(v == 0.0f);
}

TEST_CASE("ef: spec parsing", "[codec][ef]") {
  // An inner spec with commas after "inner=".
  const std::string inner =
      registered("topk:chunk=64,k=4") ? "topk:chunk=64,k=4" : "powersgd:rows=4,cols=16,rank=2,seed=3";
  CAPTURE(inner);
  auto ef = make_ef("ef:beta=0.9,gamma=1,inner=" + inner);
  CHECK(ef->beta() == 0.9f);
  CHECK(ef->gamma() == 1.0f);
  CHECK(ef->inner().spec() == make(inner)->spec());
  CHECK(ef->id() == make(inner)->id());
  CHECK(ef->name() == make(inner)->name());
  CHECK(ef->summable() == make(inner)->summable());
  CHECK(ef->max_encoded_bytes(64) == make(inner)->max_encoded_bytes(64));
  // spec() round-trips exactly, including awkward floats.
  for (const char* s : {"ef:beta=0.9,gamma=1,inner=fp16", "ef:beta=0.3333333,gamma=-0.001,inner=bf16",
                        "ef:beta=1e-30,gamma=1e30,inner=identity", "ef:inner=powersgd:rows=2,cols=3"}) {
    CAPTURE(s);
    auto a = make_ef(s);
    auto b = make_ef(a->spec());
    CHECK(b->spec() == a->spec());
    CHECK(b->beta() == a->beta());
    CHECK(b->gamma() == a->gamma());
  }
  CHECK(make_ef("ef:inner=fp16")->spec() == "ef:beta=1,gamma=1,inner=fp16");

  for (const char* bad : {"ef", "ef:", "ef:beta=1", "ef:inner=", "ef:beta=2,inner=fp16", "ef:beta=-0.1,inner=fp16",
                          "ef:gamma=nan,inner=fp16", "ef:inner=ef:inner=fp16", "ef:inner=nosuch",
                          "ef:gamma=1,bogus=2,inner=fp16", "ef:xinner=1,inner=fp16", "ef:inner=fp16:x=1",
                          "ef:beta=1,beta=1,inner=fp16", "ef:inner=powersgd:rows=2"}) {
    CAPTURE(bad);
    auto r = codec::make_codec(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == status_code::invalid_argument);
  }
}
