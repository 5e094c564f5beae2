// The real messages of every collective on the wire (docs/formats/collective_messages.md):
// captured from honest 2-peer runs and frozen as hex, then replayed to a real rank 0 by
// a scripted rank 1, truncated, lengthened and corrupted byte by byte; plus the
// regressions tests/fuzz/net_collective_fuzz.cpp found.
#include <catch2/catch.hpp>

#include <array>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dtrain/codec/payload.h"
#include "dtrain/core/bytes.h"
#include "dtrain/net/allreduce_butterfly.h"
#include "dtrain/net/allreduce_ring.h"
#include "dtrain/net/neighbor_average.h"
#include "dtrain/net/noloco_pairing.h"
#include "dtrain/net/push_sum.h"
#include "dtrain/net/robust_aggregate.h"
#include "dtrain/net/sparse_allgather.h"
#include "dtrain/net/transport_forward.h"
#include "dtrain/topology/generators.h"
#include "dtrain/topology/mixing.h"
#include "dtrain/topology/schedule.h"
#include "net_test_util.h"
#include "wire_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace dtrain::net::wire_test;
using namespace std::chrono_literals;

namespace {

// ---- the collectives, on 2 peers -------------------------------------------------------

enum class coll { ring, butterfly, sparse_allgather, neighbor, push_sum, noloco };

const char* coll_name(coll c) {
  switch (c) {
    case coll::ring: return "ring";
    case coll::butterfly: return "butterfly";
    case coll::sparse_allgather: return "sparse_allgather";
    case coll::neighbor: return "neighbor";
    case coll::push_sum: return "push_sum";
    case coll::noloco: return "noloco";
  }
  return "?";
}

struct setup {
  coll c = coll::ring;
  std::string codec = "identity";
  std::size_t count = 3;
  std::string label() const { return std::string(coll_name(c)) + " " + codec + " count " + std::to_string(count); }
};

// Built once on the test thread (Catch2 assertions are not thread-safe).
struct schedules {
  topology::schedule uniform, push;
};
const schedules& complete2() {
  static const schedules s = [] {
    auto g = topology::complete(2);
    REQUIRE(g.ok());
    auto u = topology::uniform_weights(*g);
    auto p = topology::push_sum_weights(*g);
    REQUIRE(u.ok());
    REQUIRE(p.ok());
    return schedules{topology::static_schedule(std::move(*u)), topology::static_schedule(std::move(*p))};
  }();
  return s;
}

constexpr std::uint32_t kChannel = 5;

template <class T>
result<std::unique_ptr<averager>> as_averager(result<std::unique_ptr<T>> r) {
  if (!r.ok()) return r.status();
  return std::unique_ptr<averager>(std::move(r).value());
}

result<std::unique_ptr<averager>> make(const setup& s, transport& t, const schedules& sc) {
  collective_options o;
  o.codec = s.codec;
  o.timeout = 2s;
  o.channel = kChannel;
  switch (s.c) {
    case coll::ring: return as_averager(ring_allreduce::create(t, s.count, o));
    case coll::butterfly: return as_averager(butterfly_allreduce::create(t, s.count, o));
    case coll::sparse_allgather: return as_averager(sparse_allgather::create(t, s.count, o));
    case coll::neighbor: return as_averager(neighbor_average::create(t, s.count, o, sc.uniform));
    case coll::push_sum: return as_averager(push_sum::create(t, s.count, o, sc.push));
    case coll::noloco: return as_averager(noloco_pairing::create(t, s.count, o, 7));
  }
  return internal_error("unknown collective");
}

std::vector<float> input_of(rank_t r, std::size_t count) {
  std::vector<float> x(count);
  for (std::size_t i = 0; i < count; ++i) x[i] = static_cast<float>(i + 1) * (r == 0 ? 1.0f : 10.0f);
  return x;
}

struct message {
  tag_t tag = 0;
  bytes data;
};

// Forwards to a fabric endpoint and keeps a copy of every message it sends.
class recording_transport final : public forwarding_transport {
 public:
  using forwarding_transport::forwarding_transport;
  result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override {
    sent.push_back({tag, bytes(data.begin(), data.end())});
    return forwarding_transport::post_send(to, tag, data);
  }
  std::vector<message> sent;
};

struct honest_run {
  std::array<std::vector<message>, 2> sent;
  std::array<status, 2> st;
  std::array<std::vector<float>, 2> out;
};

// Both peers run the collective `calls` times (rounds 0, 1, ...) on threads.
honest_run run_honest(const setup& s, std::size_t calls = 1) {
  const schedules& sc = complete2();
  inproc_fabric f(2);
  honest_run h;
  test::run_peers(f, [&](rank_t r, transport& t) {
    recording_transport rt(t);
    auto a = make(s, rt, sc);
    if (!a.ok()) {
      h.st[r] = a.status();
      return;
    }
    for (std::size_t k = 0; k < calls && h.st[r].ok(); ++k) {
      h.out[r] = input_of(r, s.count);
      h.st[r] = (*a)->average(h.out[r], k);
    }
    h.sent[r] = std::move(rt.sent);
  });
  return h;
}

// Rank 0 runs the collective for real. Rank 1 is a script: before rank 0 starts it posts
// a receive for every tag in `tags0` and sends `script`. The in-process fabric copies when
// a send meets its receive, so one thread suffices and rank 0 never waits for a deadline.
status replay(const setup& s, const std::vector<message>& script, const std::vector<tag_t>& tags0,
              std::span<float> data, std::span<float> residual) {
  inproc_fabric f(2);
  transport& t1 = f.endpoint(1);
  std::vector<bytes> inbox(tags0.size(), bytes(std::size_t{1} << 16));
  std::vector<op> ops;
  for (std::size_t k = 0; k < tags0.size(); ++k) {
    auto o = t1.post_recv(0, tags0[k], inbox[k]);
    REQUIRE(o.ok());
    ops.push_back(*o);
  }
  for (const message& m : script) {
    auto o = t1.post_send(0, m.tag, m.data);
    REQUIRE(o.ok());
    ops.push_back(*o);
  }
  auto a = make(s, f.endpoint(0), complete2());
  REQUIRE(a.ok());
  status st = (*a)->average(data, 0, residual);
  for (op o : ops) t1.wait(o, deadline::min()).status().ignore();
  return st;
}

std::vector<tag_t> tags_of(const std::vector<message>& ms) {
  std::vector<tag_t> t;
  for (const auto& m : ms) t.push_back(m.tag);
  return t;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

}  // namespace

// ---- the real messages of every collective ---------------------------------------------

namespace {

// Rank 0's messages in an honest 2-peer run (channel 5, identity codec, count 3, rank 0
// holds {1, 2, 3}, rank 1 {10, 20, 30}, weight 1): tag, framing, codec payload. Chunks of
// 3 floats over 2 peers: rank 0 owns [0, 2), rank 1 owns [2, 3).
struct frozen_msg {
  tag_t tag;
  std::string_view framing;  // DTCH header or DTGS frame header; empty for the ring's bare payloads
  std::string_view payload;
};
struct frozen_run {
  coll c;
  std::vector<frozen_msg> msgs;
};

const std::vector<frozen_run>& frozen_runs() {
  // Identity codec payloads: count, no parameters, XXH3-64 checksum, fp32 values.
  static constexpr std::string_view p3 =  // {3}
      "44544350 01 01 01 00 0100000000000000 0000 0000 71d7d1783aeb7792 00004040";
  static constexpr std::string_view p55_11 =  // {5.5, 11}
      "44544350 01 01 01 00 0200000000000000 0000 0000 9e6a220c2bb8cff1 0000b040 00003041";
  static constexpr std::string_view p123 =  // {1, 2, 3}
      "44544350 01 01 01 00 0300000000000000 0000 0000 39d2866bd8b343ac 0000803f 00000040 00004040";
  static const std::vector<frozen_run> runs = {
      {coll::ring,
       {
           // metadata (step 1): weight 1, norm 0 (no clipping), no payload
           {0x0000050000000001, "44544348 01 01 0000 0000803f 00000000 00000000 00000000", ""},
           // reduce-scatter hop 0 (step 0x4000): rank 0's partial of chunk 1, bare
           {0x0000050000004000, "", p3},
           // all-gather hop 0 (step 0x8000): the mean of chunk 0, which rank 0 owns
           {0x0000050000008000, "", p55_11},
       }},
      {coll::butterfly,
       {
           // contribution (step 1) to owner 1: weight 1, then chunk 1 of the raw input
           {0x0000050000000001, "44544348 01 02 0000 0000803f 00000000 00000000 00000000", p3},
           // result (step 2) of chunk 0: W = 2, 2 contributors, 0 dropped, then the mean
           {0x0000050000000002, "44544348 01 03 0000 00000040 00000000 02000000 00000000", p55_11},
       }},
      {coll::sparse_allgather,
       {
           // gather (step 1): weight 1, then the whole vector
           {0x0000050000000001, "44544348 01 04 0000 0000803f 00000000 00000000 00000000", p123},
       }},
      {coll::neighbor,
       {
           // step 0: weight 1, one slot of 40 bytes
           {0x0000050000000000, "44544753 01 01 00 01 000000000000f03f 2800000000000000", p123},
       }},
      {coll::push_sum,
       {
           // step 0 (the call's first round): mass 1, one slot
           {0x0000050000000000, "44544753 01 02 00 01 000000000000f03f 2800000000000000", p123},
       }},
      {coll::noloco,
       {
           // step 0: weight 1, one slot (average(); average_pair() sends two)
           {0x0000050000000000, "44544753 01 03 00 01 000000000000f03f 2800000000000000", p123},
       }},
  };
  return runs;
}

}  // namespace

TEST_CASE("wire: every collective's messages are frozen", "[net][wire][format]") {
  for (const frozen_run& fr : frozen_runs()) {
    const setup s{fr.c, "identity", 3};
    CAPTURE(s.label());
    const honest_run h = run_honest(s, 2);
    REQUIRE(h.st[0].ok());
    REQUIRE(h.st[1].ok());
    const std::size_t per_call = fr.msgs.size();
    REQUIRE(h.sent[0].size() == 2 * per_call);
    for (std::size_t k = 0; k < per_call; ++k) {
      CAPTURE(k);
      CHECK(h.sent[0][k].tag == fr.msgs[k].tag);
      CHECK(hex(h.sent[0][k].data) == canon(fr.msgs[k].framing) + canon(fr.msgs[k].payload));
      // The second call runs under the next sequence number.
      CHECK(h.sent[0][per_call + k].tag == fr.msgs[k].tag + (tag_t{1} << 16));
    }
  }
}

TEST_CASE("wire: every truncation and single-byte corruption of a peer's message", "[net][wire][format]") {
  const setup s = GENERATE(values<setup>({
      {coll::ring, "identity", 3},
      {coll::ring, "fp16", 5},
      {coll::butterfly, "identity", 3},
      {coll::butterfly, "topk:chunk=4,k=2,values=f32", 7},
      {coll::sparse_allgather, "identity", 3},
      {coll::sparse_allgather, "topk:chunk=4,k=2,values=fp16", 7},
      {coll::neighbor, "identity", 3},
      {coll::neighbor, "minmax:bits=8", 5},
      {coll::push_sum, "identity", 3},
      {coll::noloco, "identity", 3},
  }));
  CAPTURE(s.label());
  const honest_run h = run_honest(s);
  REQUIRE(h.st[0].ok());
  REQUIRE(h.st[1].ok());
  const std::vector<tag_t> tags0 = tags_of(h.sent[0]);
  const std::vector<float> in0 = input_of(0, s.count);
  const std::vector<float> res_fill(s.count, -7.0f);

  // The replay of rank 1's own messages reproduces the threaded run bit for bit.
  {
    std::vector<float> x = in0, r = res_fill;
    REQUIRE(replay(s, h.sent[1], tags0, x, r).ok());
    CHECK(same_bits(x, h.out[0]));
  }

  std::size_t runs = 0, passed = 0;
  const auto run = [&](const std::vector<message>& script, verdict v) {
    std::vector<float> x = in0, r = res_fill;
    const status st = replay(s, script, tags0, x, r);
    ++runs;
    CAPTURE(verdict_name(v), st.to_string());
    if (v == verdict::accept) {
      // A changed value field: the run may go through with other numbers, or a later
      // check (a flag that contradicts the payload, impossible counts) refuses it.
      CHECK((st.ok() || st.code() == status_code::data_loss));
    } else if (v == verdict::payload) {
      CHECK(st.code() == status_code::data_loss);  // the codec's errors, named data_loss
    } else {
      CHECK(st.code() == code_of(v));
    }
    if (st.ok()) {
      ++passed;
      CHECK(all_finite(x));
    } else {
      CHECK(same_bits(x, in0));
      CHECK(same_bits(r, res_fill));
    }
  };

  for (std::size_t k = 0; k < h.sent[1].size(); ++k) {
    const bytes& m = h.sent[1][k].data;
    CAPTURE(k, hex(m));
    auto script = h.sent[1];
    for (std::size_t len = 0; len < m.size(); ++len) {
      CAPTURE(len);
      script[k].data.assign(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(len));
      run(script, truncation(m, len));
    }
    {
      script[k].data = m;
      script[k].data.push_back(std::byte{0});
      INFO("one byte too long");
      run(script, verdict::data_loss);
    }
    for (std::size_t off = 0; off < m.size(); ++off) {
      // Every single-bit flip, and the whole byte inverted.
      for (unsigned x : {0x01u, 0x02u, 0x04u, 0x08u, 0x10u, 0x20u, 0x40u, 0x80u, 0xFFu}) {
        script[k].data = m;
        script[k].data[off] ^= static_cast<std::byte>(x);
        CAPTURE(off, x);
        run(script, byte_verdict(m, off, script[k].data[off]));
      }
    }
    script[k].data = m;
  }
  std::size_t expected_runs = 0;
  for (const message& m : h.sent[1]) expected_runs += 10 * m.data.size() + 1;
  CHECK(runs == expected_runs);
  // Only value-field changes can pass.
  CHECK(passed * 4 < runs);
}

// ---- regressions found by tests/fuzz/net_collective_fuzz.cpp ----------------------------

namespace {

// The identity payload `p` with its fp32 values replaced and its checksum recomputed:
// bytes a broken or hostile peer can send, which only the values can give away.
bytes with_values(const bytes& p, std::initializer_list<float> v) {
  REQUIRE(p.size() == codec::payload_header_bytes + 4 * v.size());
  bytes out = p;
  std::size_t i = 0;
  for (float x : v) store_le<float>(out.data() + codec::payload_header_bytes + 4 * i++, x);
  codec::seal_payload(out);
  return out;
}

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

}  // namespace

TEST_CASE("wire: a peer's NaN or Inf never becomes a result", "[net][wire][regression]") {
  // Before the fix the ring returned ok with the NaN of an all-gather payload in the data,
  // failed an Inf partial with invalid_argument (blaming the caller), and the butterfly
  // returned ok with the NaN of an owner's result.
  struct edit {
    setup s;
    std::size_t msg;   // which of rank 1's messages
    std::size_t at;    // where its identity payload starts
    std::initializer_list<float> values;
  };
  const edit edits[] = {
      {{coll::ring, "identity", 3}, 2, 0, {kNaN}},              // all-gather: the owner's mean of chunk 1
      {{coll::ring, "identity", 3}, 1, 0, {kInf, 1.0f}},        // reduce-scatter: the partial of chunk 0
      {{coll::butterfly, "identity", 3}, 1, 24, {kNaN}},        // result of owner 1
      {{coll::butterfly, "identity", 3}, 1, 24, {-kInf}},
  };
  for (const edit& e : edits) {
    CAPTURE(e.s.label(), e.msg);
    const honest_run h = run_honest(e.s);
    REQUIRE(h.st[0].ok());
    REQUIRE(h.st[1].ok());
    auto script = h.sent[1];
    bytes& m = script[e.msg].data;
    const bytes head(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(e.at));
    m = concat(head, with_values(bytes(m.begin() + static_cast<std::ptrdiff_t>(e.at), m.end()), e.values));
    const std::vector<float> in0 = input_of(0, e.s.count);
    std::vector<float> x = in0;
    const status st = replay(e.s, script, tags_of(h.sent[0]), x, {});
    CHECK(st.code() == status_code::data_loss);
    CHECK(same_bits(x, in0));
  }
}

TEST_CASE("wire: NoLoCo refuses a weight beyond fp32", "[net][wire][regression]") {
  // Before the fix a frame weight of 1e300 (finite in f64) became +Inf in fp32 and tripped
  // plan_weights()' assertion: a peer could abort the process.
  const setup s{coll::noloco, "identity", 3};
  const honest_run h = run_honest(s);
  REQUIRE(h.st[1].ok());
  const std::vector<float> in0 = input_of(0, s.count);
  for (double w : {1e300, static_cast<double>(std::numeric_limits<float>::max()) * 2.0, 0x1p100}) {
    CAPTURE(w);
    auto script = h.sent[1];
    store_le<double>(script[0].data.data() + 8, w);
    std::vector<float> x = in0;
    const status st = replay(s, script, tags_of(h.sent[0]), x, {});
    if (w == 0x1p100) {
      // Fits fp32: rank 1's vector dominates, and fl(2^100 x1 + x0) / fl(2^100 + 1) is x1.
      REQUIRE(st.ok());
      CHECK(x == input_of(1, s.count));
    } else {
      CHECK(st.code() == status_code::data_loss);
      CHECK(same_bits(x, in0));
    }
  }
}
