// The error-feedback decorator: x = beta*r + gamma*g, payload = inner(x), r = x - decode.
#include "dtrain/codec/error_feedback.h"

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <string>

#include "dtrain/codec/registry.h"
#include "dtrain/codec/spec.h"
#include "dtrain/core/convert.h"
#include "dtrain/core/dtype.h"

namespace dtrain::codec {
namespace {

// Shortest decimal that reads back (through spec_args' double parse, then the cast to
// float) as exactly `v`; falls back to the exact double digits when the shortest float
// form would round twice to a neighbour.
std::string float_text(float v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, r.ptr);
  if (static_cast<float>(std::strtod(s.c_str(), nullptr)) == v) return s;
  r = std::to_chars(buf, buf + sizeof buf, static_cast<double>(v));
  return std::string(buf, r.ptr);
}

}  // namespace

error_feedback::error_feedback(std::unique_ptr<codec> inner, float beta, float gamma)
    : inner_(std::move(inner)), beta_(beta), gamma_(gamma) {
  DTRAIN_ASSERT(inner_ != nullptr);
  // The decorator applies its own policy to g; x must then be finite for the residual
  // to stay meaningful, so the inner codec never silently zeroes anything.
  inner_->set_nonfinite(nonfinite_policy::reject);
}

result<std::unique_ptr<codec>> error_feedback::from_spec(std::string_view spec) {
  const std::size_t colon = spec.find(':');
  if (spec.substr(0, colon) != "ef") return invalid_argument("error_feedback spec must start with 'ef:'");
  const std::string_view rest = colon == std::string_view::npos ? std::string_view{} : spec.substr(colon + 1);
  // "inner=" at a key boundary; everything after it is the inner spec.
  std::size_t at = rest.find("inner=");
  while (at != std::string_view::npos && at != 0 && rest[at - 1] != ',') at = rest.find("inner=", at + 1);
  if (at == std::string_view::npos)
    return invalid_argument("ef: 'inner=<codec spec>' is required and must be the last key");
  std::string_view head = rest.substr(0, at);
  if (!head.empty()) head.remove_suffix(1);  // the ',' before "inner="
  const std::string_view inner_spec = rest.substr(at + 6);
  if (inner_spec.empty()) return invalid_argument("ef: 'inner=' is empty");
  if (inner_spec == "ef" || inner_spec.starts_with("ef:"))
    return invalid_argument("ef: the inner codec cannot itself be 'ef'");

  auto args = spec_args::parse(head.empty() ? std::string("ef") : "ef:" + std::string(head));
  if (!args.ok()) return args.status();
  auto beta = args->get_float("beta", 1.0, 0.0, 1.0);
  if (!beta.ok()) return beta.status();
  auto gamma = args->get_float("gamma", 1.0, -1e30, 1e30);
  if (!gamma.ok()) return gamma.status();
  DTRAIN_RETURN_IF_ERROR(args->finish());
  auto inner = make_codec(inner_spec);
  if (!inner.ok())
    return status(inner.status().code(), "ef: inner codec: " + inner.status().message());
  return std::unique_ptr<codec>(std::make_unique<error_feedback>(std::move(inner).value(),
                                                                 static_cast<float>(*beta),
                                                                 static_cast<float>(*gamma)));
}

std::string error_feedback::spec() const {
  return "ef:beta=" + float_text(beta_) + ",gamma=" + float_text(gamma_) + ",inner=" + inner_->spec();
}

result<std::size_t> error_feedback_step(std::span<float> residual, std::span<float> scratch, float beta,
                                        float gamma, std::span<const float> g, nonfinite_policy policy, codec& c,
                                        std::span<std::byte> out) {
  const std::size_t n = g.size();
  if (residual.size() != n || scratch.size() != n)
    return invalid_argument("error feedback: input, residual and scratch hold " + std::to_string(n) + ", " +
                            std::to_string(residual.size()) + " and " + std::to_string(scratch.size()) +
                            " values");
  const std::size_t need = c.max_encoded_bytes(n);
  if (out.size() < need)
    return status(status_code::resource_exhausted, "error feedback (" + std::string(c.name()) + ") needs " +
                                                       std::to_string(need) + " output bytes, got " +
                                                       std::to_string(out.size()));
  const std::size_t bad = find_nonfinite(g);
  if (bad != n && policy == nonfinite_policy::reject)
    return invalid_argument("error feedback (" + std::string(c.name()) + "): input holds NaN/Inf at index " +
                            std::to_string(bad) + " (nonfinite_policy::reject)");

  float* __restrict x = scratch.data();
  const float* __restrict r = residual.data();
  const float* __restrict in = g.data();
  if (bad == n) {
    for (std::size_t i = 0; i < n; ++i) x[i] = beta * r[i] + gamma * in[i];
  } else {
    for (std::size_t i = 0; i < n; ++i) x[i] = beta * r[i] + gamma * (is_finite_bits(in[i]) ? in[i] : 0.0f);
  }
  if (const std::size_t over = find_nonfinite(scratch); over != n)
    return invalid_argument("error feedback: beta * residual + gamma * input overflows at index " +
                            std::to_string(over));

  auto written = c.encode(scratch, out);
  if (!written.ok()) return written.status();
  // x - decode(payload), computed as x + (-1) * decoded: bit-identical and one pass.
  const status st = c.decode_accumulate(out.first(*written), scratch, -1.0f);
  if (!st.ok()) return internal_error("error feedback: the codec cannot decode its own payload: " + st.to_string());
  // A codec may overflow (fp16 turns 1e6 into Inf); such a residual would poison r forever.
  if (const std::size_t inf = find_nonfinite(scratch); inf != n)
    return out_of_range("error feedback: the codec's output is not finite at index " + std::to_string(inf) +
                        " (a value outside the codec's range)");
  if (n) std::memcpy(residual.data(), scratch.data(), n * sizeof(float));
  return *written;
}

result<std::size_t> error_feedback::encode(std::span<const float> in, std::span<std::byte> out) {
  const std::size_t n = in.size();
  if (!residual_.empty() && residual_.size() != n)
    return invalid_argument("ef: encode of " + std::to_string(n) + " elements, the residual holds " +
                            std::to_string(residual_.size()) + " (call reset() to change size)");
  // An empty residual is a zero one; it keeps its size only once an encode succeeds.
  const bool fresh = residual_.empty();
  if (fresh) residual_.assign(n, 0.0f);
  x_.resize(n);  // allocates only until x_ holds n floats
  auto written = error_feedback_step(residual_, x_, beta_, gamma_, in, nonfinite_, *inner_, out);
  if (!written.ok() && fresh) residual_.clear();
  return written;
}

}  // namespace dtrain::codec
