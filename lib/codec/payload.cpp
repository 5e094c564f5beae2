// The payload frame and basic_codec: framing, size checks, NaN/Inf policy.
#include "dtrain/codec/payload.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "dtrain/core/convert.h"
#include "dtrain/core/dtype.h"
#include "dtrain/core/hash.h"

namespace dtrain::codec {
namespace {

constexpr std::size_t checksum_offset = 20;

std::uint64_t frame_checksum(std::span<const std::byte> payload) {
  // Everything but the checksum field itself: the first 20 bytes, then the rest.
  xxh3_64_stream h(0);
  h.update(payload.first(checksum_offset));
  h.update(payload.subspan(payload_header_bytes));
  return h.digest();
}

}  // namespace

void seal_payload(std::span<std::byte> payload) noexcept {
  DTRAIN_ASSERT(payload.size() >= payload_header_bytes);
  store_le<std::uint64_t>(payload.data() + checksum_offset, frame_checksum(payload));
}

result<payload_view> parse_payload(std::span<const std::byte> payload) {
  if (payload.size() < payload_header_bytes)
    return data_loss("codec payload truncated: " + std::to_string(payload.size()) +
                     " bytes, the header alone needs " + std::to_string(payload_header_bytes));
  if (!std::equal(payload_magic.begin(), payload_magic.end(), payload.begin()))
    return data_loss("not a dtrain codec payload (bad magic)");
  byte_reader r(payload.subspan(4));
  const auto format = r.get<std::uint8_t>();
  const auto id = r.get<std::uint8_t>();
  const auto cver = r.get<std::uint8_t>();
  const auto flags = r.get<std::uint8_t>();
  const auto count = r.get<std::uint64_t>();
  const auto pbytes = r.get<std::uint16_t>();
  const auto reserved = r.get<std::uint16_t>();
  const auto checksum = r.get<std::uint64_t>();
  if (format > payload_format_version)
    return unimplemented("codec payload frame version " + std::to_string(format) +
                         " is newer than this build supports (" + std::to_string(payload_format_version) + ")");
  if (format == 0 || flags != 0 || reserved != 0) return data_loss("codec payload header has invalid fields");
  if (payload.size() - payload_header_bytes < pbytes)
    return data_loss("codec payload truncated inside its parameters");
  if (frame_checksum(payload) != checksum) return data_loss("codec payload checksum mismatch (corrupted)");
  payload_view v;
  v.id = static_cast<codec_id>(id);
  v.codec_version = cver;
  v.count = count;
  v.params = payload.subspan(payload_header_bytes, pbytes);
  v.body = payload.subspan(payload_header_bytes + pbytes);
  return v;
}

result<std::size_t> basic_codec::encode(std::span<const float> in, std::span<std::byte> out) {
  const std::size_t need = max_encoded_bytes(in.size());
  if (out.size() < need)
    return status(status_code::resource_exhausted, std::string(name()) + " encode needs " + std::to_string(need) +
                                                " output bytes, got " + std::to_string(out.size()));
  DTRAIN_RETURN_IF_ERROR(check_input(in));
  std::span<const float> src = in;
  if (const std::size_t bad = find_nonfinite(in); bad != in.size()) {
    if (nonfinite_ == nonfinite_policy::reject)
      return invalid_argument(std::string(name()) + " encode: input holds NaN/Inf at index " + std::to_string(bad) +
                              " (nonfinite_policy::reject)");
    sanitized_.assign(in.begin(), in.end());
    for (std::size_t i = bad; i < sanitized_.size(); ++i)
      if (!is_finite_bits(sanitized_[i])) sanitized_[i] = 0.0f;
    src = sanitized_;
  }
  const std::size_t pbytes = params_bytes();
  byte_writer w(out.first(need));
  w.put_bytes(payload_magic);
  w.put<std::uint8_t>(payload_format_version);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(id()));
  w.put<std::uint8_t>(codec_version());
  w.put<std::uint8_t>(0);
  w.put<std::uint64_t>(in.size());
  w.put<std::uint16_t>(static_cast<std::uint16_t>(pbytes));
  w.put<std::uint16_t>(0);
  w.put<std::uint64_t>(0);  // checksum, filled below
  byte_writer pw(w.take(pbytes));
  write_params(pw);
  DTRAIN_ASSERT(pw.ok() && pw.size() == pbytes);
  std::span<std::byte> body = w.take(body_bytes(in.size()));
  DTRAIN_ASSERT(w.ok() && w.size() == need);
  encode_body(src, body);
  seal_payload(out.first(need));
  return need;
}

status basic_codec::decode_view(const payload_view& v, std::span<float> out, bool accumulate, float weight) const {
  if (v.id != id())
    return failed_precondition(std::string(name()) + " decoder got a " + std::string(codec_name(v.id)) +
                               " payload (codec mismatch)");
  if (v.codec_version != codec_version())
    return v.codec_version > codec_version()
               ? unimplemented(std::string(name()) + " payload version " + std::to_string(v.codec_version) +
                               " is newer than this build")
               : data_loss(std::string(name()) + " payload has unknown version " + std::to_string(v.codec_version));
  if (v.params.size() != params_bytes())
    return failed_precondition(std::string(name()) + " payload parameters do not match this decoder");
  if (v.count != out.size())
    return invalid_argument(std::string(name()) + " payload holds " + std::to_string(v.count) +
                            " elements, output span has " + std::to_string(out.size()));
  DTRAIN_RETURN_IF_ERROR(check_params(v.params, v.count));
  const std::size_t want = body_bytes(out.size());
  if (v.body.size() != want)
    return data_loss(std::string(name()) + " payload body is " + std::to_string(v.body.size()) +
                     " bytes, expected " + std::to_string(want) + (v.body.size() < want ? " (truncated)" : " (trailing bytes)"));
  return decode_body(v.params, v.body, out, accumulate, weight);
}

status basic_codec::decode(std::span<const std::byte> payload, std::span<float> out) const {
  auto v = parse_payload(payload);
  if (!v.ok()) return v.status();
  return decode_view(*v, out, false, 1.0f);
}

status basic_codec::decode_accumulate(std::span<const std::byte> payload, std::span<float> acc, float weight) const {
  auto v = parse_payload(payload);
  if (!v.ok()) return v.status();
  return decode_view(*v, acc, true, weight);
}

}  // namespace dtrain::codec
