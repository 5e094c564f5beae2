// Sparse all-gather: exact identity means, every codec against a one-thread replay of
// the rank-ordered decode, coincident vs all means, dropped and clipped peers, residuals,
// crashes, garbage and create() errors.
#include "dtrain/net/sparse_allgather.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "dtrain/codec/codec_randomk.h"
#include "dtrain/codec/registry.h"
#include "dtrain/core/rng.h"
#include "net_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace dtrain::net::test;
using namespace std::chrono_literals;

namespace {

auto sag_maker(const collective_options& o, std::size_t count, sparse_mean m = sparse_mean::all) {
  return [o, count, m](rank_t, transport& t) { return sparse_allgather::create(t, count, o, m); };
}

// D(C(x)) as a peer would send it (randomk keyed by `round`).
std::vector<float> round_trip(const std::string& spec, std::span<const float> x, std::uint64_t round) {
  auto c = std::move(codec::make_codec(spec)).value();
  if (auto* rk = dynamic_cast<codec::randomk_codec*>(c.get())) rk->set_round(round);
  std::vector<std::byte> buf(c->max_encoded_bytes(x.size()));
  auto len = c->encode(x, buf);
  REQUIRE(len.ok());
  std::vector<float> d(x.size());
  REQUIRE(c->decode(std::span(buf).first(*len), d).ok());
  return d;
}

// The documented reduction on one thread: decode in rank order, fp32 sums from +0.
std::vector<float> replay(const std::vector<std::vector<float>>& x, const std::vector<float>& w,
                          const std::string& spec, sparse_mean mean, std::uint64_t round) {
  const std::size_t count = x[0].size();
  std::vector<float> acc(count, 0.0f), ws(count, 0.0f);
  float W = 0.0f;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto d = round_trip(spec, x[i], round);
    W += w[i];
    if (w[i] == 0.0f) continue;
    for (std::size_t k = 0; k < count; ++k) {
      if (mean == sparse_mean::coincident && d[k] == 0.0f) continue;
      acc[k] += w[i] * d[k];
      ws[k] += w[i];
    }
  }
  for (std::size_t k = 0; k < count; ++k)
    acc[k] = mean == sparse_mean::all ? acc[k] / W : (ws[k] > 0.0f ? acc[k] / ws[k] : 0.0f);
  return acc;
}

}  // namespace

TEST_CASE("sparse_allgather: identity gives fl(exact_sum / n) on every peer") {
  const std::size_t n = GENERATE(values<std::size_t>({1, 2, 3, 5, 9}));
  const std::size_t count = GENERATE(values<std::size_t>({0, 1, 7, 1000, 100003}));
  CAPTURE(n, count);
  const auto x = exact_sum_inputs(n, count);
  const auto out = average_on_peers(n, sag_maker(opts("identity"), count), x);
  check_all_ok(out);
  for (std::size_t r = 0; r < n; ++r) {
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < count; ++i) wrong += out[r].data[i] != exact_sum_mean(n, i);
    CHECK(wrong == 0);
    const std::size_t msg = 24 + 28 + 4 * count;  // header + identity payload
    CHECK(out[r].report.bytes_sent == (n - 1) * msg);
    CHECK(out[r].report.bytes_received == (n - 1) * msg);
    CHECK(out[r].report.contributors == n);
  }
}

TEST_CASE("sparse_allgather: every codec, both means: bit-identical and equal to the replay") {
  const std::string spec = GENERATE(values<std::string>({
      "topk:chunk=64,k=4,values=fp16",
      "topk:chunk=4096,k=64,values=q2",
      "dct_topk:chunk=16,k=2,values=fp16",
      "randomk:chunk=64,k=8,seed=5",
      "sign:block=32",
      "fp16",
      "powersgd:rows=50,cols=20,rank=2",
  }));
  const sparse_mean mean = GENERATE(sparse_mean::all, sparse_mean::coincident);
  const std::size_t n = GENERATE(values<std::size_t>({1, 3, 4}));
  const std::size_t count = 1000;
  const std::uint64_t round = 7;
  CAPTURE(spec, static_cast<int>(mean), n);
  const auto x = noisy_inputs(n, count, 3);
  std::vector<float> w(n);
  for (std::size_t r = 0; r < n; ++r) w[r] = 0.5f + 0.25f * static_cast<float>(r);
  const auto out = average_on_peers(
      n, [&](rank_t r, transport& t) { return sparse_allgather::create(t, count, opts(spec, w[r]), mean); }, x, true,
      round);
  check_all_ok(out);
  const auto expect = replay(x, w, spec, mean, round);
  for (std::size_t r = 0; r < n; ++r) {
    CHECK(same_bits(out[r].data, expect));
    // Residual: exactly x - D(C(x)).
    const auto d = round_trip(spec, x[r], round);
    for (std::size_t k = 0; k < count; ++k) REQUIRE(out[r].residual[k] == x[r][k] - d[k]);
  }
}

TEST_CASE("sparse_allgather: coincident vs all means") {
  const std::size_t n = 3;
  SECTION("identity with explicit zeros") {
    const std::vector<std::vector<float>> x{{1, 0, 3, 0}, {3, 0, 0, 0}, {0, 0, 6, 0}};
    const std::vector<float> w{1, 2, 1};
    auto make = [&](sparse_mean m) {
      return [&, m](rank_t r, transport& t) { return sparse_allgather::create(t, 4, opts("identity", w[r]), m); };
    };
    const auto co = average_on_peers(n, make(sparse_mean::coincident), x);
    const auto al = average_on_peers(n, make(sparse_mean::all), x);
    check_all_ok(co);
    check_all_ok(al);
    CHECK(co[1].data == std::vector<float>{7.0f / 3.0f, 0.0f, 9.0f / 2.0f, 0.0f});
    CHECK(al[1].data == std::vector<float>{7.0f / 4.0f, 0.0f, 9.0f / 4.0f, 0.0f});
  }
  SECTION("top-1 of 4") {
    const std::vector<std::vector<float>> x{{5, 1, 0, 0}, {0, 0, -7, 1}, {4, 0, 0, 0}};
    const auto co = average_on_peers(n, sag_maker(opts("topk:chunk=4,k=1,values=f32"), 4, sparse_mean::coincident), x);
    const auto al = average_on_peers(n, sag_maker(opts("topk:chunk=4,k=1,values=f32"), 4, sparse_mean::all), x);
    check_all_ok(co);
    check_all_ok(al);
    CHECK(co[0].data == std::vector<float>{4.5f, 0.0f, -7.0f, 0.0f});
    CHECK(al[2].data == std::vector<float>{3.0f, 0.0f, -7.0f / 3.0f, 0.0f});
  }
}

TEST_CASE("sparse_allgather: dropped and clipped contributions") {
  const std::size_t n = 4, count = 512;
  SECTION("a NaN peer is dropped by everyone") {
    auto x = noisy_inputs(n, count, 8);
    x[3][100] = std::numeric_limits<float>::quiet_NaN();
    const auto out = average_on_peers(n, sag_maker(opts("topk:chunk=64,k=8"), count), x, true);
    check_all_ok(out);
    auto others = x;
    others.pop_back();
    const auto expect = replay(others, {1, 1, 1}, "topk:chunk=64,k=8", sparse_mean::all, 0);
    for (std::size_t r = 0; r < n; ++r) {
      CHECK(same_bits(out[r].data, expect));
      CHECK(out[r].report.dropped == 1);
      CHECK(out[r].report.contributors == 3);
    }
    CHECK(std::isnan(out[3].residual[100]));
  }
  SECTION("a payload that decodes to Inf (fp16 overflow) is dropped by everyone") {
    auto x = noisy_inputs(n, count, 8);
    x[1][3] = 1e6f;
    const auto out = average_on_peers(n, sag_maker(opts("fp16"), count), x);
    check_all_ok(out);
    auto others = x;
    others.erase(others.begin() + 1);
    const auto expect = replay(others, {1, 1, 1}, "fp16", sparse_mean::all, 0);
    for (std::size_t r = 0; r < n; ++r) {
      CHECK(same_bits(out[r].data, expect));
      CHECK(out[r].report.dropped == 1);
    }
  }
  SECTION("reject_nonfinite off: invalid_argument everywhere, data unchanged") {
    auto x = noisy_inputs(n, count, 8);
    x[0][0] = std::numeric_limits<float>::infinity();
    auto o = opts("topk:chunk=64,k=8");
    o.robust.reject_nonfinite = false;
    const auto out = average_on_peers(n, sag_maker(o, count), x);
    for (std::size_t r = 0; r < n; ++r) {
      CHECK(out[r].st.code() == status_code::invalid_argument);
      CHECK(same_bits(out[r].data, x[r]));
    }
  }
  SECTION("median-norm clipping of one huge peer") {
    auto x = noisy_inputs(n, count, 8);
    for (auto& v : x[2]) v *= 500.0f;
    auto o = opts("topk:chunk=64,k=8,values=f32");
    o.robust.clip_to_median_norm = true;
    const auto out = average_on_peers(n, sag_maker(o, count), x);
    check_all_ok(out);
    std::vector<std::vector<float>> d;
    std::vector<double> norms;
    for (std::size_t r = 0; r < n; ++r) {
      d.push_back(round_trip("topk:chunk=64,k=8,values=f32", x[r], 0));
      double s = 0;
      for (float v : d.back()) s += static_cast<double>(v) * v;
      norms.push_back(std::sqrt(s));
    }
    auto sorted = norms;
    std::sort(sorted.begin(), sorted.end());
    const double med = sorted[(n - 1) / 2];
    for (std::size_t k = 0; k < count; ++k) {
      double m = 0;
      for (std::size_t r = 0; r < n; ++r) m += (norms[r] > med ? med / norms[r] : 1.0) * d[r][k] / 4.0;
      REQUIRE(out[0].data[k] == Approx(m).margin(1e-5));
    }
  }
}

TEST_CASE("sparse_allgather: a peer crashing mid-run fails every survivor with data unchanged") {
  const std::size_t n = 4, count = 2048;
  const std::size_t crash_at = GENERATE(values<std::size_t>({0, 1, 2}));
  CAPTURE(crash_at);
  const auto x = noisy_inputs(n, count, 4);
  inproc_fabric f(n);
  auto o = opts("topk:chunk=64,k=8");
  o.timeout = 150ms;
  crashing_transport wrap(f, 2, crash_at);
  const auto out = average_on_peers(
      f,
      [&](rank_t r, transport& t) {
        return sparse_allgather::create(r == 2 ? static_cast<transport&>(wrap) : t, count, o);
      },
      x, true);
  // Rank 2 dies before finishing its sends. A peer that already holds every payload may
  // legitimately finish (with the full mean); every other one fails, data unchanged.
  const auto expect = replay(x, std::vector<float>(n, 1.0f), "topk:chunk=64,k=8", sparse_mean::all, 0);
  std::size_t failed = 0;
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r, out[r].st.to_string());
    if (out[r].st.ok()) {
      CHECK(same_bits(out[r].data, expect));
      continue;
    }
    ++failed;
    CHECK((out[r].st.code() == status_code::aborted || out[r].st.code() == status_code::deadline_exceeded));
    CHECK(same_bits(out[r].data, x[r]));
    CHECK(std::all_of(out[r].residual.begin(), out[r].residual.end(), [](float v) { return v == -7.0f; }));
  }
  // Rank 2 itself and rank 3 (its last receiver) always fail; with a crash before the
  // first send nobody can finish.
  CHECK(!out[2].st.ok());
  CHECK(!out[3].st.ok());
  if (crash_at == 0) CHECK(failed == n);
}

TEST_CASE("sparse_allgather: garbage from a fake peer is data_loss with data unchanged") {
  const std::size_t n = 3, count = 100;
  const rank_t fake = 1;
  const auto x = noisy_inputs(n, count, 4);
  auto o = opts("topk:chunk=64,k=8");
  o.timeout = 2s;
  std::vector<std::byte> junk(24 + 40);
  counter_rng g(5);
  for (auto& b : junk) b = static_cast<std::byte>(g.next_u32());
  inproc_fabric f(n);
  std::vector<peer_outcome> out(n);
  run_peers(f, [&](rank_t r, transport& t) {
    if (r != fake) {
      out[r].data = x[r];
      auto s = sparse_allgather::create(t, count, o);
      out[r].st = s.ok() ? (*s)->average(out[r].data, 0) : s.status();
      return;
    }
    std::vector<std::byte> in(2 * 512);
    std::vector<op> ops;
    for (rank_t p : {rank_t{0}, rank_t{2}}) {
      ops.push_back(*t.post_recv(p, make_tag(0, 0, 1), std::span(in).subspan(p * 256, 512)));
      ops.push_back(*t.post_send(p, make_tag(0, 0, 1), junk));
    }
    wait_all(t, ops, after(2s)).ignore();
  });
  for (rank_t r : {rank_t{0}, rank_t{2}}) {
    CAPTURE(r, out[r].st.to_string());
    CHECK(out[r].st.code() == status_code::data_loss);
    CHECK(out[r].st.message().find("rank 1") != std::string::npos);
    CHECK(same_bits(out[r].data, x[r]));
  }
}

TEST_CASE("sparse_allgather: create() refuses bad arguments") {
  inproc_fabric f(2);
  transport& t = f.endpoint(1);
  auto o = opts("topk");
  o.robust.trim_fraction = 0.1;
  CHECK(sparse_allgather::create(t, 100, o).status().code() == status_code::invalid_argument);
  CHECK(sparse_allgather::create(t, 100, opts("ef:inner=topk")).status().code() == status_code::invalid_argument);
  CHECK(sparse_allgather::create(t, 100, opts("powersgd:rows=10,cols=11")).status().code() ==
        status_code::invalid_argument);
  auto ok = sparse_allgather::create(t, 110, opts("powersgd:rows=10,cols=11"), sparse_mean::coincident);
  REQUIRE(ok.ok());
  CHECK((*ok)->name() == "sparse_allgather");
  CHECK((*ok)->mean() == sparse_mean::coincident);
  CHECK((*ok)->exact_consensus());
  std::vector<float> wrong(109);
  CHECK((*ok)->average(wrong, 0).code() == status_code::invalid_argument);
}
