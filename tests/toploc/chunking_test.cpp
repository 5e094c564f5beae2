// Tests for toploc/chunking.h: chunk plans, the README example of the reference (byte-
// identical proofs and top-k indices), one-shot versus streaming, thread counts, fp32.
#include "dtrain/toploc/chunking.h"

#include <catch2/catch.hpp>

#include <vector>

#include "dtrain/toploc/topk.h"
#include "toploc/toploc_test_util.h"

using namespace dtrain::toploc;
using dtrain::dtype;
using dtrain::status_code;

namespace {

// The reference's README example: 5 prefill tokens, then 3 decode chunks of 3 tokens and
// a final chunk of 1 token, hidden 16, k = 4.
struct readme {
  std::vector<std::uint16_t> bits;  // all 15 rows
  std::size_t hidden = 16;
  proof_options opt;
  std::vector<std::string> hex, b64;
  std::vector<std::vector<std::uint32_t>> top;
};

readme load_readme() {
  const auto& v = test::vectors()["readme_example"];
  readme r;
  r.hidden = static_cast<std::size_t>(v["hidden"].num);
  r.opt.k = static_cast<std::size_t>(v["topk"].num);
  r.opt.tokens_per_chunk = static_cast<std::size_t>(v["decode_batching_size"].num);
  r.opt.prefill_tokens = 5;
  for (const char* c : {"c0", "c1", "c2", "c3", "c4"}) {
    const auto chunk = test::bits_from_hex(v["chunks"][c].str);
    r.bits.insert(r.bits.end(), chunk.begin(), chunk.end());
    r.hex.push_back(v["expected_proof_hex"][c].str);
    r.b64.push_back(v["expected_proof_base64"][c].str);
    std::vector<std::uint32_t> t;
    for (const auto& i : v["expected_top4_indices"][c].items) t.push_back(static_cast<std::uint32_t>(i.num));
    r.top.push_back(t);
  }
  REQUIRE(r.bits.size() == 15 * r.hidden);
  return r;
}

std::vector<proof> one_shot(const dtrain::toploc::hidden_states& s, const proof_options& opt) {
  auto p = build_proofs(s, opt);
  REQUIRE(p.ok());
  return std::move(*p);
}

}  // namespace

TEST_CASE("plan_chunks: prefill, full decode chunks, a final partial chunk", "[toploc][chunking]") {
  proof_options o;
  o.tokens_per_chunk = 3;
  o.prefill_tokens = 5;
  using v = std::vector<chunk_range>;
  CHECK(plan_chunks(15, o) == v{{0, 5}, {5, 3}, {8, 3}, {11, 3}, {14, 1}});
  CHECK(plan_chunks(5, o) == v{{0, 5}});
  CHECK(plan_chunks(2, o) == v{{0, 2}});
  CHECK(plan_chunks(0, o).empty());
  o.prefill_tokens = 0;  // skip_prefill
  CHECK(plan_chunks(7, o) == v{{0, 3}, {3, 3}, {6, 1}});
  o.tokens_per_chunk = 32;
  CHECK(plan_chunks(64, o) == v{{0, 32}, {32, 32}});
}

TEST_CASE("the reference README example: same top-k and byte-identical proofs", "[toploc][chunking][vectors]") {
  const readme r = load_readme();
  const auto states = hidden_states::bf16(r.bits, 15, r.hidden);
  const auto plan = plan_chunks(15, r.opt);
  REQUIRE(plan.size() == 5);
  for (std::size_t c = 0; c < 5; ++c) {
    CAPTURE(c);
    const auto chunk = std::span(r.bits).subspan(plan[c].first_token * r.hidden, plan[c].tokens * r.hidden);
    std::vector<std::uint32_t> idx(4);
    REQUIRE(select_topk(chunk, 4, idx).ok());
    CHECK(idx == r.top[c]);
  }
  auto proofs = build_proofs(states, r.opt);
  REQUIRE(proofs.ok());
  REQUIRE(proofs->size() == 5);
  for (std::size_t c = 0; c < 5; ++c) {
    CAPTURE(c);
    CHECK(test::to_hex(to_bytes((*proofs)[c])) == r.hex[c]);
    CHECK(to_base64((*proofs)[c]) == r.b64[c]);
  }
  auto b64 = build_proofs_base64(states, r.opt);
  REQUIRE(b64.ok());
  CHECK(*b64 == r.b64);
  auto bytes = build_proofs_bytes(states, r.opt);
  REQUIRE(bytes.ok());
  CHECK(*bytes == to_bytes(*proofs));
}

TEST_CASE("one-shot, streamed row by row and streamed in pieces give identical proofs", "[toploc][chunking]") {
  const dtype type = GENERATE(dtype::bf16, dtype::f16, dtype::f32);
  const std::size_t prefill = GENERATE(values<std::size_t>({0, 1, 7, 40}));
  const std::size_t tokens = GENERATE(values<std::size_t>({1, 31, 32, 33, 100}));
  const std::size_t hidden = 96;
  CAPTURE(dtrain::dtype_name(type), prefill, tokens);
  proof_options opt;
  opt.k = 64;
  opt.tokens_per_chunk = 32;
  opt.prefill_tokens = prefill;
  const auto bits = test::random_bf16(tokens * hidden, tokens + prefill, hidden);
  std::vector<float> f32(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) f32[i] = dtrain::bf16_bits_to_f32(bits[i]) * 1.0001f;
  const hidden_states all = type == dtype::f32 ? hidden_states::f32(f32, tokens, hidden)
                                               : hidden_states{type, bits.data(), tokens, hidden};
  const auto expected = one_shot(all, opt);
  REQUIRE(expected.size() == plan_chunks(tokens, opt).size());

  for (std::size_t piece : {std::size_t{1}, std::size_t{5}, tokens}) {
    CAPTURE(piece);
    auto s = proof_stream::create(hidden, type, opt);
    REQUIRE(s.ok());
    for (std::size_t at = 0; at < tokens; at += piece) REQUIRE(s->add(all.rows(at, std::min(piece, tokens - at))).ok());
    REQUIRE(s->tokens() == tokens);
    REQUIRE(s->finish().ok());
    CHECK(std::vector<proof>(s->proofs().begin(), s->proofs().end()) == expected);
  }
}

TEST_CASE("the stream emits each proof as soon as its chunk is complete", "[toploc][chunking]") {
  proof_options opt;
  opt.k = 8;
  opt.tokens_per_chunk = 4;
  opt.prefill_tokens = 3;
  const std::size_t hidden = 16;
  const auto bits = test::random_bf16(20 * hidden, 5);
  auto s = proof_stream::create(hidden, dtype::bf16, opt);
  REQUIRE(s.ok());
  const auto all = hidden_states::bf16(bits, 20, hidden);
  std::vector<std::size_t> emitted;
  for (std::size_t t = 0; t < 9; ++t) {
    REQUIRE(s->add(all.rows(t, 1)).ok());
    emitted.push_back(s->proofs().size());
  }
  CHECK(emitted == std::vector<std::size_t>{0, 0, 1, 1, 1, 1, 2, 2, 2});
  auto taken = s->take_proofs();
  CHECK(taken.size() == 2);
  CHECK(s->proofs().empty());
  REQUIRE(s->finish().ok());
  CHECK(s->proofs().size() == 1);  // the partial chunk of 2 rows
  CHECK(s->add(all.rows(9, 1)).code() == status_code::failed_precondition);
  CHECK(s->finish().code() == status_code::failed_precondition);
}

TEST_CASE("proofs do not depend on the thread count", "[toploc][chunking]") {
  const std::size_t hidden = 256, tokens = 32 * 9 + 5;
  const auto bits = test::random_bf16(tokens * hidden, 99, hidden);
  proof_options opt;
  opt.prefill_tokens = 17;
  opt.threads = 1;
  const auto single = one_shot(hidden_states::bf16(bits, tokens, hidden), opt);
  for (unsigned t : {2u, 3u, 0u}) {
    opt.threads = t;
    CHECK(one_shot(hidden_states::bf16(bits, tokens, hidden), opt) == single);
  }
}

TEST_CASE("fp32 proves like the same values rounded to bf16", "[toploc][chunking]") {
  const std::size_t hidden = 64, tokens = 40;
  std::vector<float> f(tokens * hidden);
  const auto bits = test::random_bf16(f.size(), 4, hidden);
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = dtrain::bf16_bits_to_f32(bits[i]) * 1.003f;
  std::vector<std::uint16_t> rounded(f.size());
  for (std::size_t i = 0; i < f.size(); ++i) rounded[i] = dtrain::f32_to_bf16_bits(f[i]);
  proof_options opt;
  CHECK(one_shot(hidden_states::f32(f, tokens, hidden), opt) == one_shot(hidden_states::bf16(rounded, tokens, hidden), opt));
}

TEST_CASE("chunks smaller than k commit every value and keep the proof length", "[toploc][chunking]") {
  const std::size_t hidden = 16;
  const auto bits = test::random_bf16(3 * hidden, 8);
  proof_options opt;  // k = 128 > 48 values
  auto p = build_proofs(hidden_states::bf16(bits, 3, hidden), opt);
  REQUIRE(p.ok());
  REQUIRE(p->size() == 1);
  CHECK((*p)[0].coeffs.size() == 128);
  CHECK(to_bytes((*p)[0]).size() == 258);
  for (std::size_t i = 0; i < bits.size(); ++i) CHECK((*p)[0].at(i) == bits[i] % 65497u);
  for (std::size_t i = 48; i < 128; ++i) CHECK((*p)[0].coeffs[i] == 0);
}

TEST_CASE("builders reject bad options and inputs", "[toploc][chunking]") {
  const std::vector<std::uint16_t> bits(64, 0x3f80);
  proof_options opt;
  opt.k = 0;
  CHECK(build_proofs(hidden_states::bf16(bits, 4, 16), opt).status().code() == status_code::invalid_argument);
  opt.k = 70000;
  CHECK(build_proofs(hidden_states::bf16(bits, 4, 16), opt).status().code() == status_code::invalid_argument);
  opt = {};
  opt.tokens_per_chunk = 0;
  CHECK(build_proofs(hidden_states::bf16(bits, 4, 16), opt).status().code() == status_code::invalid_argument);
  opt = {};
  CHECK(build_proofs(hidden_states::bf16(bits, 0, 16), opt).status().code() == status_code::invalid_argument);
  CHECK(build_proofs(hidden_states::bf16(bits, 4, 0), opt).status().code() == status_code::invalid_argument);
  CHECK(build_proofs(hidden_states{dtype::bf16, nullptr, 4, 16}, opt).status().code() == status_code::invalid_argument);
  auto s = proof_stream::create(16, dtype::bf16, opt);
  REQUIRE(s.ok());
  CHECK(s->add(hidden_states::bf16(bits, 2, 32)).code() == status_code::invalid_argument);
  CHECK(s->add(hidden_states::f16(bits, 2, 16)).code() == status_code::invalid_argument);
  CHECK(proof_stream::create(0, dtype::bf16, opt).status().code() == status_code::invalid_argument);
  chunk_prover prover(8);
  proof out{1, {9}};
  CHECK(prover.build(std::span<const std::uint16_t>{}, out).code() == status_code::invalid_argument);
  CHECK(out == proof{1, {9}});  // untouched on error
}
