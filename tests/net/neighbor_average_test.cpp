// neighbor_average: D-PSGD gossip rounds on real threads over the in-process fabric,
// checked against closed forms (one-peer exponential exactness, BlueFog's neighbour
// sums), a double-precision simulation of x <- Wx, the spectral bound, hand-computed
// robust aggregates, and the wire format written by hand.
#include "dtrain/net/neighbor_average.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "dtrain/codec/registry.h"
#include "dtrain/core/bytes.h"
#include "dtrain/core/rng.h"
#include "dtrain/net/transport_inproc.h"
#include "dtrain/topology/generators.h"
#include "dtrain/topology/spectral.h"
#include "net_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace std::chrono_literals;

namespace {

using test::run_peers;
using test::require_all_ok;

topology::schedule static_of(result<topology::graph> g, bool metropolis = false) {
  REQUIRE(g.ok());
  auto w = metropolis ? topology::metropolis_hastings(*g) : topology::uniform_weights(*g);
  REQUIRE(w.ok());
  return topology::static_schedule(std::move(*w));
}

using vecs = std::vector<std::vector<float>>;

// Runs `rounds` rounds (starting at round 0) of neighbor_average on every peer; returns
// the statuses of the last call and leaves the data in x.
std::vector<status> gossip(const topology::schedule& s, vecs& x, std::size_t rounds, collective_options o = {},
                           neighbor_options no = {}, vecs* residual = nullptr,
                           std::vector<average_report>* reports = nullptr) {
  const std::size_t n = x.size();
  inproc_fabric f(n);
  std::vector<status> st(n);
  if (reports) reports->assign(n, {});
  run_peers(f, [&](rank_t r, transport& t) {
    auto a = neighbor_average::create(t, x[r].size(), o, s, no);
    if (!a.ok()) {
      st[r] = a.status();
      return;
    }
    for (std::size_t k = 0; k < rounds; ++k) {
      st[r] = (*a)->average(x[r], k, residual ? std::span<float>((*residual)[r]) : std::span<float>());
      if (!st[r].ok()) return;
    }
    if (reports) (*reports)[r] = (*a)->last_report();
  });
  return st;
}

}  // namespace

TEST_CASE("neighbor: one-peer exponential averages exactly in log2 n rounds", "[net][neighbor]") {
  const std::size_t n = GENERATE(2, 4, 8, 16);
  const bool random_ints = GENERATE(false, true);
  const std::size_t count = GENERATE(0, 1, 3, 37);
  CAPTURE(n, random_ints, count);
  counter_rng rng(7, n);
  vecs x(n, std::vector<float>(count));
  std::vector<double> mean(count, 0.0);
  for (std::size_t r = 0; r < n; ++r) {
    for (std::size_t k = 0; k < count; ++k) {
      x[r][k] = random_ints ? static_cast<float>(static_cast<int>(rng.next_below(2001)) - 1000)
                            : static_cast<float>(r);
      mean[k] += x[r][k];
    }
  }
  for (double& m : mean) m /= static_cast<double>(n);  // exact: n is a power of two
  const auto s = topology::one_peer_exponential(n);
  const std::size_t tau = topology::ceil_log2(n);
  std::vector<average_report> rep;
  require_all_ok(gossip(s, x, tau, {}, {}, nullptr, &rep));
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r);
    for (std::size_t k = 0; k < count; ++k) REQUIRE(x[r][k] == static_cast<float>(mean[k]));
    CHECK(rep[r].contributors == 2);
    CHECK(rep[r].dropped == 0);
    CHECK(rep[r].bytes_sent == rep[r].bytes_received);  // one frame out, one in, same size
  }
}

TEST_CASE("neighbor: BlueFog neighbour sums on exponential, rings and torus", "[net][neighbor]") {
  // Tensor = rank; with uniform weights 1/(indeg+1), result * (indeg+1) = rank + the sum of
  // the in-neighbours' ranks (peers.md (a) 8; BlueFog test/torch_ops_test.py).
  struct graph_case {
    const char* name;
    std::function<result<topology::graph>(std::size_t)> make;
    std::function<std::vector<std::size_t>(std::size_t, std::size_t)> in;  // in-neighbours of r
  };
  const std::vector<graph_case> cases = {
      {"exponential", [](std::size_t n) { return topology::exponential(n); },
       [](std::size_t n, std::size_t r) {
         std::vector<std::size_t> v;
         for (std::size_t h = 1; h < n; h *= 2) v.push_back((r + n - h % n) % n);
         return v;
       }},
      {"ring forward", [](std::size_t n) { return topology::ring(n); },
       [](std::size_t n, std::size_t r) { return std::vector<std::size_t>{(r + n - 1) % n}; }},
      {"ring backward",
       [](std::size_t n) {
         std::vector<std::pair<std::uint32_t, std::uint32_t>> e;
         for (std::uint32_t i = 0; i < n; ++i) e.emplace_back(i, static_cast<std::uint32_t>((i + n - 1) % n));
         return topology::from_edges(n, e);
       },
       [](std::size_t n, std::size_t r) { return std::vector<std::size_t>{(r + 1) % n}; }},
      {"bidirectional ring", [](std::size_t n) { return topology::bidirectional_ring(n); },
       [](std::size_t n, std::size_t r) {
         return std::vector<std::size_t>{(r + n - 1) % n, (r + 1) % n};
       }},
  };
  const std::size_t n = GENERATE(3, 5, 8, 16);
  for (const auto& c : cases) {
    CAPTURE(c.name, n);
    vecs x(n, std::vector<float>(3));
    for (std::size_t r = 0; r < n; ++r) std::fill(x[r].begin(), x[r].end(), static_cast<float>(r));
    require_all_ok(gossip(static_of(c.make(n)), x, 1));
    for (std::size_t r = 0; r < n; ++r) {
      const auto in = c.in(n, r);
      double expected = static_cast<double>(r);
      for (auto j : in) expected += static_cast<double>(j);
      CAPTURE(r);
      for (float v : x[r]) CHECK(v * static_cast<float>(in.size() + 1) == Approx(expected).epsilon(1e-6));
    }
  }
  SECTION("torus 3x4 and 4x4") {
    const std::size_t rows = GENERATE(3, 4);
    const std::size_t tn = rows * 4;
    auto g = topology::torus(tn, rows, 4);
    REQUIRE(g.ok());
    const auto in = g->in_neighbors();
    vecs x(tn, std::vector<float>(2));
    for (std::size_t r = 0; r < tn; ++r) std::fill(x[r].begin(), x[r].end(), static_cast<float>(r));
    require_all_ok(gossip(static_of(g), x, 1));
    for (std::size_t r = 0; r < tn; ++r) {
      double expected = static_cast<double>(r);
      for (auto j : in[r]) expected += j;
      CHECK(x[r][0] * static_cast<float>(in[r].size() + 1) == Approx(expected).epsilon(1e-6));
    }
  }
}

TEST_CASE("neighbor: random vectors follow x <- Wx and contract by rho per round", "[net][neighbor]") {
  struct topo {
    const char* name;
    topology::schedule s;
  };
  std::vector<topo> topos;
  topos.push_back({"bidirectional ring 8 (MH)", static_of(topology::bidirectional_ring(8), true)});
  topos.push_back({"torus 16 (MH)", static_of(topology::torus(16), true)});
  topos.push_back({"exponential 8 (uniform)", static_of(topology::exponential(8))});
  topos.push_back({"expander 12 d=3 (MH)", static_of(topology::random_regular(12, 3, 5), true)});
  topos.push_back({"small world 10 (MH, irregular)", static_of(topology::small_world(10, 4, 0.3, 2), true)});
  const std::size_t count = 33, rounds = 6;
  for (auto& tp : topos) {
    CAPTURE(tp.name);
    const std::size_t n = tp.s.n();
    const auto rho = topology::contraction(tp.s.at(0));
    REQUIRE(rho.ok());
    counter_rng rng(11, n);
    vecs x(n, std::vector<float>(count));
    for (auto& v : x)
      for (float& e : v) e = rng.next_normal();
    // Double-precision reference, one coordinate at a time.
    std::vector<std::vector<double>> ref(count, std::vector<double>(n));
    for (std::size_t k = 0; k < count; ++k)
      for (std::size_t r = 0; r < n; ++r) ref[k][r] = x[r][k];
    const auto disagreement = [&](const vecs& v) {
      double d = 0;
      for (std::size_t k = 0; k < count; ++k) {
        double m = 0;
        for (std::size_t r = 0; r < n; ++r) m += v[r][k];
        m /= static_cast<double>(n);
        for (std::size_t r = 0; r < n; ++r) d += (v[r][k] - m) * (v[r][k] - m);
      }
      return std::sqrt(d);
    };
    std::vector<double> mean0(count, 0.0);
    for (std::size_t k = 0; k < count; ++k)
      for (std::size_t r = 0; r < n; ++r) mean0[k] += x[r][k] / static_cast<double>(n);
    const double d0 = disagreement(x);
    require_all_ok(gossip(tp.s, x, rounds));
    for (std::size_t t = 0; t < rounds; ++t) {
      for (std::size_t k = 0; k < count; ++k) {
        std::vector<double> y(n);
        topology::apply(tp.s.at(t), ref[k], y);
        ref[k] = y;
      }
    }
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t k = 0; k < count; ++k) REQUIRE(x[r][k] == Approx(ref[k][r]).margin(1e-5));
    CHECK(disagreement(x) <= std::pow(*rho, static_cast<double>(rounds)) * d0 * (1 + 1e-5) + 1e-5);
    // Doubly stochastic W preserves the mean.
    for (std::size_t k = 0; k < count; ++k) {
      double m = 0;
      for (std::size_t r = 0; r < n; ++r) m += x[r][k] / static_cast<double>(n);
      CHECK(m == Approx(mean0[k]).margin(1e-6 * (1 + std::abs(mean0[k]))));
    }
  }
}

TEST_CASE("neighbor: lossy codec, residual and the self_decoded option", "[net][neighbor]") {
  const std::size_t n = 6, count = 41;
  const auto s = static_of(topology::bidirectional_ring(n), true);
  counter_rng rng(3);
  vecs x0(n, std::vector<float>(count));
  for (auto& v : x0)
    for (float& e : v) e = 10.0f * rng.next_normal();
  // What every neighbour decodes: fp16 round trip, computed here with the codec itself.
  auto c = codec::make_codec("fp16");
  REQUIRE(c.ok());
  vecs dec(n, std::vector<float>(count));
  for (std::size_t r = 0; r < n; ++r) {
    std::vector<std::byte> buf((*c)->max_encoded_bytes(count));
    auto len = (*c)->encode(x0[r], buf);
    REQUIRE(len.ok());
    REQUIRE((*c)->decode(std::span(buf).first(*len), dec[r]).ok());
  }
  collective_options o;
  o.codec = "fp16";
  const bool self_decoded = GENERATE(false, true);
  CAPTURE(self_decoded);
  vecs x = x0, res(n, std::vector<float>(count, -1.0f));
  require_all_ok(gossip(s, x, 1, o, {self_decoded}, &res));
  for (std::size_t r = 0; r < n; ++r) {
    const std::size_t lft = (r + n - 1) % n, rgt = (r + 1) % n;
    for (std::size_t k = 0; k < count; ++k) {
      CHECK(res[r][k] == x0[r][k] - dec[r][k]);
      const float own = self_decoded ? dec[r][k] : x0[r][k];
      // float(W(r, j)) * v_j summed from +0 in ascending peer order.
      float expect = 0.0f;
      std::vector<std::pair<std::size_t, float>> terms = {{lft, dec[lft][k]}, {r, own}, {rgt, dec[rgt][k]}};
      std::sort(terms.begin(), terms.end());
      for (auto& [j, v] : terms) expect += static_cast<float>(s.at(0)(r, j)) * v;
      CHECK(x[r][k] == expect);
    }
  }
  if (self_decoded) {
    // Doubly stochastic W: sum of outputs + residuals == sum of inputs (up to rounding).
    for (std::size_t k = 0; k < count; ++k) {
      double in = 0, out = 0;
      for (std::size_t r = 0; r < n; ++r) {
        in += x0[r][k];
        out += static_cast<double>(x[r][k]) + res[r][k];
      }
      CHECK(out == Approx(in).margin(1e-4));
    }
  }
}

TEST_CASE("neighbor: robust options over the neighbourhood", "[net][neighbor]") {
  SECTION("reject_nonfinite drops the NaN peer and renormalises the row") {
    const std::size_t n = 5;
    const auto s = static_of(topology::bidirectional_ring(n));
    vecs x(n, std::vector<float>(4));
    for (std::size_t r = 0; r < n; ++r) std::fill(x[r].begin(), x[r].end(), static_cast<float>(r + 1));
    x[2][1] = std::numeric_limits<float>::quiet_NaN();
    std::vector<average_report> rep;
    vecs res(n, std::vector<float>(4, -1.0f));
    require_all_ok(gossip(s, x, 1, {}, {}, &res, &rep));
    CHECK(res[1] == std::vector<float>(4, 0.0f));  // identity codec: nothing lost
    CHECK(res[2][0] == 3.0f);                      // dropped: the whole input
    CHECK(std::isnan(res[2][1]));
    // Rank 1: {1, 2, NaN} -> (1 + 2) / 2 with weights 1/3 renormalised to 1/2.
    const float h = static_cast<float>((1.0 / 3.0) / (2.0 / 3.0));
    CHECK(x[1][0] == h * 1.0f + h * 2.0f);
    CHECK(x[3][0] == h * 4.0f + h * 5.0f);
    CHECK(x[2][0] == h * 2.0f + h * 4.0f);  // the NaN node keeps its neighbours' mix
    CHECK(x[0][0] == static_cast<float>(1.0 / 3.0) * 1.0f + static_cast<float>(1.0 / 3.0) * 2.0f +
                         static_cast<float>(1.0 / 3.0) * 5.0f);
    CHECK(rep[1].dropped == 1);
    CHECK(rep[1].contributors == 2);
    CHECK(rep[2].dropped == 1);
    CHECK(rep[0].dropped == 0);
  }
  SECTION("reject_nonfinite off: the NaN node fails, its neighbours abort, data unchanged") {
    const std::size_t n = 5;
    const auto s = static_of(topology::bidirectional_ring(n));
    vecs x(n, std::vector<float>(4, 1.0f));
    x[2][3] = std::numeric_limits<float>::infinity();
    const vecs before = x;
    collective_options o;
    o.robust.reject_nonfinite = false;
    o.timeout = 5000ms;
    auto st = gossip(s, x, 1, o);
    CHECK(st[2].code() == status_code::invalid_argument);
    CHECK(st[1].code() == status_code::aborted);
    CHECK(st[3].code() == status_code::aborted);
    CHECK(st[0].ok());
    CHECK(st[4].ok());
    for (rank_t r : {1u, 3u}) CHECK(x[r] == before[r]);
    CHECK(std::isinf(x[2][3]));
  }
  SECTION("clip_to_median_norm") {
    const auto s = static_of(topology::complete(3));
    vecs x = {{1, 0}, {0, 2}, {30, 40}};  // norms 1, 2, 50: lower median 2
    collective_options o;
    o.robust.clip_to_median_norm = true;
    require_all_ok(gossip(s, x, 1, o));
    const float w = static_cast<float>(1.0 / 3.0);
    const float sc = 2.0f / 50.0f;
    for (std::size_t r = 0; r < 3; ++r) {
      CHECK(x[r][0] == ((0.0f + w * 1.0f) + w * 0.0f) + w * sc * 30.0f);
      CHECK(x[r][1] == ((0.0f + w * 0.0f) + w * 2.0f) + w * sc * 40.0f);
    }
  }
  SECTION("trimmed mean over the neighbourhood") {
    const std::size_t n = 5;
    const auto s = static_of(topology::complete(n));
    counter_rng rng(9);
    vecs x(n, std::vector<float>(16));
    for (auto& v : x)
      for (float& e : v) e = static_cast<float>(static_cast<int>(rng.next_below(100)));
    const vecs x0 = x;
    collective_options o;
    o.robust.trim_fraction = 0.2;  // m = 5 -> drop 1 at each end
    require_all_ok(gossip(s, x, 1, o));
    for (std::size_t k = 0; k < 16; ++k) {
      std::vector<float> col;
      for (std::size_t r = 0; r < n; ++r) col.push_back(x0[r][k]);
      std::sort(col.begin(), col.end());
      const float expect = (col[1] + col[2] + col[3]) / 3.0f;  // small integers: exact sum
      for (std::size_t r = 0; r < n; ++r) CHECK(x[r][k] == expect);
    }
  }
}

TEST_CASE("neighbor: failures leave the data unchanged", "[net][neighbor]") {
  const std::size_t n = 5;
  const auto s = static_of(topology::bidirectional_ring(n));
  collective_options o;
  o.timeout = 300ms;
  vecs x(n, std::vector<float>(8));
  for (std::size_t r = 0; r < n; ++r) std::fill(x[r].begin(), x[r].end(), static_cast<float>(r));
  const vecs before = x;
  std::vector<status> st(n);
  inproc_fabric f(n);

  SECTION("killed neighbour: aborted") {
    f.kill(2);
    o.timeout = 20000ms;  // the failure must come from the kill, not the deadline
    run_peers(f, [&](rank_t r, transport& t) {
      auto a = neighbor_average::create(t, 8, o, s);
      st[r] = a.ok() ? (*a)->average(x[r], 0) : a.status();
    });
    for (rank_t r : {1u, 2u, 3u}) {
      CAPTURE(r);
      CHECK(st[r].code() == status_code::aborted);
      CHECK(x[r] == before[r]);
    }
    CHECK(st[0].ok());
    CHECK(st[4].ok());
  }
  SECTION("silent neighbour: deadline_exceeded") {
    run_peers(f, [&](rank_t r, transport& t) {
      if (r == 2) return;  // never shows up
      auto a = neighbor_average::create(t, 8, o, s);
      std::vector<float> res(8, 7.0f);
      st[r] = a.ok() ? (*a)->average(x[r], 0, res) : a.status();
      if (!st[r].ok() && res != std::vector<float>(8, 7.0f)) st[r] = internal_error("residual touched");
    });
    for (rank_t r : {1u, 3u}) {
      CAPTURE(r, st[r].to_string());
      CHECK(st[r].code() == status_code::deadline_exceeded);
      CHECK(x[r] == before[r]);
    }
    CHECK(st[0].ok());
    CHECK(st[4].ok());
  }
}

TEST_CASE("neighbor: create() validates its arguments", "[net][neighbor]") {
  inproc_fabric f(4);
  transport& t = f.endpoint(0);
  const auto good = static_of(topology::bidirectional_ring(4));
  collective_options o;
  CHECK(neighbor_average::create(t, 4, o, good).ok());
  CHECK(neighbor_average::create(t, 4, o, static_of(topology::bidirectional_ring(5))).status().code() ==
        status_code::invalid_argument);
  CHECK(neighbor_average::create(t, 4, o, topology::schedule{}).status().code() == status_code::invalid_argument);
  auto bad = good;
  bad.rounds[0](1, 1) = 0.5;  // row 1 now sums to 7/6
  CHECK(neighbor_average::create(t, 4, o, bad).status().code() == status_code::invalid_argument);
  auto neg = good;
  neg.rounds[0](0, 0) = std::numeric_limits<double>::quiet_NaN();
  CHECK(neighbor_average::create(t, 4, o, neg).status().code() == status_code::invalid_argument);
  o.weight = 2.0f;
  CHECK(neighbor_average::create(t, 4, o, good).status().code() == status_code::invalid_argument);
  o = {};
  o.codec = "ef:beta=1,gamma=1,inner=fp16";
  CHECK(neighbor_average::create(t, 4, o, good).status().code() == status_code::invalid_argument);
  o = {};
  o.codec = "nonsense";
  CHECK(neighbor_average::create(t, 4, o, good).status().code() == status_code::invalid_argument);
  o = {};
  o.timeout = 0ms;
  CHECK(neighbor_average::create(t, 4, o, good).status().code() == status_code::invalid_argument);
  o = {};
  auto a = neighbor_average::create(t, 4, o, good);
  REQUIRE(a.ok());
  CHECK((*a)->name() == "neighbor");
  CHECK_FALSE((*a)->exact_consensus());
  CHECK((*a)->count() == 4);
  CHECK((*a)->view(0).send == std::vector<std::uint32_t>{1, 3});
  std::vector<float> wrong(3);
  CHECK((*a)->average(wrong, 0).code() == status_code::invalid_argument);
  std::vector<float> right(4), short_res(2);
  CHECK((*a)->average(right, 0, short_res).code() == status_code::invalid_argument);
}

TEST_CASE("neighbor: the gossip frame on the wire", "[net][neighbor][format]") {
  // Rank 1 of a 2-peer ring plays a hand-written peer: it builds frames per the layout in
  // docs/collectives.md and checks rank 0's frame the same way.
  const auto s = static_of(topology::bidirectional_ring(2));
  const std::size_t count = 5;
  auto c = codec::make_codec("identity");
  REQUIRE(c.ok());
  const std::vector<float> theirs = {10, 20, 30, 40, 50};
  std::vector<std::byte> payload((*c)->max_encoded_bytes(count));
  auto plen = (*c)->encode(theirs, payload);
  REQUIRE(plen.ok());
  payload.resize(*plen);

  const auto frame = [&](std::uint32_t magic, std::uint8_t version, std::uint8_t kind, std::uint8_t flags,
                         std::span<const std::byte> body) {
    std::vector<std::byte> m(24 + body.size());
    store_le<std::uint32_t>(m.data(), magic);
    store_le<std::uint8_t>(m.data() + 4, version);
    store_le<std::uint8_t>(m.data() + 5, kind);
    store_le<std::uint8_t>(m.data() + 6, flags);
    store_le<std::uint8_t>(m.data() + 7, 1);
    store_le<double>(m.data() + 8, 1.0);
    store_le<std::uint64_t>(m.data() + 16, body.size());
    if (!body.empty()) std::memcpy(m.data() + 24, body.data(), body.size());
    return m;
  };
  const std::uint32_t magic = 0x53475444u;  // "DTGS"
  auto corrupt = payload;
  corrupt[corrupt.size() - 1] ^= std::byte{0x40};
  struct variant {
    const char* name;
    std::vector<std::byte> msg;
    status_code expect;
  };
  const std::vector<variant> variants = {
      {"valid", frame(magic, 1, 1, 0, payload), status_code::ok},
      {"bad magic", frame(magic ^ 1u, 1, 1, 0, payload), status_code::data_loss},
      {"newer version", frame(magic, 2, 1, 0, payload), status_code::unimplemented},
      {"other collective", frame(magic, 1, 2, 0, payload), status_code::data_loss},
      {"unknown flag", frame(magic, 1, 1, 8, payload), status_code::data_loss},
      {"sender failed", frame(magic, 1, 1, 1, {}), status_code::aborted},
      {"corrupt payload", frame(magic, 1, 1, 0, corrupt), status_code::data_loss},
      {"truncated", std::vector<std::byte>(10), status_code::data_loss},
      {"longer than any frame", std::vector<std::byte>(4096), status_code::data_loss},
  };
  for (const auto& v : variants) {
    CAPTURE(v.name);
    inproc_fabric f(2);
    std::vector<float> mine = {1, 2, 3, 4, 5};
    status st0;
    std::vector<std::byte> got(256);
    std::size_t got_len = 0;
    run_peers(f, [&](rank_t r, transport& t) {
      if (r == 0) {
        auto a = neighbor_average::create(t, count, {}, s);
        st0 = a.ok() ? (*a)->average(mine, 0) : a.status();
        return;
      }
      const tag_t tag = make_tag(0, 0, 0);  // channel 0, first call, step 0
      auto n = recv(t, 0, tag, got, after(2000ms));
      got_len = n.ok() ? *n : 0;
      send(t, 0, tag, v.msg, after(2000ms)).ignore();
    });
    CHECK(st0.code() == v.expect);
    if (v.expect == status_code::ok) {
      CHECK(mine == std::vector<float>{5.5f, 11, 16.5f, 22, 27.5f});  // (x + theirs) / 2
    } else {
      CHECK(mine == std::vector<float>{1, 2, 3, 4, 5});
    }
    // Rank 0's own frame: header + the identity payload of its input.
    REQUIRE(got_len == 24 + payload.size());
    CHECK(load_le<std::uint32_t>(got.data()) == magic);
    CHECK(load_le<std::uint8_t>(got.data() + 4) == 1);
    CHECK(load_le<std::uint8_t>(got.data() + 5) == 1);
    CHECK(load_le<std::uint8_t>(got.data() + 6) == 0);
    CHECK(load_le<std::uint8_t>(got.data() + 7) == 1);
    CHECK(load_le<double>(got.data() + 8) == 1.0);
    CHECK(load_le<std::uint64_t>(got.data() + 16) == payload.size());
    std::vector<float> decoded(count);
    REQUIRE((*c)->decode(std::span(got).subspan(24, payload.size()), decoded).ok());
    CHECK(decoded == std::vector<float>{1, 2, 3, 4, 5});
  }
}

TEST_CASE("neighbor: report bytes match the transport's counters", "[net][neighbor]") {
  const std::size_t n = 8, count = 100;
  const auto s = static_of(topology::exponential(n));
  inproc_fabric f(n);
  std::vector<average_report> rep(n);
  std::vector<transport_stats> stats(n);
  std::vector<status> st(n);
  run_peers(f, [&](rank_t r, transport& t) {
    collective_options o;
    o.codec = "minmax:bits=4";
    auto a = neighbor_average::create(t, count, o, s);
    std::vector<float> x(count, static_cast<float>(r));
    st[r] = a.ok() ? (*a)->average(x, 0) : a.status();
    if (a.ok()) rep[r] = (*a)->last_report();
  });
  require_all_ok(st);
  for (std::size_t r = 0; r < n; ++r) {
    const auto ts = f.endpoint(static_cast<rank_t>(r)).stats();
    CHECK(rep[r].bytes_sent == ts.total_sent());
    CHECK(rep[r].bytes_received == ts.total_received());
    CHECK(rep[r].contributors == 4);  // itself + 3 in-neighbours
  }
}
