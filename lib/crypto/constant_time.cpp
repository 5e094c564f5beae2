// Constant-time byte comparison over libsodium.
#include "dtrain/crypto/constant_time.h"

#include <sodium.h>

#include "sodium_init.h"

namespace dtrain::crypto {

bool constant_time_equal(std::span<const std::byte> a, std::span<const std::byte> b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  detail::ensure_sodium();  // sodium_memcmp picks no implementation at init, but stay uniform
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace dtrain::crypto
