// Control-message encoding and checked decoding (docs/formats/membership_messages.md).
#include "dtrain/membership/messages.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "dtrain/core/bytes.h"

namespace dtrain::membership {
namespace {

constexpr std::size_t type_count = std::variant_size_v<message_body>;

// ---- writing: a growable buffer (control messages are small and rare) ---------------
class out_buf {
 public:
  template <class T>
  void put(T v) {
    std::byte tmp[sizeof(T)];
    store_le<T>(tmp, v);
    bytes_.insert(bytes_.end(), tmp, tmp + sizeof(T));
  }
  void put_bytes(std::span<const std::byte> b) { bytes_.insert(bytes_.end(), b.begin(), b.end()); }
  void put_string(const std::string& s) {
    put<std::uint16_t>(static_cast<std::uint16_t>(s.size()));
    put_bytes(std::as_bytes(std::span(s.data(), s.size())));
  }
  std::vector<std::byte>& bytes() { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

// An address the decoder will accept back: parse(to_string()) gives it again.
bool encodable(const net::tcp::address& a) {
  const std::string text = a.to_string();
  if (text.size() > max_string_bytes) return false;
  auto back = net::tcp::address::parse(text);
  return back.ok() && *back == a;
}

status check_view(const view& v) {
  if (v.members.size() > max_view_members)
    return invalid_argument("view has " + std::to_string(v.members.size()) + " members, more than " +
                            std::to_string(max_view_members));
  std::set<peer_id> ids;
  for (const auto& m : v.members) {
    if (!ids.insert(m.id).second) return invalid_argument("view lists peer " + m.id.short_hex() + " twice");
    if (!encodable(m.data_address))
      return invalid_argument("view: data address '" + m.data_address.to_string().substr(0, 64) + "' does not parse back");
  }
  return ok_status();
}

void put_view(out_buf& o, const view& v) {
  o.put<std::uint64_t>(v.epoch);
  o.put<std::uint64_t>(v.session);
  o.put<std::uint32_t>(static_cast<std::uint32_t>(v.members.size()));
  for (const auto& m : v.members) {
    o.put_bytes(m.id.key);
    o.put<std::uint32_t>(m.group);
    o.put_string(m.data_address.to_string());
  }
}

status put_body(out_buf& o, const message_body& body) {
  struct visitor {
    out_buf& o;
    status operator()(const challenge_body& b) { o.put_bytes(b.value); return {}; }
    status operator()(const hello_body& b) {
      const std::string addr = b.data_address.to_string();
      if (!encodable(b.data_address)) return invalid_argument("hello: data address does not parse back");
      if (b.known_view) DTRAIN_RETURN_IF_ERROR(check_view(*b.known_view));
      o.put_bytes(b.peer_challenge);
      o.put<std::uint32_t>(b.group);
      o.put_string(addr);
      o.put<std::uint8_t>(b.known_view ? 1 : 0);
      if (b.known_view) put_view(o, *b.known_view);
      return {};
    }
    status operator()(const welcome_body& b) {
      DTRAIN_RETURN_IF_ERROR(check_view(b.current));
      o.put<std::uint8_t>(b.admitted ? 1 : 0);
      o.put<std::uint32_t>(b.heartbeat_ms);
      put_view(o, b.current);
      return {};
    }
    status operator()(const heartbeat_body& b) { o.put<std::uint64_t>(b.epoch); return {}; }
    status operator()(const vote_body& b) { o.put<std::uint64_t>(b.epoch); return {}; }
    status operator()(const view_body& b) {
      if (static_cast<std::uint8_t>(b.reason) > 2) return invalid_argument("view: bad reason");
      DTRAIN_RETURN_IF_ERROR(check_view(b.v));
      o.put<std::uint8_t>(static_cast<std::uint8_t>(b.reason));
      put_view(o, b.v);
      return {};
    }
    status operator()(const pending_query_body& b) { o.put<std::uint64_t>(b.epoch); return {}; }
    status operator()(const pending_answer_body& b) { o.put<std::uint32_t>(b.pending); return {}; }
    status operator()(const goodbye_body&) { return {}; }
    status operator()(const report_failure_body& b) {
      o.put<std::uint64_t>(b.epoch);
      o.put<std::uint8_t>(b.suspect ? 1 : 0);
      if (b.suspect) o.put_bytes(b.suspect->key);
      return {};
    }
    status operator()(const reject_body& b) {
      if (b.code == status_code::ok || b.code > status_code::internal) return invalid_argument("reject: bad code");
      if (b.reason.size() > max_string_bytes) return invalid_argument("reject: reason too long");
      o.put<std::uint8_t>(static_cast<std::uint8_t>(b.code));
      o.put_string(b.reason);
      return {};
    }
  };
  return std::visit(visitor{o}, body);
}

// ---- reading --------------------------------------------------------------------------
bool get_string(byte_reader& r, std::string& s) {
  const auto n = r.get<std::uint16_t>();
  if (!r.ok() || n > max_string_bytes) return false;
  const auto b = r.take(n);
  if (!r.ok()) return false;
  s.assign(reinterpret_cast<const char*>(b.data()), b.size());
  return true;
}

bool get_address(byte_reader& r, net::tcp::address& a) {
  std::string s;
  if (!get_string(r, s)) return false;
  auto parsed = net::tcp::address::parse(s);
  // Only the canonical text (what to_string() writes) is accepted, so that a decoded
  // message encodes back to the same bytes ("01.2.3.4:08" is refused).
  if (!parsed.ok() || parsed->to_string() != s) return false;
  a = std::move(*parsed);
  return true;
}

template <std::size_t N>
bool get_array(byte_reader& r, std::array<std::byte, N>& out) {
  const auto b = r.take(N);
  if (!r.ok()) return false;
  std::memcpy(out.data(), b.data(), N);
  return true;
}

bool get_bool(byte_reader& r, bool& out) {
  const auto v = r.get<std::uint8_t>();
  if (!r.ok() || v > 1) return false;
  out = v == 1;
  return true;
}

// Smallest encoded member: id 32 + group 4 + string length 2 + "h:0" (3).
constexpr std::size_t min_member_bytes = 32 + 4 + 2 + 3;

bool get_view(byte_reader& r, view& v) {
  v.epoch = r.get<std::uint64_t>();
  v.session = r.get<std::uint64_t>();
  const auto n = r.get<std::uint32_t>();
  // Bound the count by what the bytes can hold before allocating anything.
  if (!r.ok() || n > max_view_members || n > r.remaining() / min_member_bytes) return false;
  v.members.resize(n);
  std::set<peer_id> ids;
  for (auto& m : v.members) {
    if (!get_array(r, m.id.key)) return false;
    m.group = r.get<std::uint32_t>();
    if (!r.ok() || !get_address(r, m.data_address)) return false;
    if (!ids.insert(m.id).second) return false;
  }
  return true;
}

// Decodes the body of type `t`; false on any malformed field. Trailing bytes are
// checked by the caller.
bool get_body(byte_reader& r, message_type t, message_body& out) {
  switch (t) {
    case message_type::challenge: {
      challenge_body b;
      if (!get_array(r, b.value)) return false;
      out = b;
      return true;
    }
    case message_type::hello: {
      hello_body b;
      if (!get_array(r, b.peer_challenge)) return false;
      b.group = r.get<std::uint32_t>();
      if (!r.ok() || !get_address(r, b.data_address)) return false;
      bool has_view = false;
      if (!get_bool(r, has_view)) return false;
      if (has_view) {
        b.known_view.emplace();
        if (!get_view(r, *b.known_view)) return false;
      }
      out = std::move(b);
      return true;
    }
    case message_type::welcome: {
      welcome_body b;
      if (!get_bool(r, b.admitted)) return false;
      b.heartbeat_ms = r.get<std::uint32_t>();
      if (!r.ok() || !get_view(r, b.current)) return false;
      out = std::move(b);
      return true;
    }
    case message_type::heartbeat: out = heartbeat_body{r.get<std::uint64_t>()}; return r.ok();
    case message_type::vote: out = vote_body{r.get<std::uint64_t>()}; return r.ok();
    case message_type::view: {
      view_body b;
      const auto reason = r.get<std::uint8_t>();
      if (!r.ok() || reason > 2) return false;
      b.reason = static_cast<view_reason>(reason);
      if (!get_view(r, b.v)) return false;
      out = std::move(b);
      return true;
    }
    case message_type::pending_query: out = pending_query_body{r.get<std::uint64_t>()}; return r.ok();
    case message_type::pending_answer: out = pending_answer_body{r.get<std::uint32_t>()}; return r.ok();
    case message_type::goodbye: out = goodbye_body{}; return true;
    case message_type::report_failure: {
      report_failure_body b;
      b.epoch = r.get<std::uint64_t>();
      bool has_suspect = false;
      if (!r.ok() || !get_bool(r, has_suspect)) return false;
      if (has_suspect) {
        b.suspect.emplace();
        if (!get_array(r, b.suspect->key)) return false;
      }
      out = b;
      return true;
    }
    case message_type::reject: {
      reject_body b;
      const auto code = r.get<std::uint8_t>();
      if (!r.ok() || code == 0 || code > static_cast<std::uint8_t>(status_code::internal)) return false;
      b.code = static_cast<status_code>(code);
      if (!get_string(r, b.reason)) return false;
      out = std::move(b);
      return true;
    }
  }
  return false;
}

}  // namespace

result<std::vector<std::byte>> encode_message(const message_body& body, const identity& signer,
                                              const nonce& challenge, std::uint64_t counter) {
  out_buf o;
  o.put<std::uint32_t>(message_magic);
  o.put<std::uint8_t>(message_version);
  o.put<std::uint8_t>(static_cast<std::uint8_t>(type_of(body)));
  o.put<std::uint16_t>(0);
  o.put<std::uint32_t>(0);  // body length, patched below
  o.put_bytes(signer.id().key);
  o.put_bytes(challenge);
  o.put<std::uint64_t>(counter);
  DTRAIN_RETURN_IF_ERROR(put_body(o, body));
  auto& bytes = o.bytes();
  const std::size_t body_len = bytes.size() - message_header_bytes;
  if (bytes.size() + message_signature_bytes > max_message_bytes)
    return status(status_code::resource_exhausted,
                  "control message of " + std::to_string(bytes.size() + message_signature_bytes) +
                      " bytes exceeds the 1 MiB limit");
  store_le<std::uint32_t>(bytes.data() + 8, static_cast<std::uint32_t>(body_len));
  const signature sig = signer.sign(bytes);
  bytes.insert(bytes.end(), sig.begin(), sig.end());
  return std::move(bytes);
}

result<std::size_t> message_length(std::span<const std::byte> prefix) {
  if (prefix.size() < message_prefix_bytes)
    return data_loss("control message: " + std::to_string(prefix.size()) + " bytes, shorter than the 12-byte prefix");
  if (load_le<std::uint32_t>(prefix.data()) != message_magic) return data_loss("control message: bad magic");
  const auto version = static_cast<std::uint8_t>(prefix[4]);
  if (version == 0) return data_loss("control message: version 0");
  if (version > message_version)
    return unimplemented("control message: version " + std::to_string(version) + " is newer than this build's 1");
  const auto type = static_cast<std::uint8_t>(prefix[5]);
  if (type == 0 || type > type_count) return data_loss("control message: unknown type " + std::to_string(type));
  if (load_le<std::uint16_t>(prefix.data() + 6) != 0) return data_loss("control message: nonzero flags");
  const std::uint64_t body_len = load_le<std::uint32_t>(prefix.data() + 8);
  const std::uint64_t total = message_header_bytes + body_len + message_signature_bytes;
  if (total > max_message_bytes)
    return data_loss("control message: " + std::to_string(total) + " bytes exceeds the 1 MiB limit");
  return static_cast<std::size_t>(total);
}

result<message> decode_message(std::span<const std::byte> frame) {
  auto len = message_length(frame);
  if (!len.ok()) return std::move(len).status();
  if (frame.size() != *len)
    return data_loss("control message: " + std::to_string(frame.size()) + " bytes, the header says " +
                     std::to_string(*len));
  message m;
  std::memcpy(m.sender.key.data(), frame.data() + 12, 32);
  signature sig;
  const std::size_t signed_len = frame.size() - message_signature_bytes;
  std::memcpy(sig.data(), frame.data() + signed_len, sig.size());
  // Verify before use: nothing in the body is looked at unless the signature holds.
  if (!verify(m.sender, frame.first(signed_len), sig))
    return status(status_code::permission_denied,
                  "control message: bad signature (claimed sender " + m.sender.short_hex() + ")");
  std::memcpy(m.challenge.data(), frame.data() + 44, 32);
  m.counter = load_le<std::uint64_t>(frame.data() + 76);
  byte_reader r(frame.subspan(message_header_bytes, signed_len - message_header_bytes));
  const auto type = static_cast<message_type>(frame[5]);
  if (!get_body(r, type, m.body)) return data_loss("control message: malformed body");
  if (r.remaining() != 0) return data_loss("control message: trailing bytes after the body");
  return m;
}

}  // namespace dtrain::membership
