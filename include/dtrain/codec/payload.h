// dtrain/codec/payload.h: the self-describing payload frame shared by every codec
// (docs/formats/codec_payload.md) and basic_codec, which implements the frame so that
// concrete codecs only write their parameters and body.
//
//   offset size  field (little-endian)
//   0      4     magic "DTCP"
//   4      1     frame format version (1)
//   5      1     codec id (codec_id)
//   6      1     codec version
//   7      1     flags (0; reserved)
//   8      8     element count n
//   16     2     parameter bytes P
//   18     2     reserved (0)
//   20     8     XXH3-64 (seed 0) of bytes [0, 20) ++ params ++ body
//   28     P     codec parameters
//   28+P   ...   body; its length is fixed by (n, parameters)
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dtrain/codec/codec.h"
#include "dtrain/core/bytes.h"

namespace dtrain::codec {

inline constexpr std::array<std::byte, 4> payload_magic = {std::byte{'D'}, std::byte{'T'}, std::byte{'C'},
                                                           std::byte{'P'}};
inline constexpr std::uint8_t payload_format_version = 1;
inline constexpr std::size_t payload_header_bytes = 28;

/// A parsed, checksum-verified payload. Spans point into the caller's buffer.
struct payload_view {
  codec_id id{};
  std::uint8_t codec_version = 0;
  std::uint64_t count = 0;
  std::span<const std::byte> params;
  std::span<const std::byte> body;  ///< everything after the parameters (length unchecked here)
};

/// Checks magic, frame version, flags, lengths and the checksum.
/// Errors: data_loss (short, bad magic, bad checksum, non-zero reserved bits),
/// unimplemented (newer frame version).
result<payload_view> parse_payload(std::span<const std::byte> payload);

/// Recomputes and stores the checksum of a complete payload (after the caller edited its
/// parameters or body). For tools, tests and fuzzers that craft payloads; encoders never
/// need it. @pre payload.size() >= payload_header_bytes.
void seal_payload(std::span<std::byte> payload) noexcept;

/// Implements codec's framing, size checks, NaN/Inf policy and decode validation on top
/// of five small hooks. Concrete codecs derive from this.
class basic_codec : public codec {
 public:
  std::size_t max_encoded_bytes(std::size_t n) const noexcept final {
    return payload_header_bytes + params_bytes() + body_bytes(n);
  }
  result<std::size_t> encode(std::span<const float> in, std::span<std::byte> out) final;
  status decode(std::span<const std::byte> payload, std::span<float> out) const final;
  status decode_accumulate(std::span<const std::byte> payload, std::span<float> acc,
                           float weight = 1.0f) const final;
  /// decode() (accumulate = false) or decode_accumulate() on a payload the caller has
  /// already run through parse_payload(), so its checksum is not computed twice. Same
  /// errors as decode(), minus those parse_payload() already reported.
  status decode_view(const payload_view& v, std::span<float> out, bool accumulate, float weight) const;

 protected:
  /// Version of this codec's parameter/body layout; bump on any change.
  virtual std::uint8_t codec_version() const noexcept { return 1; }
  /// Bytes of parameters this instance writes (fixed per instance).
  virtual std::size_t params_bytes() const noexcept = 0;
  /// Writes exactly params_bytes() bytes describing this payload. Runs before encode_body.
  virtual void write_params(byte_writer& w) const noexcept = 0;
  /// Whether a payload's parameters (and element count) can be decoded by this instance.
  /// Returns failed_precondition on a mismatch, data_loss on unparseable parameters.
  /// params.size() == params_bytes() is checked before the call.
  virtual status check_params(std::span<const std::byte> params, std::uint64_t count) const = 0;
  /// Body bytes for n elements under this instance's parameters.
  virtual std::size_t body_bytes(std::size_t n) const noexcept = 0;
  /// Precondition-checks the input (shape etc.): invalid_argument on a violation. Runs
  /// before anything is written or any state changes. Default: accepts every input.
  virtual status check_input(std::span<const float> in) const { (void)in; return {}; }
  /// Encodes finite input into body (body.size() == body_bytes(in.size())).
  virtual void encode_body(std::span<const float> in, std::span<std::byte> body) = 0;
  /// Validates the whole body, then writes out (accumulate: out[i] += weight * x_i).
  /// body.size() == body_bytes(out.size()) is checked before the call. Must return
  /// data_loss without touching `out` for a body no encoder could have written.
  virtual status decode_body(std::span<const std::byte> params, std::span<const std::byte> body,
                             std::span<float> out, bool accumulate, float weight) const = 0;

 private:
  std::vector<float> sanitized_;  // scratch for nonfinite_policy::zero only
};

}  // namespace dtrain::codec
