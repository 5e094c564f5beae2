// lib/toploc/modulus.cpp: the largest m <= 65497 under which the indices stay distinct.
#include "dtrain/toploc/modulus.h"

#include <algorithm>
#include <array>
#include <bitset>
#include <memory>
#include <string>
#include <vector>

#include "dtrain/toploc/field.h"

namespace dtrain::toploc {

result<std::uint32_t> injective_modulus(std::span<const std::uint32_t> idx) {
  if (idx.empty()) return invalid_argument("injective_modulus: no indices");
  const std::size_t n = idx.size();
  const std::uint32_t max_idx = *std::max_element(idx.begin(), idx.end());
  // One bit per residue (< 65497), cleared after each try through the touched residues.
  auto seen = std::make_unique<std::bitset<prime>>();
  if (max_idx < prime) {
    // Every index is its own residue under p: distinct unless there is a duplicate.
    for (std::uint32_t v : idx) {
      if ((*seen)[v]) return invalid_argument("injective_modulus: index " + std::to_string(v) + " appears twice");
      seen->set(v);
    }
    return prime;
  }
  const std::uint32_t lowest = static_cast<std::uint32_t>(std::max<std::size_t>(n, 1));
  for (std::uint32_t m = prime; m >= lowest && m > 0; --m) {
    std::size_t i = 0;
    for (; i < n; ++i) {
      const std::uint32_t r = idx[i] % m;
      if ((*seen)[r]) break;
      seen->set(r);
    }
    for (std::size_t j = 0; j < i; ++j) seen->reset(idx[j] % m);
    if (i == n) return m;
    if (m == prime) {
      // A collision under p may be a plain duplicate, which no modulus separates.
      std::vector<std::uint32_t> sorted(idx.begin(), idx.end());
      std::sort(sorted.begin(), sorted.end());
      const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
      if (dup != sorted.end())
        return invalid_argument("injective_modulus: index " + std::to_string(*dup) + " appears twice");
    }
  }
  return out_of_range("injective_modulus: no modulus in [" + std::to_string(lowest) +
                      ", 65497] keeps the " + std::to_string(n) + " indices distinct");
}

}  // namespace dtrain::toploc
