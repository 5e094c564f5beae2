// Frame header and hello encoding (docs/formats/tcp_frames.md).
#include "dtrain/net/tcp/frame.h"

#include <cstring>
#include <string>

#include "dtrain/core/bytes.h"
#include "dtrain/core/hash.h"

namespace dtrain::net::tcp {
namespace {

constexpr std::array<std::byte, 4> magic = {std::byte{'D'}, std::byte{'T'}, std::byte{'N'}, std::byte{'F'}};

template <class T>
void put(std::byte* p, T v) noexcept {
  for (std::size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<std::byte>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xFF);
}
template <class T>
T get(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= std::uint64_t{std::to_integer<std::uint8_t>(p[i])} << (8 * i);
  return static_cast<T>(v);
}

}  // namespace

void encode_header(const frame_header& h, std::span<std::byte, frame_header_bytes> out) noexcept {
  std::byte* p = out.data();
  std::memcpy(p, magic.data(), 4);
  p[4] = std::byte{frame_version};
  p[5] = static_cast<std::byte>(h.type);
  put<std::uint16_t>(p + 6, h.flags);
  put<std::uint32_t>(p + 8, h.stripe_len);
  put<std::uint32_t>(p + 12, 0);
  put<std::uint64_t>(p + 16, h.tag);
  put<std::uint64_t>(p + 24, h.msg_seq);
  put<std::uint64_t>(p + 32, h.msg_len);
  put<std::uint64_t>(p + 40, h.offset);
  put<std::uint64_t>(p + 48, h.checksum);
}

std::uint64_t frame_checksum(std::span<const std::byte, frame_header_bytes> header,
                             std::span<const std::byte> payload) noexcept {
  xxh3_64_stream s;
  s.update(header.first(frame_checked_bytes));
  s.update(payload);
  return s.digest();
}

result<frame_header> parse_header(std::span<const std::byte> in, const frame_limits& limits) {
  if (in.size() != frame_header_bytes)
    return data_loss("tcp frame: header of " + std::to_string(in.size()) + " bytes, expected 56");
  const std::byte* p = in.data();
  if (std::memcmp(p, magic.data(), 4) != 0) return data_loss("tcp frame: bad magic (not a dtrain frame)");
  const auto version = std::to_integer<std::uint8_t>(p[4]);
  if (version != frame_version)
    return status(status_code::unimplemented, "tcp frame: version " + std::to_string(version) + ", this build speaks 1");
  frame_header h;
  const auto type = std::to_integer<std::uint8_t>(p[5]);
  if (type < 1 || type > 6) return data_loss("tcp frame: unknown type " + std::to_string(type));
  h.type = static_cast<frame_type>(type);
  h.flags = get<std::uint16_t>(p + 6);
  if (h.flags != 0) return data_loss("tcp frame: nonzero flags " + std::to_string(h.flags));
  h.stripe_len = get<std::uint32_t>(p + 8);
  if (get<std::uint32_t>(p + 12) != 0) return data_loss("tcp frame: nonzero reserved field");
  h.tag = get<std::uint64_t>(p + 16);
  h.msg_seq = get<std::uint64_t>(p + 24);
  h.msg_len = get<std::uint64_t>(p + 32);
  h.offset = get<std::uint64_t>(p + 40);
  h.checksum = get<std::uint64_t>(p + 48);
  switch (h.type) {
    case frame_type::data:
      if (h.stripe_len > limits.max_stripe_bytes)
        return data_loss("tcp frame: stripe of " + std::to_string(h.stripe_len) + " bytes exceeds the limit " +
                         std::to_string(limits.max_stripe_bytes));
      if (h.msg_len > limits.max_message_bytes)
        return data_loss("tcp frame: message of " + std::to_string(h.msg_len) + " bytes exceeds the limit " +
                         std::to_string(limits.max_message_bytes));
      if (h.offset > h.msg_len || h.stripe_len > h.msg_len - h.offset)
        return data_loss("tcp frame: stripe [" + std::to_string(h.offset) + ", +" + std::to_string(h.stripe_len) +
                         ") outside a message of " + std::to_string(h.msg_len) + " bytes");
      if (h.stripe_len == 0 && h.msg_len != 0) return data_loss("tcp frame: empty stripe of a nonempty message");
      break;
    case frame_type::hello:
    case frame_type::hello_ack:
      if (h.stripe_len != hello_bytes) return data_loss("tcp frame: hello payload must be 32 bytes");
      break;
    case frame_type::goodbye:
    case frame_type::cancel:
    case frame_type::peer_lost:
      if (h.stripe_len != 0) return data_loss("tcp frame: goodbye/cancel/peer_lost carry no payload");
      break;
  }
  return h;
}

result<frame_header> parse_frame(std::span<const std::byte> header, std::span<const std::byte> payload,
                                 const frame_limits& limits) {
  auto h = parse_header(header, limits);
  if (!h.ok()) return h;
  if (payload.size() != h->stripe_len)
    return data_loss("tcp frame: payload of " + std::to_string(payload.size()) + " bytes, header says " +
                     std::to_string(h->stripe_len));
  if (frame_checksum(header.first<frame_header_bytes>(), payload) != h->checksum)
    return data_loss("tcp frame: checksum mismatch");
  return h;
}

void encode_hello(const hello& h, std::span<std::byte, hello_bytes> out) noexcept {
  std::byte* p = out.data();
  put<std::uint64_t>(p, h.session);
  put<std::uint32_t>(p + 8, h.from);
  put<std::uint32_t>(p + 12, h.to);
  put<std::uint32_t>(p + 16, h.size);
  put<std::uint32_t>(p + 20, h.stream);
  put<std::uint32_t>(p + 24, h.streams);
  put<std::uint32_t>(p + 28, h.reserved);
}

result<hello> parse_hello(std::span<const std::byte> in) {
  if (in.size() != hello_bytes) return data_loss("tcp hello: " + std::to_string(in.size()) + " bytes, expected 32");
  const std::byte* p = in.data();
  hello h;
  h.session = get<std::uint64_t>(p);
  h.from = get<std::uint32_t>(p + 8);
  h.to = get<std::uint32_t>(p + 12);
  h.size = get<std::uint32_t>(p + 16);
  h.stream = get<std::uint32_t>(p + 20);
  h.streams = get<std::uint32_t>(p + 24);
  h.reserved = get<std::uint32_t>(p + 28);
  if (h.reserved != 0) return data_loss("tcp hello: nonzero reserved field");
  if (h.size < 2 || h.from >= h.size || h.to >= h.size || h.from == h.to)
    return data_loss("tcp hello: ranks " + std::to_string(h.from) + " -> " + std::to_string(h.to) + " invalid for size " +
                     std::to_string(h.size));
  if (h.streams == 0 || h.streams > 64 || h.stream >= h.streams)
    return data_loss("tcp hello: stream " + std::to_string(h.stream) + " of " + std::to_string(h.streams));
  return h;
}

}  // namespace dtrain::net::tcp
