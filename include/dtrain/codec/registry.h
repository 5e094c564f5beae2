// dtrain/codec/registry.h: codecs by name and by payload. make_codec() builds any codec
// from a spec string; decode_any() decodes any payload without knowing its codec first.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "dtrain/codec/codec.h"

namespace dtrain::codec {

/// Builds a codec from a spec such as "fp16", "minmax:bits=4,rounding=stochastic",
/// "topk:chunk=4096,k=64,values=bf16" or "ef:beta=1,gamma=1,inner=topk:k=32" (the
/// error-feedback decorator takes the rest of the string as its inner spec).
/// Errors: invalid_argument for an unknown name, unknown key or out-of-range value.
/// Parameters and defaults of each codec: docs/codecs.md.
result<std::unique_ptr<codec>> make_codec(std::string_view spec);

/// Builds a decoder matching a payload's header (codec id and parameters).
/// Errors: as parse_payload(), plus data_loss/unimplemented for bad parameters or an
/// unknown codec id.
result<std::unique_ptr<codec>> make_decoder(std::span<const std::byte> payload);

/// Decodes any dtrain payload into `out`; out.size() must equal the payload's count.
/// Errors: those of parse_payload(), make_decoder() and codec::decode(); on error `out`
/// is untouched. Verifies the checksum once, but builds a decoder on every call (a
/// small allocation; a DCT basis for dct_topk): in a hot loop over payloads of one
/// codec, keep the codec from make_decoder() and call its decode() instead.
status decode_any(std::span<const std::byte> payload, std::span<float> out);
/// acc += weight * decode(payload), for any dtrain payload. Same errors and costs as
/// decode_any(); on error `acc` is untouched.
status decode_accumulate_any(std::span<const std::byte> payload, std::span<float> acc, float weight = 1.0f);
/// Element count of a payload (after verifying its frame).
result<std::uint64_t> payload_count(std::span<const std::byte> payload);

/// One spec per codec with its default parameters, for demos, sweeps and tests.
std::vector<std::string_view> default_specs();

}  // namespace dtrain::codec
