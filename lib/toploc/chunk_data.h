// lib/toploc/chunk_data.h (private): checks and 16-bit views of hidden states, shared by
// the provers and verifiers.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/toploc/chunking.h"

namespace dtrain::toploc::detail {

/// invalid_argument for hidden == 0, tokens == 0, a null pointer, an unknown dtype or an
/// absurd size.
status check_states(const hidden_states& s);

/// The chunk's values as 16-bit patterns: bf16/f16 as they are, f32 converted to bf16
/// (round to nearest even) into `scratch`.
std::span<const std::uint16_t> chunk_bits(const hidden_states& chunk, std::vector<std::uint16_t>& scratch);

}  // namespace dtrain::toploc::detail
