// dtrain/codec/codec.h: the codec interface. A codec turns a float buffer into a
// self-describing payload (header + parameters + body, docs/formats/codec_payload.md)
// in caller-owned bytes, and turns any payload of its kind back into floats, or adds
// it into an accumulator in one pass. Concrete codecs: codec_*.h; by name: registry.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "dtrain/core/status.h"

namespace dtrain::codec {

/// Wire identifiers. Stable: never renumber, only append.
enum class codec_id : std::uint8_t {
  identity = 1,   ///< fp32 as is
  fp16 = 2,       ///< IEEE half, round-to-nearest-even
  bf16 = 3,       ///< bfloat16, round-to-nearest-even
  minmax = 4,     ///< uniform min-max, q = 1..8 bits
  blockwise = 5,  ///< blockwise absmax, 8 or 4 bits
  uniform8 = 6,   ///< 8-bit uniform +-3 sigma with a 256-entry codebook (hivemind/PRIME)
  quantile8 = 7,  ///< 8-bit quantile buckets with a 256-entry codebook (hivemind)
  fp4 = 8,        ///< FP4 E3M0 with block scales (Streaming DiLoCo)
  topk = 9,       ///< chunked top-k, bit-packed indices
  randomk = 10,   ///< random-k with seeded implicit indices
  sign = 11,      ///< scaled sign (EF-signSGD)
  dct_topk = 12,  ///< DCT-II chunk top-k (DeMo/DisTrO)
  powersgd = 13,  ///< rank-r PowerSGD for 2-D tensors
};

/// Stable name of a codec id ("topk"); "unknown" for ids this build does not know.
std::string_view codec_name(codec_id id) noexcept;

/// What encode() does with NaN or +-Inf in its input.
enum class nonfinite_policy : std::uint8_t {
  reject = 0,  ///< default: encode returns invalid_argument naming the first bad index
  zero = 1,    ///< NaN and +-Inf are encoded as 0 (the residual of error feedback keeps nothing of them)
};

/// Interface of every codec. Encoding may update internal state (a stochastic-rounding
/// counter, a PowerSGD warm start, an error-feedback residual), so one instance must not
/// encode from two threads at once. decode() and decode_accumulate() are const and safe
/// to call concurrently.
class codec {
 public:
  virtual ~codec() = default;

  virtual codec_id id() const noexcept = 0;
  /// Short name, equal to codec_name(id()).
  std::string_view name() const noexcept { return codec_name(id()); }
  /// The spec string that recreates this codec with make_codec() ("topk:chunk=4096,k=64").
  virtual std::string spec() const = 0;
  /// True when payloads from several peers with the same parameters can be added in
  /// their encoded form (aligned values with a shared scale or support), so a reduction
  /// need not decode at every hop. False for codecs whose support or scale is data
  /// dependent (top-k, sign, per-tensor scales, PowerSGD).
  virtual bool summable() const noexcept = 0;

  /// Exact size of the payload encode() writes for n floats (an upper bound that every
  /// codec here meets with equality). Use it to size the output span.
  virtual std::size_t max_encoded_bytes(std::size_t n) const noexcept = 0;

  /// Encodes `in` into `out` and returns the bytes written.
  /// Errors: invalid_argument if `in` holds NaN/Inf under nonfinite_policy::reject or
  /// violates a codec precondition (e.g. PowerSGD shape); resource_exhausted if
  /// out.size() < max_encoded_bytes(in.size()). On error, `out` is unspecified and the
  /// codec's state is unchanged.
  virtual result<std::size_t> encode(std::span<const float> in, std::span<std::byte> out) = 0;

  /// Decodes a payload into `out` (overwriting it).
  /// Errors: data_loss for a truncated, over-long or corrupted payload (bad magic,
  /// checksum, body); failed_precondition when the payload is of another codec or other
  /// parameters than this instance; invalid_argument when out.size() differs from the
  /// payload's element count; unimplemented for a newer format version. On error `out`
  /// is untouched.
  virtual status decode(std::span<const std::byte> payload, std::span<float> out) const = 0;

  /// acc[i] += weight * decoded[i], in one pass. Same errors as decode(); on error `acc`
  /// is untouched.
  virtual status decode_accumulate(std::span<const std::byte> payload, std::span<float> acc,
                                   float weight = 1.0f) const = 0;

  nonfinite_policy nonfinite() const noexcept { return nonfinite_; }
  virtual void set_nonfinite(nonfinite_policy p) noexcept { nonfinite_ = p; }

 protected:
  nonfinite_policy nonfinite_ = nonfinite_policy::reject;
};

}  // namespace dtrain::codec
