// Chunk plans: fixed-size file chunks; tensor-aligned plans (big tensors start chunks and
// keep them across versions, small tensors packed, every chunk 1..C bytes, exact tiling);
// erasure stripes (short last stripe, stripe lengths, global parity indices).
#include "dtrain/shard/chunker.h"

#include <catch2/catch.hpp>

#include <random>
#include <vector>

using namespace dtrain::shard;

namespace {

// The plan tiles [0, total) in order with chunks of 1..C bytes.
void check_tiling(const std::vector<chunk_span>& plan, std::uint64_t total, std::uint64_t c) {
  std::uint64_t at = 0;
  for (const auto& ch : plan) {
    REQUIRE(ch.offset == at);
    REQUIRE(ch.length >= 1);
    REQUIRE(ch.length <= c);
    at += ch.length;
  }
  REQUIRE(at == total);
}

std::vector<tensor_desc> random_tensors(std::mt19937_64& rng, std::size_t n, std::uint64_t c) {
  std::vector<tensor_desc> t;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t size = 0;
    switch (rng() % 4) {
      case 0: size = 0; break;
      case 1: size = rng() % (c / 4 + 1); break;          // small (or exactly C/4)
      case 2: size = c / 4 + rng() % (2 * c); break;        // big, under 2C + C/4
      default: size = rng() % 64; break;
    }
    t.push_back({"t" + std::to_string(i), "u8", {size}, size});
  }
  return t;
}

}  // namespace

TEST_CASE("plan_file_chunks: fixed-size chunks, short last chunk") {
  const std::uint64_t total = GENERATE(values<std::uint64_t>({0, 1, 7, 4096, 4097, 100003}));
  const std::uint64_t c = GENERATE(values<std::uint64_t>({1, 4096, 1 << 20}));
  CAPTURE(total, c);
  if (total / c > 200000) return;
  auto plan = plan_file_chunks(total, c);
  REQUIRE(plan.ok());
  check_tiling(*plan, total, c);
  REQUIRE(plan->size() == (total + c - 1) / c);
  for (const auto& ch : *plan) REQUIRE(ch.first_tensor == no_tensor);
}

TEST_CASE("plan_file_chunks: errors") {
  REQUIRE(plan_file_chunks(10, 0).status().code() == dtrain::status_code::invalid_argument);
  REQUIRE(plan_file_chunks(std::uint64_t{1} << 40, 1).status().code() == dtrain::status_code::invalid_argument);
  REQUIRE(plan_file_chunks(0, 0).status().code() == dtrain::status_code::invalid_argument);
}

TEST_CASE("plan_tensor_chunks: hand-worked example") {
  // C = 100: big tensors are >= 25 bytes.
  std::vector<tensor_desc> t = {
      {"a", "f32", {2}, 8},    // small            [0, 8)
      {"b", "f32", {3}, 12},   // small, packed    [8, 20)
      {"c", "u8", {250}, 250}, // big: 3 chunks    [20, 120) [120, 220) [220, 270)
      {"d", "u8", {24}, 24},   // small            [270, 294)
      {"e", "u8", {0}, 0},     // empty
      {"f", "u8", {24}, 24},   // small            [294, 318)
      {"g", "u8", {24}, 24},   // small            [318, 342)
      {"h", "u8", {24}, 24},   // small            [342, 366)
      {"i", "u8", {24}, 24},   // small: 5th of 24 > 100, new chunk [366, 390)
      {"j", "u8", {25}, 25},   // big: own chunk   [390, 415)
  };
  auto plan = plan_tensor_chunks(t, 100);
  REQUIRE(plan.ok());
  const std::vector<chunk_span> want = {
      {0, 20, 0}, {20, 100, 2}, {120, 100, 2}, {220, 50, 2}, {270, 96, 3}, {366, 24, 8}, {390, 25, 9},
  };
  REQUIRE(*plan == want);
}

TEST_CASE("plan_tensor_chunks: random lists tile, big tensors start chunks") {
  std::mt19937_64 rng(GENERATE(1u, 2u, 3u, 4u, 5u));
  const std::uint64_t c = GENERATE(values<std::uint64_t>({1, 3, 64, 1000}));
  CAPTURE(c);
  auto t = random_tensors(rng, 1 + rng() % 40, c);
  auto offsets = tensor_offsets(t);
  REQUIRE(offsets.ok());
  auto plan = plan_tensor_chunks(t, c);
  REQUIRE(plan.ok());
  check_tiling(*plan, offsets->back(), c);
  for (std::size_t i = 0; i < t.size(); ++i) {
    const bool big = t[i].size > 0 && 4 * t[i].size >= c;
    if (!big) continue;
    // A big tensor owns whole chunks: one starts at its offset and one ends at its end.
    bool starts = false;
    bool ends = false;
    for (const auto& ch : *plan) {
      starts = starts || ch.offset == (*offsets)[i];
      ends = ends || ch.offset + ch.length == (*offsets)[i + 1];
      if (ch.offset >= (*offsets)[i] && ch.offset < (*offsets)[i + 1]) REQUIRE(ch.first_tensor == i);
    }
    REQUIRE(starts);
    REQUIRE(ends);
  }
  // first_tensor holds the chunk's first byte.
  for (const auto& ch : *plan) {
    REQUIRE(ch.first_tensor < t.size());
    REQUIRE((*offsets)[ch.first_tensor] <= ch.offset);
    REQUIRE(ch.offset < (*offsets)[ch.first_tensor + 1]);
  }
}

TEST_CASE("plan_tensor_chunks: an unchanged big tensor keeps its chunks when others change") {
  std::vector<tensor_desc> v1 = {{"emb", "bf16", {}, 1000}, {"norm", "f32", {}, 40}, {"w", "f32", {}, 900}};
  std::vector<tensor_desc> v2 = {{"emb", "bf16", {}, 1000}, {"norm", "f32", {}, 52}, {"w", "f32", {}, 900}};
  auto p1 = plan_tensor_chunks(v1, 256);
  auto p2 = plan_tensor_chunks(v2, 256);
  REQUIRE(p1.ok());
  REQUIRE(p2.ok());
  // Chunks of "w" (tensor 2) have the same lengths and relative offsets in both versions.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> w1, w2;
  for (const auto& c : *p1)
    if (c.first_tensor == 2) w1.emplace_back(c.offset - 1040, c.length);
  for (const auto& c : *p2)
    if (c.first_tensor == 2) w2.emplace_back(c.offset - 1052, c.length);
  REQUIRE(w1.size() == 4);
  REQUIRE(w1 == w2);
}

TEST_CASE("plan_tensor_chunks: errors and edge cases") {
  std::vector<tensor_desc> none;
  auto empty = plan_tensor_chunks(none, 16);
  REQUIRE(empty.ok());
  REQUIRE(empty->empty());
  std::vector<tensor_desc> zeros = {{"a", "f32", {0}, 0}, {"b", "f32", {0}, 0}};
  REQUIRE(plan_tensor_chunks(zeros, 16)->empty());
  REQUIRE(plan_tensor_chunks(zeros, 0).status().code() == dtrain::status_code::invalid_argument);
  std::vector<tensor_desc> huge = {{"a", "u8", {}, ~std::uint64_t{0}}, {"b", "u8", {}, 2}};
  REQUIRE(plan_tensor_chunks(huge, 16).status().code() == dtrain::status_code::invalid_argument);
  REQUIRE(tensor_offsets(huge).status().code() == dtrain::status_code::invalid_argument);
}

TEST_CASE("make_tensor: dtype name and byte size") {
  auto t = make_tensor("w", dtrain::dtype::bf16, {3, 5});
  REQUIRE(t.dtype == "bf16");
  REQUIRE(t.size == 30);
  REQUIRE(make_tensor("s", dtrain::dtype::f32, {}).size == 4);
}

TEST_CASE("plan_stripes: layout, short last stripe, indices") {
  const std::vector<std::uint64_t> lengths = {10, 10, 7, 10, 3, 10, 10, 10, 10, 4};
  auto l = plan_stripes(lengths, 4, 2);
  REQUIRE(l.ok());
  REQUIRE(l->stripes() == 3);
  REQUIRE(l->stripe_length == std::vector<std::uint64_t>{10, 10, 10});
  REQUIRE(l->stripe_data_count(0) == 4);
  REQUIRE(l->stripe_data_count(2) == 2);
  REQUIRE(l->parity_chunks() == 6);
  REQUIRE(l->total_chunks() == 16);
  REQUIRE(l->parity_index(0, 0) == 10);
  REQUIRE(l->parity_index(2, 1) == 15);

  auto l2 = plan_stripes(std::vector<std::uint64_t>{5, 9, 2}, 2, 1);
  REQUIRE(l2->stripe_length == std::vector<std::uint64_t>{9, 2});

  auto none = plan_stripes(lengths, 4, 0);
  REQUIRE(none.ok());
  REQUIRE(none->stripes() == 0);
  REQUIRE(none->k == 0);
  REQUIRE(none->total_chunks() == 10);

  REQUIRE(plan_stripes(lengths, 0, 2).status().code() == dtrain::status_code::invalid_argument);
  REQUIRE(plan_stripes(lengths, 250, 6).status().code() == dtrain::status_code::invalid_argument);
  REQUIRE(plan_stripes(lengths, 250, 5).ok());
  REQUIRE(plan_stripes({}, 4, 2)->stripes() == 0);
}
