// lib/optim/ef_compress.h (private): the error-feedback compression step shared by
// SparseLoCo and DeMo: e ← β·e + Δ, payload = encode(e), e ← e − decode(payload).
#pragma once

#include <cstddef>
#include <cstring>
#include <span>
#include <string>

#include "dtrain/codec/codec.h"
#include "dtrain/core/convert.h"
#include "dtrain/core/status.h"

namespace dtrain::optim::detail {

/// `scratch` (n floats) holds β·e + Δ while encoding, so that a failed encode leaves e
/// untouched. Errors: invalid_argument (size, non-finite Δ, codec precondition),
/// resource_exhausted (payload buffer too small), out_of_range (the decoded payload is
/// not finite, e.g. fp16 overflow), internal (own payload did not decode).
inline result<std::size_t> ef_compress(std::span<float> e, std::span<float> scratch, float beta,
                                       std::span<const float> delta, codec::codec& c, std::span<std::byte> out) {
  const std::size_t n = e.size();
  if (delta.size() != n)
    return invalid_argument("compress: expected " + std::to_string(n) + " values, got " + std::to_string(delta.size()));
  const std::size_t bad = find_nonfinite(delta);
  if (bad != n) return invalid_argument("compress: non-finite value at index " + std::to_string(bad));
  const std::size_t need = c.max_encoded_bytes(n);
  if (out.size() < need)
    return resource_exhausted("compress: payload needs " + std::to_string(need) + " bytes, got " +
                              std::to_string(out.size()));
  {
    float* __restrict s = scratch.data();
    const float* __restrict ep = e.data();
    const float* __restrict d = delta.data();
    for (std::size_t i = 0; i < n; ++i) s[i] = ep[i] * beta + d[i];
  }
  auto written = c.encode(scratch, out);
  if (!written.ok()) return written.status();
  // The sender subtracts exactly what every receiver will decode: x + (−1)·v == x − v.
  status st = c.decode_accumulate(out.first(*written), scratch, -1.0f);
  if (!st.ok()) return internal_error("compress: codec could not decode its own payload: " + st.to_string());
  // A codec may overflow (fp16 turns 1e6 into Inf); such a residual would poison e forever.
  const std::size_t bad_e = find_nonfinite(scratch);
  if (bad_e != n)
    return out_of_range("compress: the codec's output is not finite at index " + std::to_string(bad_e) +
                        " (value out of the codec's range)");
  if (n) std::memcpy(e.data(), scratch.data(), n * sizeof(float));
  return *written;
}

}  // namespace dtrain::optim::detail
