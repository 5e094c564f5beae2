// dtrain/membership/messages.h: the signed control messages between peers and the
// coordinator, and their binary encoding. Every byte: docs/formats/membership_messages.md.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/membership/identity.h"
#include "dtrain/membership/view.h"

namespace dtrain::membership {

/// A 32-byte random challenge. Each side of a connection picks one; the other side signs
/// it into every message it sends on that connection, with a counter, so a recorded
/// message cannot be replayed on another connection or out of order.
using nonce = std::array<std::byte, 32>;

/// Message types (byte 5 of the frame). Direction in brackets.
enum class message_type : std::uint8_t {
  challenge = 1,       ///< [coordinator→peer] first message on a connection: the coordinator's nonce
  hello = 2,           ///< [peer→coordinator] registration: the peer's nonce, data address, group, last view
  welcome = 3,         ///< [coordinator→peer] answer to hello: admitted now or pending, current view
  heartbeat = 4,       ///< [peer→coordinator] liveness, every heartbeat interval
  vote = 5,            ///< [peer→coordinator] update_membership(): the step-boundary vote
  view = 6,            ///< [coordinator→peer] a view: pushed on change, a vote's answer, a join's answer
  pending_query = 7,   ///< [peer→coordinator] peers_pending(): a joint query of all members
  pending_answer = 8,  ///< [coordinator→peer] its answer, the same to every member
  goodbye = 9,         ///< [peer→coordinator] graceful leave
  report_failure = 10, ///< [peer→coordinator] a collective failed in this epoch; optional suspect
  reject = 11,         ///< [coordinator→peer] why the coordinator closes the connection
};

/// Why a view message was sent.
enum class view_reason : std::uint8_t {
  update = 0,    ///< membership changed (eviction, leave, end of a restart's grace period)
  vote = 1,      ///< the answer to this member's update_membership() vote
  admitted = 2,  ///< the answer to a pending join: the receiver is a member from now on
};

struct challenge_body { nonce value{}; };
struct hello_body {
  nonce peer_challenge{};               ///< the nonce the coordinator must sign into its messages
  std::uint32_t group = 0;
  net::tcp::address data_address;
  std::optional<membership::view> known_view;  ///< the last view the peer had, if any
};
struct welcome_body {
  bool admitted = false;                 ///< true: the peer is a member of `current` already
  std::uint32_t heartbeat_ms = 0;        ///< the coordinator's heartbeat interval
  membership::view current;
};
struct heartbeat_body { std::uint64_t epoch = 0; };
struct vote_body { std::uint64_t epoch = 0; };
struct view_body { view_reason reason = view_reason::update; membership::view v; };
struct pending_query_body { std::uint64_t epoch = 0; };
struct pending_answer_body { std::uint32_t pending = 0; };
struct goodbye_body {};
struct report_failure_body { std::uint64_t epoch = 0; std::optional<peer_id> suspect; };
struct reject_body { status_code code = status_code::permission_denied; std::string reason; };

/// One message body; alternative i is message type i + 1.
using message_body = std::variant<challenge_body, hello_body, welcome_body, heartbeat_body, vote_body, view_body,
                                  pending_query_body, pending_answer_body, goodbye_body, report_failure_body,
                                  reject_body>;

/// The type of a body.
inline message_type type_of(const message_body& b) noexcept {
  return static_cast<message_type>(b.index() + 1);
}

/// A decoded, signature-checked message.
struct message {
  peer_id sender;           ///< the key that signed it (checked)
  nonce challenge{};        ///< the receiver's nonce it claims (the caller checks it)
  std::uint64_t counter = 0;  ///< its place on the connection (the caller checks it)
  message_body body;
  message_type type() const noexcept { return type_of(body); }
};

inline constexpr std::size_t message_prefix_bytes = 12;   ///< magic .. body length
inline constexpr std::size_t message_header_bytes = 84;   ///< prefix + sender + challenge + counter
inline constexpr std::size_t message_signature_bytes = 64;
inline constexpr std::size_t max_message_bytes = std::size_t{1} << 20;  ///< whole frame, 1 MiB
inline constexpr std::uint32_t message_magic = 0x424D5444u;  ///< "DTMB" little-endian
inline constexpr std::uint8_t message_version = 1;
inline constexpr std::size_t max_view_members = 65535;
inline constexpr std::size_t max_string_bytes = 1024;

/// Encodes and signs one message: header (sender = signer.id(), `challenge`, `counter`),
/// body, then signer's Ed25519 signature over everything before it. Deterministic.
/// Errors: invalid_argument when the body breaks a format limit (more than
/// max_view_members members, a string over max_string_bytes, an address that does not
/// parse back to itself, a reject with code ok, duplicate ids in a view);
/// resource_exhausted when the frame would exceed max_message_bytes.
result<std::vector<std::byte>> encode_message(const message_body& body, const identity& signer,
                                              const nonce& challenge, std::uint64_t counter);

/// The length of the whole frame that starts with `prefix` (at least the first
/// message_prefix_bytes bytes), so a stream reader knows how much to read next.
/// Errors: data_loss when prefix is shorter than message_prefix_bytes, the magic is wrong,
/// the version is 0, the type unknown, the flags nonzero, or the frame would exceed
/// max_message_bytes; unimplemented for a version newer than message_version.
result<std::size_t> message_length(std::span<const std::byte> prefix);

/// Decodes one whole frame: checks the prefix as message_length() does, that `frame` is
/// exactly that long, the signature (by the sender key in the frame), and then every
/// length and value in the body before reading it; trailing bytes are an error. A frame
/// that decodes encodes back to the same bytes (the encoding is canonical).
/// Errors: data_loss (malformed, truncated, trailing bytes, a field out of range, an
/// address not in to_string()'s canonical form, duplicate members in a view),
/// unimplemented (newer version), permission_denied (the signature does not verify).
/// It never reads out of bounds. The caller still checks sender, challenge and counter
/// against its connection.
result<message> decode_message(std::span<const std::byte> frame);

}  // namespace dtrain::membership
