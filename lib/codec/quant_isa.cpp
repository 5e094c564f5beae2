// Kernel-set selection for the dense quantizer codecs (detail/quant_isa.h).
#include "dtrain/codec/detail/quant_isa.h"

#include <atomic>

#include "dtrain/core/assert.h"
#include "dtrain/core/cpu.h"

namespace dtrain::codec {
namespace {
std::atomic<std::uint8_t> forced_isa{0};  // quant_isa::automatic
}  // namespace

namespace detail {

bool quant_isa_available(quant_isa isa) noexcept {
  if (isa != quant_isa::avx2) return true;
  return cpu_has_avx2();
}

void set_quant_isa(quant_isa isa) noexcept {
  DTRAIN_ASSERT(quant_isa_available(isa));
  forced_isa.store(static_cast<std::uint8_t>(isa), std::memory_order_relaxed);
}

quant_isa active_quant_isa() noexcept {
  const auto f = static_cast<quant_isa>(forced_isa.load(std::memory_order_relaxed));
  if (f != quant_isa::automatic) return f;
  return quant_isa_available(quant_isa::avx2) ? quant_isa::avx2 : quant_isa::portable;
}

}  // namespace detail

}  // namespace dtrain::codec
