// tests/optim/optim_test_util.h: shared helpers for the outer-optimizer tests: seeded
// inputs, bitwise comparison and state snapshots.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "dtrain/optim/optimizer.h"

namespace dtrain::optim::test {

/// n floats, normal(mean, sd), from a fixed seed.
inline std::vector<float> randn(std::size_t n, std::uint32_t seed, float mean = 0.0f, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(mean, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

/// The optimizer's serialized state, for "nothing changed" and round-trip checks.
inline std::vector<std::byte> snapshot(const outer_optimizer& o) {
  std::vector<std::byte> s(o.state_bytes());
  auto r = o.save_state(s);
  if (!r.ok() || *r != s.size()) s.clear();
  return s;
}

/// |a − ref| <= rel·|ref| + abs for every element; returns the first failing index or size.
inline std::size_t first_mismatch(const std::vector<float>& a, const std::vector<double>& ref, double rel,
                                  double abs) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - ref[i];
    if (!(d <= rel * (ref[i] < 0 ? -ref[i] : ref[i]) + abs && -d <= rel * (ref[i] < 0 ? -ref[i] : ref[i]) + abs))
      return i;
  }
  return a.size();
}

}  // namespace dtrain::optim::test
