// dtrain/net/tcp/frame.h: the TCP transport's frame: a 56-byte little-endian header
// (magic "DTNF", version, type, stripe of a tagged message, XXH3-64 checksum over header
// and payload) and the 32-byte hello payload that opens a connection. Byte layout:
// docs/formats/tcp_frames.md. Parsers check everything before anything is used.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "dtrain/core/status.h"
#include "dtrain/net/transport.h"

namespace dtrain::net::tcp {

inline constexpr std::size_t frame_header_bytes = 56;
/// Bytes covered by the checksum before the payload (the header minus its checksum field).
inline constexpr std::size_t frame_checked_bytes = 48;
inline constexpr std::uint8_t frame_version = 1;
inline constexpr std::size_t hello_bytes = 32;

enum class frame_type : std::uint8_t {
  data = 1,       ///< one stripe of a tagged message
  hello = 2,      ///< opens a stream: payload is a hello
  hello_ack = 3,  ///< the acceptor's answer: payload is the mirrored hello
  goodbye = 4,    ///< graceful close: the sender is leaving
  cancel = 5,     ///< message msg_seq will never be sent (its send was cancelled before any byte left)
  peer_lost = 6,  ///< the sender lost rank msg_seq: the group is broken (fail_group_on_peer_loss)
};

struct frame_header {
  frame_type type = frame_type::data;
  std::uint16_t flags = 0;        ///< must be 0 in version 1
  std::uint32_t stripe_len = 0;   ///< payload bytes following this header
  tag_t tag = 0;                  ///< the message's tag (data)
  std::uint64_t msg_seq = 0;      ///< per (sender, receiver) message number, from 0
  std::uint64_t msg_len = 0;      ///< the whole message's length
  std::uint64_t offset = 0;       ///< this stripe's offset in the message
  std::uint64_t checksum = 0;     ///< XXH3-64 (seed 0) of header bytes [0, 48) then the payload
};

/// What a receiver accepts; larger values are protocol errors.
struct frame_limits {
  std::uint64_t max_message_bytes = std::uint64_t{1} << 36;
  std::uint32_t max_stripe_bytes = 64u << 20;
};

/// Writes `h` (checksum field as given) into `out`.
void encode_header(const frame_header& h, std::span<std::byte, frame_header_bytes> out) noexcept;

/// XXH3-64 of the first 48 header bytes followed by the payload; store it in checksum.
std::uint64_t frame_checksum(std::span<const std::byte, frame_header_bytes> header,
                             std::span<const std::byte> payload) noexcept;

/// Parses and checks a header: magic, version (unimplemented for another version), known
/// type, zero flags, stripe_len <= max_stripe_bytes, msg_len <= max_message_bytes,
/// offset + stripe_len <= msg_len for data, the fixed payload size of hello/hello_ack
/// (32) and of goodbye/cancel/peer_lost (0). The checksum is checked later, over the payload too.
/// Errors: data_loss naming the bad field; unimplemented for a different version.
result<frame_header> parse_header(std::span<const std::byte> in, const frame_limits& limits = {});

/// What a receiver does once a frame's payload is in: parse_header(), then the checksum
/// over the header's first 48 bytes and `payload`. Every single-byte change to a valid frame
/// (header or payload) is rejected here, which parse_header alone cannot promise (the tag,
/// sequence and offset fields are only covered by the checksum).
/// Errors: those of parse_header; data_loss when payload.size() != stripe_len or the
/// checksum differs.
result<frame_header> parse_frame(std::span<const std::byte> header, std::span<const std::byte> payload,
                                 const frame_limits& limits = {});

/// The payload of hello and hello_ack.
struct hello {
  std::uint64_t session = 0;   ///< the group's session id (both sides must agree)
  std::uint32_t from = 0;      ///< the connecting rank
  std::uint32_t to = 0;        ///< the accepting rank
  std::uint32_t size = 0;      ///< the group size
  std::uint32_t stream = 0;    ///< this connection's stream index, < streams
  std::uint32_t streams = 0;   ///< streams per peer pair
  std::uint32_t reserved = 0;  ///< 0
  friend bool operator==(const hello&, const hello&) = default;
};

void encode_hello(const hello& h, std::span<std::byte, hello_bytes> out) noexcept;
/// Errors: data_loss for a wrong length, reserved != 0, from/to out of range or equal,
/// stream >= streams, streams == 0 or > 64.
result<hello> parse_hello(std::span<const std::byte> in);

}  // namespace dtrain::net::tcp
