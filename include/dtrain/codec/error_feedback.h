// dtrain/codec/error_feedback.h: the error-feedback decorator (EF-SGD, Karimireddy et al.
// arXiv 1901.09847; residual memory as in GRACE, Xu et al., ICDCS 2021). It wraps any codec,
// remembers what compression dropped and adds it back into the next encode.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dtrain/codec/codec.h"

namespace dtrain::codec {

/// One error-feedback step on caller-owned memory, the mechanism behind error_feedback
/// and the SparseLoCo / DeMo outer rules: x = beta * r + gamma * g (float, elementwise,
/// into `scratch`), payload = c.encode(x) into `out`, then r = x - c.decode(payload)
/// (computed as x + (-1) * decoded, bit-identical to what receivers decode). Returns the
/// payload bytes. Under nonfinite_policy::zero, NaN/Inf in g count as 0.
/// Errors: invalid_argument when the spans' sizes differ, for NaN/Inf in g under
/// nonfinite_policy::reject, or when x overflows; resource_exhausted when out.size() <
/// c.max_encoded_bytes(n); any error of c.encode; out_of_range when the decoded payload
/// leaves a non-finite residual (a value outside the codec's range, e.g. fp16 overflow);
/// internal when c cannot decode its own payload. On every error `residual` is
/// unchanged; `scratch` and `out` are unspecified. Does not allocate.
/// @pre residual, scratch and g do not overlap.
result<std::size_t> error_feedback_step(std::span<float> residual, std::span<float> scratch, float beta,
                                        float gamma, std::span<const float> g, nonfinite_policy policy, codec& c,
                                        std::span<std::byte> out);

/// Error feedback around an inner codec: encode(g) forms x = beta * r + gamma * g
/// (float, elementwise), emits inner.encode(x) and keeps r = x - inner.decode(payload).
/// With beta = gamma = 1 the sum of everything decoded plus the residual telescopes to
/// the sum of every input. The payloads ARE the inner codec's payloads (id(), sizes and
/// decoding delegate to the inner codec), so receivers decode them with decode_any()
/// and need not know about error feedback.
///
/// The residual is sized by the first successful encode; an encode with another element
/// count returns invalid_argument until reset(). Every failed encode leaves the residual
/// unchanged (the inner codec's own state may have advanced only if decoding its fresh
/// payload failed, which is an internal error).
class error_feedback final : public codec {
 public:
  /// @param inner  the wrapped codec (non-null); its nonfinite policy is set to reject.
  /// @param beta   residual decay, 0 (no memory) .. 1 (full error feedback).
  /// @param gamma  input scale (e.g. the learning rate when compressing updates).
  error_feedback(std::unique_ptr<codec> inner, float beta = 1.0f, float gamma = 1.0f);

  /// Builds from "ef:beta=B,gamma=G,inner=<inner spec>". beta in [0, 1] (default 1),
  /// gamma finite in [-1e30, 1e30] (default 1); "inner=" is required, must be the last
  /// key and takes the rest of the string (commas included). The inner codec may not
  /// itself be "ef". Errors: invalid_argument, including the inner spec's own errors.
  static result<std::unique_ptr<codec>> from_spec(std::string_view spec);

  codec_id id() const noexcept override { return inner_->id(); }
  /// "ef:beta=B,gamma=G,inner=<inner spec>"; make_codec() of it builds an equal decorator.
  std::string spec() const override;
  bool summable() const noexcept override { return inner_->summable(); }
  std::size_t max_encoded_bytes(std::size_t n) const noexcept override { return inner_->max_encoded_bytes(n); }

  /// Encodes beta * r + gamma * in through the inner codec and updates r
  /// (error_feedback_step()). Errors: those of error_feedback_step(), plus
  /// invalid_argument for in.size() != residual().size() after the first encode.
  result<std::size_t> encode(std::span<const float> in, std::span<std::byte> out) override;
  /// Same as inner().decode().
  status decode(std::span<const std::byte> payload, std::span<float> out) const override {
    return inner_->decode(payload, out);
  }
  /// Same as inner().decode_accumulate().
  status decode_accumulate(std::span<const std::byte> payload, std::span<float> acc,
                           float weight = 1.0f) const override {
    return inner_->decode_accumulate(payload, acc, weight);
  }

  /// The current residual r (empty before the first successful encode or after reset()).
  std::span<const float> residual() const noexcept { return residual_; }
  /// Forgets the residual; the next encode may use any element count.
  void reset() noexcept { residual_.clear(); }
  const codec& inner() const noexcept { return *inner_; }
  codec& inner() noexcept { return *inner_; }
  float beta() const noexcept { return beta_; }
  float gamma() const noexcept { return gamma_; }

 private:
  std::unique_ptr<codec> inner_;
  float beta_, gamma_;
  std::vector<float> residual_;
  std::vector<float> x_;  // scratch for error_feedback_step()
};

}  // namespace dtrain::codec
