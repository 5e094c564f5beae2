// dtrain/core/convert.h: fast bulk conversion between f32 and f16/bf16, bit-identical
// to the scalar functions in dtype.h. Picks an AVX2+F16C path at run time when the CPU
// has it, a portable loop otherwise (see convert_isa()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace dtrain {

/// out[i] = f32_to_f16_bits(in[i]). @pre out.size() >= in.size(); buffers do not overlap.
void f32_to_f16(std::span<const float> in, std::span<std::uint16_t> out) noexcept;
/// out[i] = f16_bits_to_f32(in[i]). @pre out.size() >= in.size().
void f16_to_f32(std::span<const std::uint16_t> in, std::span<float> out) noexcept;
/// acc[i] += w * f16_bits_to_f32(in[i]). @pre acc.size() >= in.size().
void f16_accumulate(std::span<const std::uint16_t> in, std::span<float> acc, float w) noexcept;
/// out[i] = f32_to_bf16_bits(in[i]). @pre out.size() >= in.size().
void f32_to_bf16(std::span<const float> in, std::span<std::uint16_t> out) noexcept;
/// out[i] = bf16_bits_to_f32(in[i]). @pre out.size() >= in.size().
void bf16_to_f32(std::span<const std::uint16_t> in, std::span<float> out) noexcept;
/// acc[i] += w * bf16_bits_to_f32(in[i]). @pre acc.size() >= in.size().
void bf16_accumulate(std::span<const std::uint16_t> in, std::span<float> acc, float w) noexcept;

/// Index of the first NaN or ±Inf in `in`, or in.size() when every value is finite.
std::size_t find_nonfinite(std::span<const float> in) noexcept;

/// Which implementation the bulk functions use on this CPU: "avx2+f16c" or "portable".
std::string_view convert_isa() noexcept;

}  // namespace dtrain
