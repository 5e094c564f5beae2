// libsodium initialisation for the crypto layer.
#include "sodium_init.h"

#include <sodium.h>

#include <mutex>

#include "dtrain/core/assert.h"

namespace dtrain::crypto::detail {

// sodium_init() is itself thread-safe and idempotent, but call_once keeps the failure
// check in one place.
void ensure_sodium() noexcept {
  static std::once_flag once;
  std::call_once(once, [] { DTRAIN_ASSERT(sodium_init() >= 0 && "libsodium failed to initialise"); });
}

}  // namespace dtrain::crypto::detail
