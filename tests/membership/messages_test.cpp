// Control messages: round trips of every type, the frozen vector of
// docs/formats/membership_messages.md, every truncation and single-byte corruption, and
// hand-built frames with valid signatures but malformed bodies.
#include "dtrain/membership/messages.h"

#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "dtrain/core/bytes.h"
#include "common/hex.h"

using namespace dtrain;
using namespace dtrain::membership;

namespace {

identity seeded(std::uint8_t base) {
  std::vector<std::byte> seed(32);
  for (std::size_t i = 0; i < 32; ++i) seed[i] = static_cast<std::byte>(base + i);
  return identity::from_seed(seed).value();
}

nonce filled(std::uint8_t v) {
  nonce n;
  n.fill(static_cast<std::byte>(v));
  return n;
}

view sample_view() {
  view v;
  v.epoch = 9;
  v.session = 0x0123456789ABCDEFull;
  v.members.push_back({seeded(1).id(), {"127.0.0.1", 5001}, 0});
  v.members.push_back({seeded(2).id(), {"::1", 5002}, 1});
  v.members.push_back({seeded(3).id(), {"node-3.example", 65535}, 7});
  return v;
}


// A frame with an arbitrary body, correctly signed: for bodies the encoder refuses.
std::vector<std::byte> raw_frame(message_type t, const std::vector<std::byte>& body, const identity& id) {
  const std::size_t signed_len = message_header_bytes + body.size();
  std::vector<std::byte> f(signed_len + message_signature_bytes);
  store_le<std::uint32_t>(f.data(), message_magic);
  f[4] = std::byte{1};
  f[5] = static_cast<std::byte>(t);
  store_le<std::uint32_t>(f.data() + 8, static_cast<std::uint32_t>(body.size()));
  std::memcpy(f.data() + 12, id.id().key.data(), 32);
  if (!body.empty()) std::memcpy(f.data() + message_header_bytes, body.data(), body.size());
  const auto sig = id.sign(std::span(f).first(signed_len));
  std::memcpy(f.data() + signed_len, sig.data(), sig.size());
  return f;
}

// Built by statements, not braces: GCC 12 at -O3 warns falsely (maybe-uninitialized) on
// brace-initialised bodies holding strings inside initializer lists.
hello_body make_hello(nonce n, std::uint32_t group, const char* host, std::uint16_t port, std::optional<view> v) {
  hello_body h;
  h.peer_challenge = n;
  h.group = group;
  h.data_address.host = host;
  h.data_address.port = port;
  h.known_view = std::move(v);
  return h;
}

template <class T>
void put(std::vector<std::byte>& b, T v) {
  std::byte tmp[sizeof(T)];
  store_le<T>(tmp, v);
  b.insert(b.end(), tmp, tmp + sizeof(T));
}
void put_str(std::vector<std::byte>& b, const std::string& s) {
  put<std::uint16_t>(b, static_cast<std::uint16_t>(s.size()));
  for (char c : s) b.push_back(static_cast<std::byte>(c));
}

}  // namespace

TEST_CASE("messages: every type round-trips, fields intact") {
  const auto id = seeded(100);
  const view v = sample_view();
  const std::vector<message_body> bodies{
      challenge_body{filled(3)},
      make_hello(filled(4), 2, "10.0.0.1", 7000, std::nullopt),
      make_hello(filled(5), 0, "fe80::1", 1, v),
      welcome_body{true, 50, v},
      welcome_body{false, 1000, view{}},
      heartbeat_body{123},
      vote_body{0xFFFFFFFFFFFFFFFFull},
      view_body{view_reason::admitted, v},
      pending_query_body{4},
      pending_answer_body{17},
      goodbye_body{},
      report_failure_body{8, std::nullopt},
      report_failure_body{8, seeded(2).id()},
      reject_body{status_code::permission_denied, "not allowlisted"},
  };
  const auto i = GENERATE(range(0, 14));
  CAPTURE(i);
  const auto& body = bodies[static_cast<std::size_t>(i)];
  auto frame = encode_message(body, id, filled(0xAB), 42);
  REQUIRE(frame.ok());
  auto len = message_length(*frame);
  REQUIRE(len.ok());
  CHECK(*len == frame->size());
  auto m = decode_message(*frame);
  REQUIRE(m.ok());
  CHECK(m->sender == id.id());
  CHECK(m->challenge == filled(0xAB));
  CHECK(m->counter == 42);
  CHECK(m->type() == type_of(body));
  CHECK(static_cast<std::size_t>(m->type()) == body.index() + 1);
  // Re-encoding the decoded body gives the same bytes (the encoding is canonical).
  auto again = encode_message(m->body, id, m->challenge, m->counter);
  REQUIRE(again.ok());
  CHECK(*again == *frame);
}

TEST_CASE("messages: frozen vector (docs/formats/membership_messages.md)") {
  // Sender: from_seed(00 01 .. 1f); challenge 32 x 0xAA; counter 7; heartbeat epoch 5.
  const auto id = seeded(0);
  auto frame = encode_message(heartbeat_body{5}, id, filled(0xAA), 7);
  REQUIRE(frame.ok());
  REQUIRE(frame->size() == 84 + 8 + 64);
  // The header, written out by hand from the spec's table.
  std::vector<std::byte> expect_head;
  expect_head.reserve(92);
  for (int c : {int{'D'}, int{'T'}, int{'M'}, int{'B'}, 1, 4, 0, 0, 8, 0, 0, 0}) expect_head.push_back(static_cast<std::byte>(c));
  for (auto k : id.id().key) expect_head.push_back(k);
  for (int k = 0; k < 32; ++k) expect_head.push_back(std::byte{0xAA});
  put<std::uint64_t>(expect_head, 7);
  put<std::uint64_t>(expect_head, 5);
  CHECK(std::vector<std::byte>(frame->begin(), frame->begin() + 92) == expect_head);
  CHECK(id.id().hex() == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8");
  CHECK(dtrain::test::to_hex(*frame) ==
        "44544d42010400000800000003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "0700000000000000"
        "0500000000000000"
        "5ca9facfcbd70bf769e94d518ae38c38fc7bce4489c0682ebd288fe5490afacc"
        "da115be773a3133bae2fd93223b7b940973d90a4992cf75486cd6c85e2658e0e");
}

TEST_CASE("messages: message_length checks the prefix") {
  const auto id = seeded(0);
  auto frame = encode_message(vote_body{1}, id, filled(1), 1).value();
  std::vector<std::byte> p(frame.begin(), frame.begin() + 12);
  SECTION("short") {
    for (std::size_t n = 0; n < 12; ++n)
      CHECK(message_length(std::span(p).first(n)).status().code() == status_code::data_loss);
  }
  SECTION("magic") {
    p[0] = std::byte{'X'};
    CHECK(message_length(p).status().code() == status_code::data_loss);
  }
  SECTION("version 0 and newer") {
    p[4] = std::byte{0};
    CHECK(message_length(p).status().code() == status_code::data_loss);
    p[4] = std::byte{2};
    CHECK(message_length(p).status().code() == status_code::unimplemented);
  }
  SECTION("types") {
    for (int t = 0; t < 256; ++t) {
      p[5] = static_cast<std::byte>(t);
      CAPTURE(t);
      CHECK(message_length(p).ok() == (t >= 1 && t <= 11));
    }
  }
  SECTION("flags") {
    p[7] = std::byte{1};
    CHECK(message_length(p).status().code() == status_code::data_loss);
  }
  SECTION("oversize") {
    store_le<std::uint32_t>(p.data() + 8, static_cast<std::uint32_t>(max_message_bytes - 148));
    CHECK(message_length(p).ok());
    store_le<std::uint32_t>(p.data() + 8, static_cast<std::uint32_t>(max_message_bytes - 147));
    CHECK(message_length(p).status().code() == status_code::data_loss);
    store_le<std::uint32_t>(p.data() + 8, 0xFFFFFFFFu);
    CHECK(message_length(p).status().code() == status_code::data_loss);
  }
}

TEST_CASE("messages: every truncation and every single-byte corruption is rejected") {
  const auto id = seeded(7);
  const message_body body = GENERATE(as<message_body>{}, make_hello(filled(4), 3, "127.0.0.1", 9, sample_view()),
                                     view_body{view_reason::vote, sample_view()}, goodbye_body{});
  const auto frame = encode_message(body, id, filled(9), 3).value();
  REQUIRE(decode_message(frame).ok());
  for (std::size_t n = 0; n < frame.size(); ++n) {
    auto r = decode_message(std::span(frame).first(n));
    CAPTURE(n);
    CHECK(r.status().code() == status_code::data_loss);
  }
  auto longer = frame;
  longer.push_back(std::byte{0});
  CHECK(decode_message(longer).status().code() == status_code::data_loss);
  for (std::size_t i = 0; i < frame.size(); ++i) {
    for (std::uint8_t x : {std::uint8_t{0x01}, std::uint8_t{0xFF}}) {
      auto bad = frame;
      bad[i] ^= static_cast<std::byte>(x);
      auto r = decode_message(bad);
      CAPTURE(i, x);
      REQUIRE_FALSE(r.ok());
      const auto c = r.status().code();
      CHECK((c == status_code::data_loss || c == status_code::permission_denied || c == status_code::unimplemented));
      if (i >= 12) CHECK(c == status_code::permission_denied);  // past the prefix, only the signature can tell
    }
  }
}

TEST_CASE("messages: signed but malformed bodies are data_loss") {
  const auto id = seeded(9);
  std::vector<std::byte> b;
  auto n32 = [&] { for (int k = 0; k < 32; ++k) b.push_back(std::byte{0}); };
  auto view_head = [&](std::uint32_t count) {
    put<std::uint64_t>(b, 1);
    put<std::uint64_t>(b, 2);
    put<std::uint32_t>(b, count);
  };
  auto member_bytes = [&](std::uint8_t who, const std::string& addr) {
    const auto p = seeded(who).id();
    b.insert(b.end(), p.key.begin(), p.key.end());
    put<std::uint32_t>(b, 0);
    put_str(b, addr);
  };
  message_type t = message_type::hello;
  SECTION("hello: has_view = 2") {
    n32(); put<std::uint32_t>(b, 0); put_str(b, "h:1"); put<std::uint8_t>(b, 2);
  }
  SECTION("hello: address without port") {
    n32(); put<std::uint32_t>(b, 0); put_str(b, "localhost"); put<std::uint8_t>(b, 0);
  }
  SECTION("hello: string longer than the body") {
    n32(); put<std::uint32_t>(b, 0); put<std::uint16_t>(b, 500); b.push_back(std::byte{'a'});
  }
  SECTION("hello: string over the 1024-byte cap") {
    n32(); put<std::uint32_t>(b, 0); put_str(b, std::string(1020, 'a') + ":12345"); put<std::uint8_t>(b, 0);
  }
  SECTION("view: member count beyond the bytes") {
    t = message_type::view; put<std::uint8_t>(b, 0); view_head(0xFFFFFFFFu);
  }
  SECTION("view: duplicate member") {
    t = message_type::view; put<std::uint8_t>(b, 0); view_head(2); member_bytes(1, "a:1"); member_bytes(1, "b:2");
  }
  SECTION("view: bad reason") {
    t = message_type::view; put<std::uint8_t>(b, 3); view_head(0);
  }
  SECTION("welcome: trailing byte") {
    t = message_type::welcome; put<std::uint8_t>(b, 1); put<std::uint32_t>(b, 5); view_head(0); b.push_back(std::byte{0});
  }
  SECTION("reject: code 0 and code past the last") {
    t = message_type::reject; put<std::uint8_t>(b, 0); put_str(b, "x");
    CHECK(decode_message(raw_frame(t, b, id)).status().code() == status_code::data_loss);
    b.clear(); put<std::uint8_t>(b, 13); put_str(b, "x");
  }
  SECTION("report_failure: truncated suspect") {
    t = message_type::report_failure; put<std::uint64_t>(b, 1); put<std::uint8_t>(b, 1); b.push_back(std::byte{1});
  }
  SECTION("goodbye with a body") {
    t = message_type::goodbye; b.push_back(std::byte{0});
  }
  SECTION("heartbeat too short") {
    t = message_type::heartbeat; put<std::uint32_t>(b, 1);
  }
  CHECK(decode_message(raw_frame(t, b, id)).status().code() == status_code::data_loss);
}

TEST_CASE("messages: the encoder refuses what the decoder would reject") {
  const auto id = seeded(1);
  view dup = sample_view();
  dup.members.push_back(dup.members[0]);
  CHECK(encode_message(view_body{view_reason::update, dup}, id, {}, 1).status().code() ==
        status_code::invalid_argument);
  CHECK(encode_message(reject_body{status_code::ok, "x"}, id, {}, 1).status().code() == status_code::invalid_argument);
  CHECK(encode_message(reject_body{status_code::aborted, std::string(2000, 'x')}, id, {}, 1).status().code() ==
        status_code::invalid_argument);
  // A view too big for one frame: 9000 members with long host names.
  view big;
  for (int k = 0; k < 9000; ++k) {
    peer_id p{};
    store_le<std::uint32_t>(p.key.data(), static_cast<std::uint32_t>(k));
    big.members.push_back({p, {std::string(100, 'h'), 1}, 0});
  }
  CHECK(encode_message(view_body{view_reason::update, big}, id, {}, 1).status().code() ==
        status_code::resource_exhausted);
}
