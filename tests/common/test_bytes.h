// tests/common/test_bytes.h: deterministic test inputs shared by the test binaries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace dtrain::test {

/// Bytes (31·i + 7) mod 256: the message several frozen digests were computed over.
inline std::vector<std::byte> pattern_bytes(std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + 7) & 255);
  return v;
}

/// n bytes from mt19937_64(seed): the same on every platform.
inline std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

}  // namespace dtrain::test
