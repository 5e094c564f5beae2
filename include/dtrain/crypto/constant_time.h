// dtrain/crypto/constant_time.h: comparisons whose running time does not depend on the
// bytes compared (libsodium sodium_memcmp), for digests, tags and nonces.
#pragma once

#include <cstddef>
#include <span>

namespace dtrain::crypto {

/// True when a and b hold the same bytes. The time depends only on the lengths, never on
/// the contents or on where the first difference lies; spans of different lengths
/// compare unequal at once (lengths are not secret). Two empty spans are equal.
bool constant_time_equal(std::span<const std::byte> a, std::span<const std::byte> b) noexcept;

}  // namespace dtrain::crypto
