// tests/fuzz/fuzz_contract.h: what the fuzz targets share. A contract violation aborts
// (libFuzzer then keeps the input as a crash file) after naming the target and the broken
// rule; the signing targets re-sign their inputs with one fixed Ed25519 identity so that
// the checks behind a signature see arbitrary bytes too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::fuzz {

/// Prints "<target>: contract violated: <what> (<status>)" and aborts.
[[noreturn]] inline void contract_violated(const char* target, const char* what, const status& st = {}) {
  std::fprintf(stderr, "%s: contract violated: %s (%s)\n", target, what, st.to_string().c_str());
  std::abort();
}

/// A deterministic identity from a 32-byte seed of `seed_byte` (Identity is
/// crypto::identity; a template so that targets without the crypto layer need not link it).
template <class Identity>
const Identity& fixed_identity(std::uint8_t seed_byte) {
  static const Identity id = [seed_byte] {
    std::vector<std::byte> seed(32, std::byte{seed_byte});
    return Identity::from_seed(seed).value();
  }();
  return id;
}

}  // namespace dtrain::fuzz
