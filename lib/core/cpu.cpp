// Run-time CPU feature checks (dtrain/core/cpu.h).
#include "dtrain/core/cpu.h"

namespace dtrain {

bool cpu_has_avx2() noexcept {
#if DTRAIN_X86
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
#else
  return false;
#endif
}

}  // namespace dtrain
