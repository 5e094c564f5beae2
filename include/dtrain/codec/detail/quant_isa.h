// dtrain/codec/detail/quant_isa.h: which kernel set (portable or AVX2) the dense
// quantizer codecs (minmax, blockwise, uniform8, fp4) run, chosen once per process, and a
// testing hook to force one. Every choice writes bit-identical payloads.
#pragma once

#include <cstdint>

namespace dtrain::codec {

namespace detail {
/// Instruction sets the dense quantizer kernels (minmax, blockwise, fp4) can run on.
/// Every choice writes bit-identical payloads and decodes to bit-identical floats.
enum class quant_isa : std::uint8_t { automatic = 0, portable = 1, avx2 = 2 };
/// True when this CPU (and build) can run `isa`; automatic and portable always can.
bool quant_isa_available(quant_isa isa) noexcept;
/// Testing hook: forces the kernels of all later encodes/decodes in this process to
/// `isa` (automatic: the best this CPU has). @pre quant_isa_available(isa). Not for
/// concurrent use with running codecs.
void set_quant_isa(quant_isa isa) noexcept;
/// The kernel set encodes and decodes use now: portable or avx2.
quant_isa active_quant_isa() noexcept;
}  // namespace detail

}  // namespace dtrain::codec
