// Codec registry: one table row per codec, used by make_codec(), make_decoder() and
// default_specs(). To add a codec, add its row here and its id to codec_id.
#include "dtrain/codec/registry.h"

#include <string>

#include "dtrain/codec/codec_blockwise.h"
#include "dtrain/codec/codec_cast.h"
#include "dtrain/codec/codec_codebook8.h"
#include "dtrain/codec/codec_dct_topk.h"
#include "dtrain/codec/codec_fp4.h"
#include "dtrain/codec/codec_minmax.h"
#include "dtrain/codec/codec_powersgd.h"
#include "dtrain/codec/codec_randomk.h"
#include "dtrain/codec/codec_sign.h"
#include "dtrain/codec/codec_topk.h"
#include "dtrain/codec/error_feedback.h"
#include "dtrain/codec/payload.h"
#include "dtrain/codec/spec.h"

namespace dtrain::codec {
namespace {

using make_from_spec = result<std::unique_ptr<codec>> (*)(spec_args&);
using make_from_params = result<std::unique_ptr<codec>> (*)(std::span<const std::byte>, std::uint64_t);

struct entry {
  codec_id id;
  std::string_view name;
  make_from_spec from_spec;
  make_from_params from_params;
  std::string_view default_spec;
};

// clang-format off
const entry table[] = {
  {codec_id::identity, "identity",
   [](spec_args& a) { return cast_codec::from_spec(a, dtype::f32); },
   [](std::span<const std::byte> p, std::uint64_t n) { return cast_codec::from_params(p, n, dtype::f32); },
   "identity"},
  {codec_id::fp16, "fp16",
   [](spec_args& a) { return cast_codec::from_spec(a, dtype::f16); },
   [](std::span<const std::byte> p, std::uint64_t n) { return cast_codec::from_params(p, n, dtype::f16); },
   "fp16"},
  {codec_id::bf16, "bf16",
   [](spec_args& a) { return cast_codec::from_spec(a, dtype::bf16); },
   [](std::span<const std::byte> p, std::uint64_t n) { return cast_codec::from_params(p, n, dtype::bf16); },
   "bf16"},
  {codec_id::minmax, "minmax", minmax_codec::from_spec, minmax_codec::from_params,
   "minmax:bits=8,rounding=nearest,seed=0"},
  {codec_id::blockwise, "blockwise", blockwise_codec::from_spec, blockwise_codec::from_params,
   "blockwise:bits=8,block=256"},
  {codec_id::uniform8, "uniform8",
   [](spec_args& a) { return codebook8_codec::from_spec(a, codebook_kind::uniform); },
   [](std::span<const std::byte> p, std::uint64_t n) { return codebook8_codec::from_params(p, n, codebook_kind::uniform); },
   "uniform8"},
  {codec_id::quantile8, "quantile8",
   [](spec_args& a) { return codebook8_codec::from_spec(a, codebook_kind::quantile); },
   [](std::span<const std::byte> p, std::uint64_t n) { return codebook8_codec::from_params(p, n, codebook_kind::quantile); },
   "quantile8"},
  {codec_id::fp4, "fp4", fp4_codec::from_spec, fp4_codec::from_params, "fp4:block=128"},
  {codec_id::topk, "topk", topk_codec::from_spec, topk_codec::from_params, "topk:chunk=4096,k=64,values=fp16"},
  {codec_id::randomk, "randomk", randomk_codec::from_spec, randomk_codec::from_params,
   "randomk:chunk=4096,k=64,seed=0,rescale=0,values=f32"},
  {codec_id::sign, "sign", sign_codec::from_spec, sign_codec::from_params, "sign:block=0"},
  {codec_id::dct_topk, "dct_topk", dct_topk_codec::from_spec, dct_topk_codec::from_params,
   "dct_topk:chunk=64,k=8,values=fp16"},
  {codec_id::powersgd, "powersgd", powersgd_codec::from_spec, powersgd_codec::from_params,
   "powersgd:rows=32,cols=16,rank=2"},
  // Further codecs add their rows here, in codec_id order.
};
// clang-format on

const entry* find(codec_id id) {
  for (const entry& e : table)
    if (e.id == id) return &e;
  return nullptr;
}

}  // namespace

std::string_view codec_name(codec_id id) noexcept {
  const entry* e = find(id);
  return e ? e->name : "unknown";
}

result<std::unique_ptr<codec>> make_codec(std::string_view spec) {
  // The decorator has no codec id or table row, and its inner spec holds commas.
  if (spec == "ef" || spec.starts_with("ef:")) return error_feedback::from_spec(spec);
  auto args = spec_args::parse(spec);
  if (!args.ok()) return args.status();
  for (const entry& e : table)
    if (e.name == args->name()) return e.from_spec(*args);
  return invalid_argument("unknown codec '" + args->name() + "'");
}

namespace {

// Every table row builds a basic_codec subclass, so the *_any functions can decode the
// view they already verified instead of hashing the payload a second time.
result<std::unique_ptr<basic_codec>> decoder_for(const payload_view& v) {
  const entry* e = find(v.id);
  if (!e) return unimplemented("codec id " + std::to_string(static_cast<int>(v.id)) + " is unknown to this build");
  auto c = e->from_params(v.params, v.count);
  if (!c.ok()) return c.status();
  DTRAIN_ASSERT(dynamic_cast<basic_codec*>(c->get()) != nullptr && "registry rows must build basic_codecs");
  return std::unique_ptr<basic_codec>(static_cast<basic_codec*>(c->release()));
}

status decode_view_any(std::span<const std::byte> payload, std::span<float> out, bool accumulate, float weight) {
  auto v = parse_payload(payload);
  if (!v.ok()) return v.status();
  auto c = decoder_for(*v);
  if (!c.ok()) return c.status();
  return (*c)->decode_view(*v, out, accumulate, weight);
}

}  // namespace

result<std::unique_ptr<codec>> make_decoder(std::span<const std::byte> payload) {
  auto v = parse_payload(payload);
  if (!v.ok()) return v.status();
  auto c = decoder_for(*v);
  if (!c.ok()) return c.status();
  return std::unique_ptr<codec>(std::move(c).value());
}

status decode_any(std::span<const std::byte> payload, std::span<float> out) {
  return decode_view_any(payload, out, false, 1.0f);
}

status decode_accumulate_any(std::span<const std::byte> payload, std::span<float> acc, float weight) {
  return decode_view_any(payload, acc, true, weight);
}

result<std::uint64_t> payload_count(std::span<const std::byte> payload) {
  auto v = parse_payload(payload);
  if (!v.ok()) return v.status();
  return v->count;
}

std::vector<std::string_view> default_specs() {
  std::vector<std::string_view> out;
  for (const entry& e : table) out.push_back(e.default_spec);
  return out;
}

}  // namespace dtrain::codec
