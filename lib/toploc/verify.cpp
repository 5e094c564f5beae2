// lib/toploc/verify.cpp: comparing proofs with the verifier's own hidden states.
#include "dtrain/toploc/verify.h"

#include <algorithm>
#include <limits>
#include <string>

#include "chunk_data.h"
#include "dtrain/toploc/field.h"
#include "kernels.h"
#include "parallel.h"
#include "topk_select.h"

namespace dtrain::toploc {
namespace {

// The exponent and mantissa fields of a 16-bit pattern, the sign ignored; fp16 mantissa
// errors are later divided by 8 to count in bf16 ULPs.
struct fields {
  std::uint32_t exp_mask, exp_shift, mant_mask;
  double mant_scale;
};
constexpr fields bf16_fields{0x7f80u, 7, 0x7fu, 1.0};
constexpr fields f16_fields{0x7c00u, 10, 0x3ffu, 1.0 / 8.0};

}  // namespace

bool acceptance_policy::accepts(const chunk_check& c) const noexcept {
  if (c.compared == 0) return false;
  const double med = median == median_rule::upper ? c.mantissa_error_median_upper : c.mantissa_error_median_middle;
  return c.exponent_matches() * per >= min_exponent_matches * c.compared &&
         c.mantissa_error_mean <= max_mantissa_error_mean && med <= max_mantissa_error_median;
}

struct chunk_verifier::workspace {
  std::size_t k;
  detail::topk_workspace topk;
  std::vector<std::uint32_t> idx, points, values;
  std::vector<std::uint16_t> converted;
  std::vector<double> errors;
};

chunk_verifier::chunk_verifier(std::size_t k) : ws_(std::make_unique<workspace>()) { ws_->k = k; }
chunk_verifier::chunk_verifier(chunk_verifier&&) noexcept = default;
chunk_verifier& chunk_verifier::operator=(chunk_verifier&&) noexcept = default;
chunk_verifier::~chunk_verifier() = default;
std::size_t chunk_verifier::k() const noexcept { return ws_->k; }

result<chunk_check> chunk_verifier::check(const proof& p, const hidden_states& chunk) {
  workspace& w = *ws_;
  if (w.k == 0 || w.k > prime) return invalid_argument("toploc: k = " + std::to_string(w.k) + " is outside [1, 65497]");
  DTRAIN_RETURN_IF_ERROR(detail::check_states(chunk));
  const std::span<const std::uint16_t> v = detail::chunk_bits(chunk, w.converted);
  if (v.size() >= (std::size_t{1} << 32))
    return invalid_argument("toploc: a chunk of " + std::to_string(v.size()) + " values (indices are u32)");
  if (p.coeffs.size() != w.k)
    return invalid_argument("toploc: the proof has " + std::to_string(p.coeffs.size()) + " coefficients, k = " +
                            std::to_string(w.k));
  const std::size_t kk = std::min(w.k, v.size());
  if (p.modulus == 0) return data_loss("toploc proof: modulus 0 (a null proof: the prover reported a failure)");
  if (p.modulus < kk || p.modulus > prime)
    return data_loss("toploc proof: modulus " + std::to_string(p.modulus) + " is outside [" + std::to_string(kk) +
                     ", 65497]");
  for (std::size_t i = 0; i < p.coeffs.size(); ++i)
    if (p.coeffs[i] >= prime)
      return data_loss("toploc proof: coefficient " + std::to_string(i) + " is not below p = 65497");

  w.idx.resize(kk);
  detail::select_topk_into(v, w.k, w.idx, w.topk);
  w.points.resize(kk);
  w.values.assign(kk, 0);
  for (std::size_t i = 0; i < kk; ++i) w.points[i] = w.idx[i] % p.modulus;
  for (std::size_t j = p.coeffs.size(); j-- > 0;) detail::horner_step(w.values.data(), w.points.data(), kk, p.coeffs[j]);

  const fields f = chunk.type == dtype::f16 ? f16_fields : bf16_fields;
  chunk_check out;
  out.compared = kk;
  w.errors.clear();
  for (std::size_t i = 0; i < kk; ++i) {
    const std::uint32_t claimed = w.values[i];
    const std::uint32_t mine = v[w.idx[i]];
    if ((claimed & f.exp_mask) != (mine & f.exp_mask)) {
      ++out.exponent_mismatches;
      continue;
    }
    const auto a = static_cast<std::int32_t>(claimed & f.mant_mask);
    const auto b = static_cast<std::int32_t>(mine & f.mant_mask);
    w.errors.push_back(static_cast<double>(a > b ? a - b : b - a) * f.mant_scale);
  }
  if (w.errors.empty()) {
    const double inf = std::numeric_limits<double>::infinity();
    out.mantissa_error_mean = out.mantissa_error_median_upper = out.mantissa_error_median_middle = inf;
    return out;
  }
  double sum = 0;
  for (double e : w.errors) sum += e;
  const std::size_t n = w.errors.size();
  out.mantissa_error_mean = sum / static_cast<double>(n);
  std::sort(w.errors.begin(), w.errors.end());
  out.mantissa_error_median_upper = w.errors[n / 2];
  out.mantissa_error_median_middle = n % 2 == 1 ? w.errors[n / 2] : (w.errors[n / 2 - 1] + w.errors[n / 2]) / 2;
  return out;
}

result<std::vector<chunk_check>> verify_proofs(const hidden_states& states, std::span<const proof> proofs,
                                               const proof_options& opt) {
  DTRAIN_RETURN_IF_ERROR(opt.validate());
  DTRAIN_RETURN_IF_ERROR(detail::check_states(states));
  const std::vector<chunk_range> plan = plan_chunks(states.tokens, opt);
  if (proofs.size() != plan.size())
    return data_loss("toploc: " + std::to_string(proofs.size()) + " proofs for " + std::to_string(plan.size()) +
                     " chunks");
  std::vector<chunk_check> out(plan.size());
  DTRAIN_RETURN_IF_ERROR(detail::run_chunks(
      plan.size(), opt.threads, [&] { return chunk_verifier(opt.k); },
      [&](chunk_verifier& verifier, std::size_t c) -> status {
        auto r = verifier.check(proofs[c], states.rows(plan[c].first_token, plan[c].tokens));
        if (!r.ok()) return dtrain::status(r.status().code(), "chunk " + std::to_string(c) + ": " + r.status().message());
        out[c] = *r;
        return ok_status();
      }));
  return out;
}

result<std::vector<chunk_check>> verify_proofs_bytes(const hidden_states& states, std::span<const std::byte> proofs,
                                                     const proof_options& opt) {
  DTRAIN_RETURN_IF_ERROR(opt.validate());
  DTRAIN_RETURN_IF_ERROR(detail::check_states(states));
  auto parsed = parse_proofs(proofs, opt.k, plan_chunks(states.tokens, opt).size());
  if (!parsed.ok()) return std::move(parsed).status();
  return verify_proofs(states, *parsed, opt);
}

std::vector<std::size_t> failing_chunks(std::span<const chunk_check> checks, const acceptance_policy& policy) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < checks.size(); ++i)
    if (!policy.accepts(checks[i])) out.push_back(i);
  return out;
}

}  // namespace dtrain::toploc
