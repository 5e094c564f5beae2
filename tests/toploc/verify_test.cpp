// Tests for toploc/verify.h: exact and jittered activations (the shared vectors), both
// median definitions, the published policy, cheaters, the reference's modulus defect,
// and malformed proofs that must fail cleanly.
#include "dtrain/toploc/verify.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "dtrain/toploc/field.h"
#include "toploc/toploc_test_util.h"

using namespace dtrain::toploc;
using dtrain::dtype;
using dtrain::status_code;

namespace {

std::vector<std::uint16_t> readme_bits() {
  const auto& v = test::vectors()["readme_example"];
  std::vector<std::uint16_t> bits;
  for (const char* c : {"c0", "c1", "c2", "c3", "c4"}) {
    const auto chunk = test::bits_from_hex(v["chunks"][c].str);
    bits.insert(bits.end(), chunk.begin(), chunk.end());
  }
  return bits;
}

proof_options readme_options() {
  proof_options o;
  o.k = 4;
  o.tokens_per_chunk = 3;
  o.prefill_tokens = 5;
  return o;
}

std::vector<std::uint16_t> scaled(const std::vector<std::uint16_t>& bits, float factor) {
  std::vector<std::uint16_t> out(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i)
    out[i] = dtrain::f32_to_bf16_bits(dtrain::bf16_bits_to_f32(bits[i]) * factor);
  return out;
}

std::vector<chunk_check> verify(const std::vector<std::uint16_t>& bits, std::size_t tokens, std::size_t hidden,
                                std::span<const proof> proofs, const proof_options& opt) {
  auto r = verify_proofs(hidden_states::bf16(bits, tokens, hidden), proofs, opt);
  REQUIRE(r.ok());
  return std::move(*r);
}

}  // namespace

TEST_CASE("exact activations verify with no error at all", "[toploc][verify]") {
  const std::size_t hidden = 512, tokens = 70;
  const auto bits = test::random_bf16(tokens * hidden, 1, hidden);
  proof_options opt;
  opt.prefill_tokens = 6;
  auto proofs = build_proofs(hidden_states::bf16(bits, tokens, hidden), opt);
  REQUIRE(proofs.ok());
  const auto checks = verify(bits, tokens, hidden, *proofs, opt);
  REQUIRE(checks.size() == proofs->size());
  for (const auto& c : checks) {
    CHECK(c.compared == 128);
    CHECK(c.exponent_mismatches == 0);
    CHECK(c.mantissa_error_mean == 0);
    CHECK(c.mantissa_error_median_upper == 0);
    CHECK(c.mantissa_error_median_middle == 0);
  }
  CHECK(failing_chunks(checks, acceptance_policy{}).empty());
}

TEST_CASE("jittered activations match the shared verify_jitter vectors", "[toploc][verify][vectors]") {
  const auto& jit = test::vectors()["readme_example"]["verify_jitter"];
  const auto bits = readme_bits();
  const auto opt = readme_options();
  auto proofs = build_proofs(hidden_states::bf16(bits, 15, 16), opt);
  REQUIRE(proofs.ok());

  SECTION("x1.01: no exponent mismatch, mean and middle median as published") {
    const auto c = verify(scaled(bits, 1.01f), 15, 16, *proofs, opt);
    for (std::size_t i = 0; i < 5; ++i) {
      CAPTURE(i);
      CHECK(c[i].exponent_mismatches == static_cast<std::size_t>(jit["x1.01"]["exp_mismatches"][i].num));
      CHECK(c[i].mantissa_error_mean == jit["x1.01"]["mant_err_mean"][i].num);
      CHECK(c[i].mantissa_error_median_middle == jit["x1.01"]["mant_err_median_lower_or_mean_of_middle"][i].num);
      CHECK(c[i].mantissa_error_median_upper >= c[i].mantissa_error_median_middle);
      CHECK(acceptance_policy{}.accepts(c[i]));
    }
  }
  SECTION("x1.10: mantissa means as published, rejected by the policy") {
    const auto c = verify(scaled(bits, 1.10f), 15, 16, *proofs, opt);
    for (std::size_t i = 0; i < 5; ++i) {
      CAPTURE(i);
      CHECK(c[i].mantissa_error_mean == jit["x1.10"]["mant_err_mean"][i].num);
      CHECK_FALSE(acceptance_policy{}.accepts(c[i]));
    }
  }
  SECTION("x4: every exponent differs; errors are infinite") {
    const auto c = verify(scaled(bits, 4.0f), 15, 16, *proofs, opt);
    for (std::size_t i = 0; i < 5; ++i) {
      CAPTURE(i);
      CHECK(c[i].exponent_mismatches == static_cast<std::size_t>(jit["x4"]["exp_mismatches"][i].num));
      CHECK(std::isinf(c[i].mantissa_error_mean));
      CHECK(std::isinf(c[i].mantissa_error_median_upper));
      CHECK(std::isinf(c[i].mantissa_error_median_middle));
      CHECK_FALSE(acceptance_policy{}.accepts(c[i]));
    }
  }
}

TEST_CASE("the policy defaults are the published thresholds", "[toploc][verify][vectors]") {
  const auto& p = test::vectors()["acceptance_policy_published"];
  const acceptance_policy pol;
  CHECK(pol.min_exponent_matches == static_cast<std::size_t>(p["min_exponent_matches_of_128"].num));
  CHECK(pol.per == 128);
  CHECK(pol.max_mantissa_error_mean == p["max_mantissa_err_mean"].num);
  CHECK(pol.max_mantissa_error_median == p["max_mantissa_err_median"].num);

  chunk_check c;
  c.compared = 128;
  c.exponent_mismatches = 38;  // 90 matches: the edge
  c.mantissa_error_mean = 10;
  c.mantissa_error_median_upper = 8;
  c.mantissa_error_median_middle = 9;
  CHECK(pol.accepts(c));
  c.exponent_mismatches = 39;
  CHECK_FALSE(pol.accepts(c));
  c.exponent_mismatches = 0;
  c.mantissa_error_mean = 10.5;
  CHECK_FALSE(pol.accepts(c));
  c.mantissa_error_mean = 1;
  acceptance_policy middle;
  middle.median = median_rule::middle;
  CHECK_FALSE(middle.accepts(c));  // 9 > 8
  c.compared = 64;                 // scaled: needs 45 of 64
  c.exponent_mismatches = 19;
  CHECK(pol.accepts(c));
  c.exponent_mismatches = 20;
  CHECK_FALSE(pol.accepts(c));
  CHECK_FALSE(pol.accepts(chunk_check{}));  // nothing compared
}

TEST_CASE("other activations give about k exponent mismatches", "[toploc][verify]") {
  const std::size_t hidden = 4096, tokens = 32;
  const auto honest = test::random_bf16(tokens * hidden, 10, hidden);
  const auto other = test::random_bf16(tokens * hidden, 11, hidden);
  proof_options opt;
  auto proofs = build_proofs(hidden_states::bf16(other, tokens, hidden), opt);
  REQUIRE(proofs.ok());
  const auto c = verify(honest, tokens, hidden, *proofs, opt);
  REQUIRE(c.size() == 1);
  CHECK(c[0].exponent_mismatches >= 110);
  CHECK_FALSE(acceptance_policy{}.accepts(c[0]));
}

TEST_CASE("a modulus below 65497 verifies exactly (the reference's Python path rejects it)", "[toploc][verify]") {
  // One token of 70000 values: the two largest sit at 5 and 5 + 65497, which collide
  // under p, so the prover must use a smaller modulus.
  const std::size_t hidden = 70000;
  std::vector<std::uint16_t> bits(hidden, 0x3f00);
  bits[5] = 0x4480;
  bits[5 + prime] = 0xc500;
  for (std::size_t i = 0; i < 20; ++i) bits[1000 + i * 3001] = static_cast<std::uint16_t>(0x4100 + i);
  proof_options opt;
  opt.k = 16;
  auto proofs = build_proofs(hidden_states::bf16(bits, 1, hidden), opt);
  REQUIRE(proofs.ok());
  CHECK((*proofs)[0].modulus < prime);
  const auto c = verify(bits, 1, hidden, *proofs, opt);
  CHECK(c[0].exponent_mismatches == 0);
  CHECK(c[0].mantissa_error_mean == 0);
}

TEST_CASE("fp16 activations compare fp16 fields, with errors in bf16 ULPs", "[toploc][verify]") {
  const std::size_t hidden = 256, tokens = 8;
  std::vector<std::uint16_t> h(tokens * hidden), jittered(h.size());
  const auto base = test::random_bf16(h.size(), 21, hidden);
  for (std::size_t i = 0; i < h.size(); ++i) {
    const float v = dtrain::bf16_bits_to_f32(base[i]) * 0.5f;
    h[i] = dtrain::f32_to_f16_bits(v);
    jittered[i] = dtrain::f32_to_f16_bits(v * 1.002f);
  }
  proof_options opt;
  auto proofs = build_proofs(hidden_states::f16(h, tokens, hidden), opt);
  REQUIRE(proofs.ok());
  auto exact = verify_proofs(hidden_states::f16(h, tokens, hidden), *proofs, opt);
  REQUIRE(exact.ok());
  CHECK((*exact)[0].exponent_mismatches == 0);
  CHECK((*exact)[0].mantissa_error_mean == 0);
  auto near = verify_proofs(hidden_states::f16(jittered, tokens, hidden), *proofs, opt);
  REQUIRE(near.ok());
  // 0.2 % is about 2 fp16 ULPs, a quarter of a bf16 ULP: accepted, and not zero.
  CHECK((*near)[0].mantissa_error_mean > 0);
  CHECK((*near)[0].mantissa_error_mean < 1);
  CHECK(acceptance_policy{}.accepts((*near)[0]));
}

TEST_CASE("malformed proofs are errors, never crashes", "[toploc][verify]") {
  const std::size_t hidden = 64, tokens = 10;
  const auto bits = test::random_bf16(tokens * hidden, 2);
  const auto states = hidden_states::bf16(bits, tokens, hidden);
  proof_options opt;
  opt.k = 16;
  opt.tokens_per_chunk = 4;  // 3 chunks
  auto proofs = build_proofs(states, opt);
  REQUIRE(proofs.ok());
  REQUIRE(proofs->size() == 3);
  const auto bytes = to_bytes(*proofs);
  REQUIRE(verify_proofs_bytes(states, bytes, opt).ok());

  auto code = [&](std::vector<std::byte> b) { return verify_proofs_bytes(states, b, opt).status().code(); };
  SECTION("null proof (modulus 0)") {
    auto b = bytes;
    b[0] = b[1] = std::byte{0};
    CHECK(code(b) == status_code::data_loss);
    std::vector<proof> ps = *proofs;
    ps[1] = null_proof(16);
    CHECK(verify_proofs(states, ps, opt).status().code() == status_code::data_loss);
  }
  SECTION("modulus below k") {
    auto b = bytes;
    b[0] = std::byte{0};
    b[1] = std::byte{15};
    CHECK(code(b) == status_code::data_loss);
  }
  SECTION("wrong length, wrong count, trailing bytes") {
    CHECK(code(std::vector<std::byte>(bytes.begin(), bytes.begin() + 2)) == status_code::data_loss);
    CHECK(code(std::vector<std::byte>(bytes.begin(), bytes.end() - static_cast<std::ptrdiff_t>(proof_size(16)))) ==
          status_code::data_loss);
    auto extra = bytes;
    extra.push_back(std::byte{1});
    CHECK(code(extra) == status_code::data_loss);
    CHECK(verify_proofs(states, std::span(*proofs).first(2), opt).status().code() == status_code::data_loss);
  }
  SECTION("a coefficient >= p") {
    auto b = bytes;
    b[4] = std::byte{0xff};
    b[5] = std::byte{0xff};
    CHECK(code(b) == status_code::data_loss);
    std::vector<proof> ps = *proofs;
    ps[0].coeffs[3] = 65535;
    CHECK(verify_proofs(states, ps, opt).status().code() == status_code::data_loss);
  }
  SECTION("a proof with the wrong k") {
    std::vector<proof> ps = *proofs;
    ps[2].coeffs.pop_back();
    CHECK(verify_proofs(states, ps, opt).status().code() == status_code::invalid_argument);
  }
}
