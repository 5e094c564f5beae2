// SparseLoCo outer rule (arXiv 2508.15706).
#include "dtrain/optim/outer_sparseloco.h"

#include <algorithm>
#include <cmath>

#include "dtrain/codec/error_feedback.h"
#include "dtrain/codec/registry.h"
#include "kernels.h"

namespace dtrain::optim {

result<outer_sparseloco> outer_sparseloco::create(std::size_t n, const sparseloco_options& o) {
  DTRAIN_RETURN_IF_ERROR(check_lr(o.lr));
  if (!(o.beta >= 0 && o.beta <= 1)) return invalid_argument("sparseloco: beta must lie in [0, 1]");
  return outer_sparseloco(n, o);
}

outer_sparseloco::outer_sparseloco(std::size_t n, const sparseloco_options& o)
    : outer_optimizer(n, o.lr, 1), o_(o), scratch_(n) {}

void outer_sparseloco::write_hyper(byte_writer& w) const noexcept { w.put<double>(o_.beta); }

result<std::size_t> outer_sparseloco::compress(std::span<const float> delta, codec::codec& c,
                                               std::span<std::byte> payload) {
  return codec::error_feedback_step(buffer(0), scratch_, static_cast<float>(o_.beta), 1.0f, delta,
                                    codec::nonfinite_policy::reject, c, payload);
}

void outer_sparseloco::apply(std::span<float> params, std::span<const float> grad) noexcept {
  detail::axpy(params.data(), grad.data(), params.size(), static_cast<float>(-lr()));
}

status decode_mean(std::span<const std::span<const std::byte>> payloads, std::span<float> out) {
  if (payloads.empty()) return invalid_argument("decode_mean: no payloads");
  std::fill(out.begin(), out.end(), 0.0f);
  for (const auto& p : payloads) DTRAIN_RETURN_IF_ERROR(codec::decode_accumulate_any(p, out, 1.0f));
  if (payloads.size() > 1) {
    const float k = static_cast<float>(payloads.size());
    for (float& x : out) x = x / k;
  }
  return {};
}

}  // namespace dtrain::optim
