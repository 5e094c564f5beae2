// dtrain/core/convert_cuda.h: the CUDA versions of core/convert.h's bulk conversions,
// bit-identical to the CPU reference (lib/core/convert.cpp). Available when dtrain was
// built with CUDA (target dtrain::cuda); pointers are device memory.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dtrain/core/status.h"

namespace dtrain::cuda {

/// Number of CUDA devices usable by this process (0 when there is no GPU or driver).
int device_count() noexcept;

/// d_out[i] = f32_to_f16_bits(d_in[i]) on `stream` (a cudaStream_t, nullptr = default).
/// Errors: unavailable when no device or the launch fails. Asynchronous on `stream`.
status f32_to_f16(const float* d_in, std::uint16_t* d_out, std::size_t n, void* stream = nullptr) noexcept;
/// d_out[i] = f32_to_bf16_bits(d_in[i]).
status f32_to_bf16(const float* d_in, std::uint16_t* d_out, std::size_t n, void* stream = nullptr) noexcept;
/// d_out[i] = f16_bits_to_f32(d_in[i]).
status f16_to_f32(const std::uint16_t* d_in, float* d_out, std::size_t n, void* stream = nullptr) noexcept;
/// d_out[i] = bf16_bits_to_f32(d_in[i]).
status bf16_to_f32(const std::uint16_t* d_in, float* d_out, std::size_t n, void* stream = nullptr) noexcept;

}  // namespace dtrain::cuda
