// dtrain/core/assert.h: the programmer-error channel. DTRAIN_ASSERT aborts with
// file:line and the failed condition; it stays on in release builds because a broken
// invariant in a consensus library must never run on silently.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace dtrain::detail {
[[noreturn]] inline void assert_fail(const char* cond, const char* file, int line) noexcept {
  std::fprintf(stderr, "dtrain: assertion failed: %s [%s:%d]\n", cond, file, line);
  std::abort();
}
}  // namespace dtrain::detail

#define DTRAIN_ASSERT(cond)                                                          \
  ((cond) ? static_cast<void>(0) : ::dtrain::detail::assert_fail(#cond, __FILE__, __LINE__))
