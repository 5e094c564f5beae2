// lib/toploc/field.cpp: the table of inverses in GF(65497).
#include "dtrain/toploc/field.h"

#include <array>

namespace dtrain::toploc {
namespace {

struct table {
  std::array<std::uint16_t, prime> v{};
  table() {
    v[0] = 0;
    v[1] = 1;
    // p = (p / i)·i + (p mod i) gives i^-1 = -(p / i)·(p mod i)^-1 (mod p).
    for (std::uint32_t i = 2; i < prime; ++i)
      v[i] = static_cast<std::uint16_t>(gf::sub(0, gf::mul(prime / i, v[prime % i])));
  }
};

}  // namespace

std::span<const std::uint16_t> inverse_table() noexcept {
  static const table t;
  return t.v;
}

}  // namespace dtrain::toploc
