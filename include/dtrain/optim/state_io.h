// dtrain/optim/state_io.h: the optimizer-state blob ("DTOS", docs/formats/
// optimizer_state.md): its layout constants, a verifying parser and a re-sealer.
//
//   offset size  field (little-endian)
//   0      4     magic "DTOS"
//   4      2     format version (1)
//   6      1     optimizer kind (optimizer_kind)
//   7      1     buffer count B
//   8      8     element count n
//   16     8     completed steps
//   24     8     learning rate (f64)
//   32     2     hyperparameter bytes H
//   34     2     reserved (0)
//   36     H     hyperparameters (per kind)
//   36+H   4·B·n buffers, f32, buffer after buffer
//   end-8  8     XXH3-64 (seed 0) of every preceding byte
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "dtrain/core/status.h"
#include "dtrain/optim/optimizer.h"

namespace dtrain::optim {

inline constexpr std::array<std::byte, 4> state_magic = {std::byte{'D'}, std::byte{'T'}, std::byte{'O'},
                                                         std::byte{'S'}};
inline constexpr std::uint16_t state_format_version = 1;
inline constexpr std::size_t state_header_bytes = 36;
inline constexpr std::size_t state_checksum_bytes = 8;

/// A parsed, checksum-verified state blob. Spans point into the caller's buffer.
struct state_view {
  optimizer_kind kind{};
  std::uint8_t buffers = 0;
  std::uint64_t count = 0;
  std::uint64_t steps = 0;
  double lr = 0;
  std::span<const std::byte> hyper;
  std::span<const std::byte> data;  ///< 4·buffers·count bytes of f32 LE
};

/// Total blob size for H hyperparameter bytes and B buffers of n floats.
constexpr std::size_t state_size(std::size_t hyper, std::size_t buffers, std::size_t n) noexcept {
  return state_header_bytes + hyper + 4 * buffers * n + state_checksum_bytes;
}

/// Checks magic, version, reserved bytes, the exact length and the checksum.
/// Does not judge the contents (kind, hyperparameters, finiteness): load_state does.
/// Errors: data_loss (short, long, bad magic, reserved bits, checksum), unimplemented
/// (format version newer than this build).
result<state_view> parse_state(std::span<const std::byte> blob);

/// Recomputes the trailing checksum of a blob after its bytes were edited. For tests and
/// tools that craft blobs. @pre blob.size() >= state_header_bytes + state_checksum_bytes.
void seal_state(std::span<std::byte> blob) noexcept;

}  // namespace dtrain::optim
