// Shared helpers for codec tests: input families and encode/decode round trips.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "dtrain/codec/codec.h"
#include "dtrain/codec/registry.h"
#include "dtrain/core/rng.h"

namespace dtrain::test {

/// The input families every codec's error bound is checked on.
enum class family { random, nonzero_mean, all_negative, constant, all_zero, heavy_tail };
inline const char* family_name(family f) {
  switch (f) {
    case family::random: return "random";
    case family::nonzero_mean: return "nonzero_mean";
    case family::all_negative: return "all_negative";
    case family::constant: return "constant";
    case family::all_zero: return "all_zero";
    case family::heavy_tail: return "heavy_tail";
  }
  return "?";
}
inline const family all_families[] = {family::random,   family::nonzero_mean, family::all_negative,
                                      family::constant, family::all_zero,     family::heavy_tail};

inline std::vector<float> make_input(family f, std::size_t n, std::uint64_t seed = 1) {
  counter_rng rng(seed, static_cast<std::uint64_t>(f));
  std::vector<float> x(n);
  for (auto& v : x) {
    switch (f) {
      case family::random: v = rng.next_normal(); break;
      case family::nonzero_mean: v = 3.0f + 0.1f * rng.next_normal(); break;
      case family::all_negative: v = -1.0f - std::fabs(rng.next_normal()); break;
      case family::constant: v = -0.375f; break;
      case family::all_zero: v = 0.0f; break;
      case family::heavy_tail: {
        const float g = rng.next_normal();
        v = g * g * g * 0.01f;
        break;
      }
    }
  }
  return x;
}

inline std::unique_ptr<codec::codec> make(const std::string& spec) {
  auto c = codec::make_codec(spec);
  INFO("spec: " << spec << " status: " << (c.ok() ? "ok" : c.status().to_string()));
  REQUIRE(c.ok());
  return std::move(c).value();
}

/// Encodes x; REQUIREs success and that exactly max_encoded_bytes were written.
inline std::vector<std::byte> encode(codec::codec& c, std::span<const float> x) {
  std::vector<std::byte> buf(c.max_encoded_bytes(x.size()));
  auto n = c.encode(x, buf);
  INFO("encode: " << (n.ok() ? "ok" : n.status().to_string()));
  REQUIRE(n.ok());
  REQUIRE(*n == buf.size());
  return buf;
}

inline std::vector<float> decode(const codec::codec& c, std::span<const std::byte> p, std::size_t n) {
  std::vector<float> y(n, std::nanf(""));
  auto st = c.decode(p, y);
  INFO("decode: " << st.to_string());
  REQUIRE(st.ok());
  return y;
}

inline float max_abs(std::span<const float> x) {
  float m = 0;
  for (float v : x) m = std::max(m, std::fabs(v));
  return m;
}

}  // namespace dtrain::test
