// lib/crypto/sodium_init.h (private): the one place the crypto layer initialises libsodium.
#pragma once

namespace dtrain::crypto::detail {

/// Calls sodium_init() once per process (thread-safe); asserts if libsodium cannot
/// initialise (only when the OS gives no entropy source). Every public entry point of the
/// crypto layer that touches libsodium calls this first.
void ensure_sodium() noexcept;

}  // namespace dtrain::crypto::detail
