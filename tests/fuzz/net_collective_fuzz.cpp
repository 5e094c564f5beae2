// libFuzzer target: a real collective runs on rank 0 of a 2-peer in-process fabric while
// the fuzzer's bytes arrive as rank 1's messages. Input: 3 configuration bytes
// (net_fuzz_setup.h: collective, codec, count, options), then for each tag of the call,
// in order, a u16 little-endian length and that many bytes (missing bytes: shorter or
// empty messages). Rank 1 is a script: before rank 0 starts it posts a receive for every
// tag rank 0 sends on and one message under every tag rank 0 waits on, so rank 0 never
// waits for its 50 ms deadline. Contract checked (averager.h, docs/collectives.md):
// - no crash, sanitizer report, hang or deadline (every message is there);
// - on error, data and residual are bit-identical to what the caller passed, and the
//   code is one a hostile peer may cause: data_loss, unimplemented, aborted (gossip
//   "failed" frames), invalid_argument / out_of_range only with NaN input,
//   reject_nonfinite off or inputs that may overflow (below); a butterfly owner's
//   failure notice relays its own code;
// - on success the result is finite whenever no honest arithmetic could overflow (rank
//   0 weight 1 and finite input; every weight rank 1 sends 0 or in [2^-32, 2^32], every
//   finite value it sends at most 2^14 in magnitude: a NaN or Inf it sends must be
//   dropped or refused, never averaged in);
// - the same input gives the same outcome, bit for bit, twice in a row.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dtrain/codec/payload.h"
#include "dtrain/codec/registry.h"
#include "dtrain/core/bytes.h"
#include "dtrain/net/robust_aggregate.h"
#include "dtrain/net/transport_inproc.h"
#include "net_fuzz_setup.h"
#include "fuzz_contract.h"

namespace {

using namespace dtrain;
using namespace dtrain::net;
using namespace dtrain::net::fuzz;
using bytes = std::vector<std::byte>;

[[noreturn]] void fail(const char* what, const status& st = {}) {
  dtrain::fuzz::contract_violated("net_collective_fuzz", what, st);
}

constexpr std::uint32_t kHeaderMagic = 0x48435444u;  // "DTCH"
constexpr std::uint32_t kFrameMagic = 0x53475444u;   // "DTGS"

// Re-seals the codec payloads at the places rank 0 will look for them, so that mutations
// get past the checksums into the codecs' parameter and body checks.
void reseal(bytes& m, framing f) {
  const auto seal = [&](std::size_t off, std::size_t len) {
    if (len >= codec::payload_header_bytes && off <= m.size() && len <= m.size() - off)
      codec::seal_payload(std::span(m).subspan(off, len));
  };
  switch (f) {
    case framing::bare:
      seal(0, m.size());
      break;
    case framing::header:
      if (m.size() > 24) seal(24, m.size() - 24);
      break;
    case framing::frame: {
      if (m.size() < 16) return;
      const std::size_t slots = static_cast<std::uint8_t>(m[7]);
      if (slots > 2 || m.size() < 16 + 8 * slots) return;
      std::size_t at = 16 + 8 * slots;
      for (std::size_t s = 0; s < slots; ++s) {
        const std::uint64_t len = load_le<std::uint64_t>(m.data() + 16 + 8 * s);
        if (len > m.size() - at) return;
        seal(at, static_cast<std::size_t>(len));
        at += static_cast<std::size_t>(len);
      }
      break;
    }
  }
}

// Whether honest arithmetic on what rank 1 sent could overflow fp32 (see the file comment).
class overflow_scan {
 public:
  void weight(double w) {
    if (!(w == 0.0 || (w >= 0x1p-32 && w <= 0x1p32))) wild_ = true;
  }
  void payload(std::span<const std::byte> p) {
    auto n = codec::payload_count(p);
    if (!n.ok() || *n > (std::uint64_t{1} << 16)) return;
    values_.resize(static_cast<std::size_t>(*n));
    if (!codec::decode_any(p, values_).ok()) return;  // rank 0 cannot decode it either
    for (float v : values_)
      if (std::isfinite(v) && std::fabs(v) > 0x1p14f) wild_ = true;
  }
  void message(std::span<const std::byte> m, framing f) {
    switch (f) {
      case framing::bare:
        payload(m);
        break;
      case framing::header:
        if (m.size() < 24 || load_le<std::uint32_t>(m.data()) != kHeaderMagic) return;
        weight(static_cast<double>(load_le<float>(m.data() + 8)));
        payload(m.subspan(24));
        break;
      case framing::frame: {
        if (m.size() < 16 || load_le<std::uint32_t>(m.data()) != kFrameMagic) return;
        weight(load_le<double>(m.data() + 8));
        const std::size_t slots = static_cast<std::uint8_t>(m[7]);
        if (slots > 2 || m.size() < 16 + 8 * slots) return;
        std::size_t at = 16 + 8 * slots;
        for (std::size_t s = 0; s < slots; ++s) {
          const std::uint64_t len = load_le<std::uint64_t>(m.data() + 16 + 8 * s);
          if (len > m.size() - at) return;
          payload(m.subspan(at, static_cast<std::size_t>(len)));
          at += static_cast<std::size_t>(len);
        }
        break;
      }
    }
  }
  bool wild() const noexcept { return wild_; }

 private:
  bool wild_ = false;
  std::vector<float> values_;
};

struct outcome {
  status st;
  std::vector<float> a, b, ra, rb;
};

outcome run_once(const config& k, const std::vector<slot>& slots, const std::vector<bytes>& msgs) {
  static std::vector<bytes> inbox;
  if (inbox.size() < slots.size()) inbox.resize(slots.size(), bytes(std::size_t{1} << 16));
  inproc_fabric f(2);
  transport& t1 = f.endpoint(1);
  std::vector<op> ops;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    auto o = t1.post_recv(0, slots[i].tag, inbox[i]);
    if (!o.ok()) fail("post_recv", o.status());
    ops.push_back(*o);
  }
  for (std::size_t i = 0; i < slots.size(); ++i) {
    auto o = t1.post_send(0, slots[i].tag, msgs[i]);
    if (!o.ok()) fail("post_send", o.status());
    ops.push_back(*o);
  }
  outcome r;
  r.a = input_of(k, 0, 0);
  r.b = k.pair() ? input_of(k, 0, 1) : std::vector<float>(k.count);
  if (k.residual) {
    r.ra.assign(k.count, -7.0f);
    if (k.pair()) r.rb.assign(k.count, -9.0f);
  }
  r.st = run_call(k, f.endpoint(0), r.a, r.b, r.ra, r.rb);
  for (op o : ops) t1.wait(o, deadline::min()).status().ignore();
  return r;
}

bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const config k = config::decode(data);
  const std::vector<slot> slots = slots_of(k);

  // Rank 1's messages: u16 length, bytes; whatever is missing is empty.
  std::vector<bytes> msgs(slots.size());
  std::size_t at = 3;
  for (std::size_t i = 0; i < slots.size() && at < size; ++i) {
    std::size_t len = data[at];
    if (at + 1 < size) len |= static_cast<std::size_t>(data[at + 1]) << 8;
    at = std::min(size, at + 2);
    len = std::min(len, size - at);
    msgs[i].resize(len);
    if (len) std::memcpy(msgs[i].data(), data + at, len);
    at += len;
  }
  if (k.reseal)
    for (std::size_t i = 0; i < slots.size(); ++i) reseal(msgs[i], slots[i].f);

  overflow_scan scan;
  for (std::size_t i = 0; i < slots.size(); ++i) scan.message(msgs[i], slots[i].f);

  const outcome r = run_once(k, slots, msgs);
  const status& st = r.st;
  // Whether no honest arithmetic on these inputs can overflow fp32 or the codec's range.
  const bool bounded = !k.listener0 && !scan.wild();
  if (st.ok()) {
    if (bounded && !k.nan0 && (!all_finite(r.a) || !all_finite(r.b))) fail("non-finite result from bounded inputs");
  } else {
    if (!same_bits(r.a, input_of(k, 0, 0))) fail("data changed on error", st);
    if (k.pair() && !same_bits(r.b, input_of(k, 0, 1))) fail("second vector changed on error", st);
    if (k.residual && !same_bits(r.ra, std::vector<float>(k.count, -7.0f))) fail("residual changed on error", st);
    if (k.pair() && k.residual && !same_bits(r.rb, std::vector<float>(k.count, -9.0f)))
      fail("second residual changed on error", st);
    const status_code c = st.code();
    const bool relayed = k.c == coll::butterfly && st.message().find("owner 1 failed with") != std::string::npos;
    // invalid_argument / out_of_range: this caller's NaN, reject_nonfinite off, or a mean
    // that overflows (a tiny or huge weight, huge values): the codec cannot encode it.
    const bool self_inflicted = k.nan0 || k.reject_off || !bounded;
    const bool expected = c == status_code::data_loss || c == status_code::unimplemented ||
                          c == status_code::aborted || relayed ||
                          (self_inflicted && (c == status_code::invalid_argument || c == status_code::out_of_range));
    if (!expected) fail("unexpected error code", st);
  }

  const outcome again = run_once(k, slots, msgs);
  if (again.st.code() != st.code() || again.st.message() != st.message()) fail("second run, other status", again.st);
  if (!same_bits(again.a, r.a) || !same_bits(again.b, r.b) || !same_bits(again.ra, r.ra) ||
      !same_bits(again.rb, r.rb))
    fail("second run, other numbers", st);
  return 0;
}
