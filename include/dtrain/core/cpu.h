// dtrain/core/cpu.h: run-time CPU feature checks for the kernels that have a vector build
// beside a portable one (codec quantizers, TOPLOC, multi-buffer BLAKE2b). One place, so
// every layer agrees on what the machine has.
#pragma once

// DTRAIN_X86: 1 when compiling for x86 (the AVX2 builds exist), else 0.
#if defined(__x86_64__) || defined(__i386__)
#define DTRAIN_X86 1
#else
#define DTRAIN_X86 0
#endif

namespace dtrain {

/// True when the CPU running this process has AVX2 (always false off x86). Checked once,
/// then cached; thread-safe.
bool cpu_has_avx2() noexcept;

}  // namespace dtrain
