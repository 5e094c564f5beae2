// libFuzzer target for the membership control messages (docs/formats/membership_messages.md):
// message_length and decode_message on arbitrary bytes. Input byte 0 picks the mode:
// - even: the rest is a frame as received. decode_message must agree with
//   message_length on the prefix, and a frame that decodes must encode back to itself
//   when its sender is the fuzzer's own key (random bytes never carry a valid signature,
//   so this mostly exercises the prefix checks and the signature check).
// - odd: the rest is [type][body]; the fuzzer wraps it in a correct prefix and signs it
//   with its own key, so the body decoders see arbitrary bytes behind a valid signature.
//   Then only data_loss may come back, and a success must re-encode to the same frame.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "dtrain/core/bytes.h"
#include "dtrain/membership/messages.h"
#include "fuzz_contract.h"

namespace {

using namespace dtrain;
using namespace dtrain::membership;

[[noreturn]] void fail(const char* what, const status& st = {}) {
  dtrain::fuzz::contract_violated("membership_message_fuzz", what, st);
}

const identity& fuzz_key() { return dtrain::fuzz::fixed_identity<identity>(0x42); }

void check_canonical(const message& m, std::span<const std::byte> frame) {
  auto again = encode_message(m.body, fuzz_key(), m.challenge, m.counter);
  if (!again.ok()) fail("a decoded body does not encode", again.status());
  if (again->size() != frame.size() || std::memcmp(again->data(), frame.data(), frame.size()) != 0)
    fail("decode then encode changed the bytes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto in = std::span<const std::byte>(reinterpret_cast<const std::byte*>(data) + 1, size - 1);

  if ((data[0] & 1) == 0) {
    auto len = message_length(in);
    auto m = decode_message(in);
    if (m.ok()) {
      if (!len.ok() || *len != in.size()) fail("decoded a frame whose prefix is invalid or whose length differs");
      if (m->sender == fuzz_key().id()) check_canonical(*m, in);
    } else if (!len.ok() && m.status().code() != len.status().code()) {
      fail("decode_message and message_length disagree on a bad prefix", m.status());
    }
    return 0;
  }

  if (in.empty()) return 0;
  const std::size_t body_len = in.size() - 1;
  const std::size_t total = message_header_bytes + body_len + message_signature_bytes;
  if (total > max_message_bytes) return 0;
  std::vector<std::byte> f(message_header_bytes);
  store_le<std::uint32_t>(f.data(), message_magic);
  f[4] = std::byte{message_version};
  f[5] = static_cast<std::byte>(1 + static_cast<unsigned>(in[0]) % 11);
  store_le<std::uint32_t>(f.data() + 8, static_cast<std::uint32_t>(body_len));
  std::memcpy(f.data() + 12, fuzz_key().id().key.data(), 32);
  f.insert(f.end(), in.begin() + 1, in.end());
  const auto sig = fuzz_key().sign(f);
  f.insert(f.end(), sig.begin(), sig.end());
  auto m = decode_message(f);
  if (!m.ok()) {
    if (m.status().code() != status_code::data_loss) fail("a signed frame failed with other than data_loss", m.status());
    return 0;
  }
  if (m->sender != fuzz_key().id() || static_cast<std::byte>(m->type()) != f[5]) fail("header fields differ");
  check_canonical(*m, f);
  return 0;
}
