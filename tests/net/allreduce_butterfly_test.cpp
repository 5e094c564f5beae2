// Butterfly all-reduce: Gloo's exact-sum grid, every accepted codec against a one-thread
// replay of the documented owner arithmetic, weights, dropped / clipped / trimmed peers,
// residuals, crashes, garbage, back-to-back runs and three collectives in flight at once.
#include "dtrain/net/allreduce_butterfly.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "dtrain/codec/registry.h"
#include "dtrain/core/rng.h"
#include "dtrain/net/allreduce_ring.h"
#include "dtrain/net/sparse_allgather.h"
#include "net_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace dtrain::net::test;
using namespace std::chrono_literals;

namespace {

auto bfly_maker(const collective_options& o, std::size_t count) {
  return [o, count](rank_t, transport& t) { return butterfly_allreduce::create(t, count, o); };
}

struct piece {
  std::size_t off, len;
};
piece chunk(std::size_t count, std::size_t n, std::size_t j) {
  return {j * (count / n) + std::min(j, count % n), count / n + (j < count % n ? 1 : 0)};
}

// The documented arithmetic on one thread, with one codec instance per peer used in the
// same order as the peer (its n chunks, then its own result): owner j decodes every
// contribution, sums fl(w_i * d_i) in rank order from +0 (skipping w_i == 0), divides by
// W and round-trips the mean through its codec.
std::vector<float> replay_butterfly(const std::vector<std::vector<float>>& x, const std::vector<float>& w,
                                    const std::string& spec) {
  const std::size_t n = x.size(), count = x[0].size();
  std::vector<std::unique_ptr<codec::codec>> cs;
  for (std::size_t i = 0; i < n; ++i) cs.push_back(std::move(codec::make_codec(spec)).value());
  std::vector<std::vector<std::vector<std::byte>>> pay(n, std::vector<std::vector<std::byte>>(n));
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      const piece p = chunk(count, n, j);
      pay[i][j].resize(cs[i]->max_encoded_bytes(p.len));
      auto len = cs[i]->encode(std::span(x[i]).subspan(p.off, p.len), pay[i][j]);
      REQUIRE(len.ok());
      pay[i][j].resize(*len);
    }
  float W = 0.0f;
  for (float v : w) W += v;
  std::vector<float> out(count);
  for (std::size_t j = 0; j < n; ++j) {
    const piece p = chunk(count, n, j);
    std::vector<float> acc(p.len, 0.0f), d(p.len);
    for (std::size_t i = 0; i < n; ++i) {
      REQUIRE(cs[j]->decode(pay[i][j], d).ok());
      if (w[i] != 0.0f)
        for (std::size_t k = 0; k < p.len; ++k) acc[k] += w[i] * d[k];
    }
    for (auto& v : acc) v = v / W;
    std::vector<std::byte> buf(cs[j]->max_encoded_bytes(p.len));
    auto len = cs[j]->encode(acc, buf);
    REQUIRE(len.ok());
    REQUIRE(cs[j]->decode(std::span(buf).first(*len), std::span(out).subspan(p.off, p.len)).ok());
  }
  return out;
}

}  // namespace

TEST_CASE("butterfly: identity gives fl(exact_sum / n) on every peer (Gloo exact-sum grid)") {
  const std::size_t n = GENERATE(range(1, 10));
  const std::size_t count = GENERATE(values<std::size_t>({0, 1, 7, 1000, 100003}));
  CAPTURE(n, count);
  const auto x = exact_sum_inputs(n, count);
  const auto out = average_on_peers(n, bfly_maker(opts("identity"), count), x);
  check_exact_sum_result(out, n, count);
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r);
    // Bytes: every chunk but its own out and back in, each with a 24-byte header
    // (identity payload: 28 + 4 len bytes).
    std::size_t own = 24 + 28 + 4 * chunk(count, n, r).len, all = 0;
    for (std::size_t j = 0; j < n; ++j) all += 24 + 28 + 4 * chunk(count, n, j).len;
    CHECK(out[r].report.bytes_sent == (all - own) + (n - 1) * own);
    CHECK(out[r].report.bytes_received == (n - 1) * own + (all - own));
  }
}

TEST_CASE("butterfly: a lossy codec over the whole grid is bit-identical and matches the replay") {
  const std::size_t n = GENERATE(range(1, 10));
  const std::size_t count = GENERATE(values<std::size_t>({0, 1, 7, 1000, 100003}));
  CAPTURE(n, count);
  const auto x = exact_sum_inputs(n, count);
  const auto out = average_on_peers(n, bfly_maker(opts("bf16"), count), x);
  check_all_ok(out);
  const auto expect = replay_butterfly(x, std::vector<float>(n, 1.0f), "bf16");
  for (std::size_t r = 0; r < n; ++r) CHECK(same_bits(out[r].data, expect));
  // Two bf16 roundings (the contribution, the mean), each within 2^-8 relative, of values
  // below M = i n + n.
  CHECK(worst_exact_sum_error(out[0].data, n) <= 2.0 * std::ldexp(1.0, -8));
}

TEST_CASE("butterfly: every accepted codec gives bit-identical results that match the replay") {
  struct codec_case {
    const char* spec;
    double rms_tol;  // RMS error vs the exact mean (data RMS about 1), measured x 1.5
  };
  const codec_case cc = GENERATE(values<codec_case>({
      {"identity", 1e-7},
      {"fp16", 1e-3},
      {"bf16", 5e-3},
      {"minmax:bits=8", 1e-2},
      {"minmax:bits=4,rounding=stochastic", 0.35},
      {"blockwise:bits=8,block=256", 1e-2},
      {"blockwise:bits=4,block=64", 0.2},
      {"uniform8", 3e-2},
      {"quantile8", 5e-2},
      {"fp4:block=128", 0.3},
      {"topk:chunk=64,k=16,values=fp16", 0.8},
      {"topk:chunk=64,k=8,values=q2", 1.0},
      {"randomk:chunk=64,k=32,seed=3", 1.0},  // keeps about 1/4: half, then half of the mean
      {"sign", 1.0},
      {"dct_topk:chunk=16,k=8,values=fp16", 0.6},
  }));
  const auto shape = GENERATE(values<std::pair<std::size_t, std::size_t>>({{2, 1}, {3, 1000}, {4, 4099}, {7, 7}}));
  const auto [n, count] = shape;
  CAPTURE(cc.spec, n, count);
  const auto x = noisy_inputs(n, count, 13);
  const std::vector<float> w(n, 1.0f);
  const auto out = average_on_peers(n, bfly_maker(opts(cc.spec), count), x, true);
  check_all_ok(out);
  const auto expect = replay_butterfly(x, w, cc.spec);
  for (std::size_t r = 0; r < n; ++r) CHECK(same_bits(out[r].data, expect));
  CHECK(rms_error(out[0].data, exact_mean(x, w)) <= cc.rms_tol);
  // Residual: x - D(C(x[chunk j])), replayed with a fresh codec used in the same order.
  for (std::size_t r = 0; r < n; ++r) {
    auto c = std::move(codec::make_codec(cc.spec)).value();
    for (std::size_t j = 0; j < n; ++j) {
      const piece p = chunk(count, n, j);
      std::vector<std::byte> buf(c->max_encoded_bytes(p.len));
      auto len = c->encode(std::span(x[r]).subspan(p.off, p.len), buf);
      REQUIRE(len.ok());
      std::vector<float> d(p.len);
      REQUIRE(c->decode(std::span(buf).first(*len), d).ok());
      for (std::size_t k = 0; k < p.len; ++k) REQUIRE(out[r].residual[p.off + k] == x[r][p.off + k] - d[k]);
    }
  }
}

TEST_CASE("butterfly: weights") {
  const std::size_t n = 4, count = 1001;
  SECTION("hivemind weights (0.15, 0, 0.35, 0.45)") {
    const auto x = noisy_inputs(n, count, 5);
    const auto& w = kHivemindWeights;
    const auto out = average_on_peers(
        n, [&](rank_t r, transport& t) { return butterfly_allreduce::create(t, count, opts("identity", w[r])); }, x);
    check_hivemind_weights(out, x, replay_butterfly(x, w, "identity"));
  }
  SECTION("all weights zero: the plain mean") {
    const auto out = average_on_peers(n, bfly_maker(opts("identity", 0.0f), count), exact_sum_inputs(n, count));
    check_all_ok(out);
    for (std::size_t i = 0; i < count; ++i) REQUIRE(out[1].data[i] == exact_sum_mean(n, i));
  }
}

TEST_CASE("butterfly: non-finite contributions") {
  const std::size_t n = 4, count = 999;
  SECTION("a NaN peer is dropped: the mean of the others") {
    auto x = exact_sum_inputs(n, count);
    x[2][17] = std::numeric_limits<float>::quiet_NaN();
    const auto out = average_on_peers(n, bfly_maker(opts("identity"), count), x, true);
    check_all_ok(out);
    for (std::size_t r = 0; r < n; ++r) {
      CHECK(out[r].report.dropped == 1);
      CHECK(out[r].report.contributors == 3);
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < count; ++i) wrong += out[r].data[i] != static_cast<float>(3 * i * n + 4) / 3.0f;
      CHECK(wrong == 0);
    }
    CHECK(std::isnan(out[2].residual[17]));
    CHECK(out[2].residual[0] == x[2][0]);
  }
  SECTION("an fp16 overflow drops that peer from one chunk only") {
    auto x = exact_sum_inputs(n, count);
    for (auto& v : x) for (auto& e : v) e /= 1024.0f;  // exact, and small enough for fp16
    x[1][0] = 1e6f;                                     // finite, but Inf in fp16: chunk 0 only
    const auto out = average_on_peers(n, bfly_maker(opts("fp16"), count), x);
    check_all_ok(out);
    CHECK(out[0].report.dropped == 1);
    CHECK(out[0].report.contributors == 3);
    const piece c0 = chunk(count, n, 0);
    auto tame = x;
    tame[1][0] = 0.0f;  // the replay cannot encode Inf; chunks 1.. do not depend on it
    const auto ref = replay_butterfly(tame, {1, 1, 1, 1}, "fp16");
    for (std::size_t i = c0.len; i < count; ++i) REQUIRE(out[3].data[i] == ref[i]);
    auto others = x;
    others.erase(others.begin() + 1);
    const auto m = exact_mean(others, {1, 1, 1});
    for (std::size_t i = 0; i < c0.len; ++i) REQUIRE(out[3].data[i] == Approx(m[i]).epsilon(2e-3));
  }
  SECTION("reject_nonfinite off: invalid_argument on every peer, data unchanged") {
    auto x = exact_sum_inputs(n, count);
    x[0][998] = -std::numeric_limits<float>::infinity();
    auto o = opts("identity");
    o.robust.reject_nonfinite = false;
    const auto out = average_on_peers(n, bfly_maker(o, count), x);
    for (std::size_t r = 0; r < n; ++r) {
      CHECK(out[r].st.code() == status_code::invalid_argument);
      CHECK(same_bits(out[r].data, x[r]));
    }
  }
  SECTION("every peer non-finite: nothing to average") {
    auto x = exact_sum_inputs(n, count);
    for (auto& v : x) v[5] = std::numeric_limits<float>::quiet_NaN();
    const auto out = average_on_peers(n, bfly_maker(opts("identity"), count), x);
    for (std::size_t r = 0; r < n; ++r) CHECK(out[r].st.code() == status_code::invalid_argument);
  }
}

TEST_CASE("butterfly: median-norm clipping per chunk") {
  const std::size_t n = 5, count = 300;
  auto x = noisy_inputs(n, count, 9);
  for (auto& v : x[3]) v *= 1000.0f;
  auto o = opts("identity");
  o.robust.clip_to_median_norm = true;
  const auto out = average_on_peers(n, bfly_maker(o, count), x);
  check_all_ok(out);
  for (std::size_t j = 0; j < n; ++j) {
    const piece p = chunk(count, n, j);
    std::vector<double> norms(n);
    for (std::size_t r = 0; r < n; ++r) {
      double s = 0;
      for (std::size_t k = 0; k < p.len; ++k) s += static_cast<double>(x[r][p.off + k]) * x[r][p.off + k];
      norms[r] = std::sqrt(s);
    }
    auto sorted = norms;
    std::sort(sorted.begin(), sorted.end());
    const double med = sorted[(n - 1) / 2];
    for (std::size_t k = 0; k < p.len; ++k) {
      double m = 0;
      for (std::size_t r = 0; r < n; ++r) m += (norms[r] > med ? med / norms[r] : 1.0) * x[r][p.off + k] / 5.0;
      REQUIRE(out[2].data[p.off + k] == Approx(m).margin(1e-5));
    }
  }
}

TEST_CASE("butterfly: the trimmed mean ignores one outlier peer") {
  const std::size_t n = 5, count = 257;
  auto x = noisy_inputs(n, count, 21);
  for (auto& v : x[4]) v += 1e4f;  // the outlier, largest at every coordinate
  auto o = opts("identity");
  o.robust.trim_fraction = 0.2;  // floor(0.2 * 5) = 1 from each end
  const auto out = average_on_peers(n, bfly_maker(o, count), x);
  check_all_ok(out);
  for (std::size_t k = 0; k < count; ++k) {
    std::vector<float> v;
    for (std::size_t r = 0; r < n; ++r) v.push_back(x[r][k]);
    std::sort(v.begin(), v.end());
    const float expect = ((0.0f + v[1]) + v[2] + v[3]) / 3.0f;
    REQUIRE(out[0].data[k] == expect);
    REQUIRE(std::abs(out[0].data[k]) < 10.0f);
  }
  for (std::size_t r = 1; r < n; ++r) CHECK(same_bits(out[r].data, out[0].data));
}

TEST_CASE("butterfly: a peer crashing mid-run fails every survivor with data unchanged") {
  const std::size_t n = 4, count = 4000;
  // Rank 1 sends its contributions (sends 0..2), then its results (3..5). A crash at 4
  // could let rank 0 finish legitimately (it already holds every result), so stop at 3.
  const std::size_t crash_at = GENERATE(values<std::size_t>({0, 2, 3}));
  CAPTURE(crash_at);
  const auto x = exact_sum_inputs(n, count);
  inproc_fabric f(n);
  auto o = opts("fp16");
  o.timeout = 150ms;
  crashing_transport wrap(f, 1, crash_at);
  const auto out = average_on_peers(
      f,
      [&](rank_t r, transport& t) {
        return butterfly_allreduce::create(r == 1 ? static_cast<transport&>(wrap) : t, count, o);
      },
      x, true);
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r, out[r].st.to_string());
    CHECK((out[r].st.code() == status_code::aborted || out[r].st.code() == status_code::deadline_exceeded));
    CHECK(same_bits(out[r].data, x[r]));
    CHECK(std::all_of(out[r].residual.begin(), out[r].residual.end(), [](float v) { return v == -7.0f; }));
  }
}

TEST_CASE("butterfly: garbage from a fake peer is data_loss on every honest peer") {
  const std::size_t n = 4, count = 40;  // chunks of 10
  const rank_t fake = 3;
  const bool valid_header = GENERATE(false, true);
  CAPTURE(valid_header);
  const auto x = exact_sum_inputs(n, count);
  auto o = opts("fp16");
  o.timeout = 2s;  // the honest peers' notices end the run long before this
  o.channel = 9;
  // The fake's contribution for every owner: 24-byte header + a 10-float fp16 payload
  // (48 bytes), either all garbage or a valid header with one payload bit flipped.
  std::vector<std::byte> msg(24 + 48);
  counter_rng g(77);
  for (auto& b : msg) b = static_cast<std::byte>(g.next_u32());
  if (valid_header) {
    const std::uint32_t magic = 0x48435444u;
    const float weight = 1.0f;
    std::fill(msg.begin(), msg.begin() + 24, std::byte{0});
    std::memcpy(msg.data(), &magic, 4);
    msg[4] = std::byte{1};
    msg[5] = std::byte{2};
    std::memcpy(msg.data() + 8, &weight, 4);
    auto c = std::move(codec::make_codec("fp16")).value();
    std::vector<float> ones(10, 1.0f);
    REQUIRE(c->encode(ones, std::span(msg).subspan(24)).ok());
    msg[24 + 28 + 3] ^= std::byte{0x10};  // a body byte: the checksum catches it
  }
  inproc_fabric f(n);
  std::vector<peer_outcome> out(n);
  run_peers(f, [&](rank_t r, transport& t) {
    if (r != fake) {
      out[r].data = x[r];
      auto b = butterfly_allreduce::create(t, count, o);
      out[r].st = b.ok() ? (*b)->average(out[r].data, 0) : b.status();
      return;
    }
    // Plays its part of both steps with garbage, so nobody waits for it.
    std::vector<std::byte> in(6 * 128);
    std::vector<op> ops;
    for (rank_t p = 0; p < 3; ++p) {
      ops.push_back(*t.post_recv(p, make_tag(o.channel, 0, 1), std::span(in).subspan(p * 128, 128)));
      ops.push_back(*t.post_recv(p, make_tag(o.channel, 0, 2), std::span(in).subspan((3 + p) * 128, 128)));
      ops.push_back(*t.post_send(p, make_tag(o.channel, 0, 1), msg));
      ops.push_back(*t.post_send(p, make_tag(o.channel, 0, 2), msg));
    }
    wait_all(t, ops, after(2s)).ignore();
  });
  for (rank_t r = 0; r < 3; ++r) {
    CAPTURE(r, out[r].st.to_string());
    CHECK(out[r].st.code() == status_code::data_loss);
    CHECK(same_bits(out[r].data, x[r]));
  }
}

TEST_CASE("butterfly: back-to-back runs, and three collectives in flight on one transport") {
  const std::size_t n = 4, count = 513;
  inproc_fabric f(n);
  std::vector<std::vector<std::vector<float>>> got(n);  // [rank][run]
  std::vector<status> st(n);
  run_peers(f, [&](rank_t r, transport& t) {
    auto o1 = opts("identity"), o2 = opts("identity"), o3 = opts("identity");
    o1.channel = 1;
    o2.channel = 2;
    o3.channel = 3;
    auto ring = ring_allreduce::create(t, count, o1);
    auto bfly = butterfly_allreduce::create(t, count, o2);
    auto sag = sparse_allgather::create(t, count, o3);
    if (!ring.ok() || !bfly.ok() || !sag.ok()) {
      st[r] = internal_error("create failed");
      return;
    }
    std::vector<std::vector<float>> data(9, exact_sum_input(n, r, count));
    for (std::size_t run = 0; run < 3; ++run) {
      // The three run at once, on their own threads; each then runs again.
      std::vector<status> s(3);
      std::thread a([&] { s[0] = (*ring)->average(data[3 * run + 0], run); });
      std::thread b([&] { s[1] = (*bfly)->average(data[3 * run + 1], run); });
      s[2] = (*sag)->average(data[3 * run + 2], run);
      a.join();
      b.join();
      for (auto& e : s)
        if (!e.ok() && st[r].ok()) st[r] = e;
    }
    got[r] = data;
  });
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r, st[r].to_string());
    REQUIRE(st[r].ok());
    for (const auto& v : got[r]) {
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < count; ++i) wrong += v[i] != exact_sum_mean(n, i);
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("butterfly: create() and average() refuse bad arguments") {
  inproc_fabric f(3);
  transport& t = f.endpoint(0);
  auto r = butterfly_allreduce::create(t, 16, opts("powersgd:rows=4,cols=4"));
  CHECK(r.status().code() == status_code::invalid_argument);
  CHECK(butterfly_allreduce::create(t, 16, opts("ef:inner=topk")).status().code() == status_code::invalid_argument);
  for (double trim : {-0.1, 0.5, 0.7}) {
    auto o = opts("identity");
    o.robust.trim_fraction = trim;
    CHECK(butterfly_allreduce::create(t, 16, o).status().code() == status_code::invalid_argument);
  }
  CHECK(butterfly_allreduce::create(t, 16, opts("identity", std::nanf(""))).status().code() ==
        status_code::invalid_argument);
  for (const auto& spec : codec::default_specs()) {
    if (spec.starts_with("powersgd")) continue;
    CAPTURE(spec);
    CHECK(butterfly_allreduce::create(t, 16, opts(std::string(spec))).ok());
  }
  auto b = butterfly_allreduce::create(t, 16, opts("topk"));
  REQUIRE(b.ok());
  CHECK((*b)->name() == "butterfly");
  CHECK((*b)->exact_consensus());
  std::vector<float> wrong(17), data(16), res(15);
  CHECK((*b)->average(wrong, 0).code() == status_code::invalid_argument);
  CHECK((*b)->average(data, 0, res).code() == status_code::invalid_argument);
}
