// tests/toploc/toploc_test_util.h: the shared vectors, hex, and random activations.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dtrain/core/dtype.h"
#include "dtrain/core/rng.h"
#include "toploc/json_lite.h"
#include "common/hex.h"

namespace dtrain::toploc::test {

using dtrain::test::from_hex;
using dtrain::test::to_hex;

/// ../shared/vectors/toploc.json, read through the in-tree copy (tests/toploc/data) so the
/// suite runs without ../shared; when ../shared is there the two must be identical.
inline const dtrain::test::json& vectors() {
  static const dtrain::test::json v = [] {
    const std::string local = dtrain::test::read_text(DTRAIN_TEST_SOURCE_DIR "/toploc/data/toploc.json");
    REQUIRE(!local.empty());
    const std::string shared = dtrain::test::read_text(DTRAIN_SHARED_DIR "/vectors/toploc.json");
    if (!shared.empty()) REQUIRE(shared == local);
    return dtrain::test::json::parse(local);
  }();
  return v;
}



/// A string of 4-hex-digit groups as 16-bit patterns.
inline std::vector<std::uint16_t> bits_from_hex(const std::string& hex) {
  std::vector<std::uint16_t> out;
  for (std::size_t i = 0; i + 3 < hex.size(); i += 4)
    out.push_back(static_cast<std::uint16_t>(std::stoul(hex.substr(i, 4), nullptr, 16)));
  return out;
}

/// n Gaussian-ish values (sum of 4 uniforms, scaled) as bf16 patterns, with a few
/// outlier channels 20x larger, like LLM hidden states.
inline std::vector<std::uint16_t> random_bf16(std::size_t n, std::uint64_t seed, std::size_t hidden = 0) {
  counter_rng rng(seed);
  std::vector<std::uint16_t> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    float v = 0;
    for (int j = 0; j < 4; ++j) v += rng.next_uniform() - 0.5f;
    if (hidden != 0 && (i % hidden) % 97 == 3) v *= 20.0f;
    out[i] = f32_to_bf16_bits(v);
  }
  return out;
}

}  // namespace dtrain::toploc::test
