// noloco_pairing: the seeded grouping (a re-implementation of the documented
// Fisher-Yates, partitions, determinism, balance) and the group averages on real threads:
// exact (weighted) means, bit-identical members, average_pair() == two average() calls,
// lossy codecs, non-finite inputs and failures.
#include "dtrain/net/noloco_pairing.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <set>
#include <vector>

#include "dtrain/codec/registry.h"
#include "dtrain/core/rng.h"
#include "dtrain/net/transport_inproc.h"
#include "net_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace std::chrono_literals;
using test::run_peers;
using test::same_bits;

namespace {

using vecs = std::vector<std::vector<float>>;

// The documented pairing, written out independently: Fisher-Yates from the top with
// counter_rng(seed, round).next_below(i + 1), then consecutive pairs, the last three
// together when n is odd.
std::vector<std::vector<rank_t>> spec_groups(std::size_t n, std::uint64_t seed, std::uint64_t round) {
  std::vector<rank_t> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<rank_t>(i);
  counter_rng rng(seed, round);
  for (std::size_t i = n - 1; i >= 1; --i) {
    const std::size_t j = rng.next_below(static_cast<std::uint32_t>(i + 1));
    std::swap(p[i], p[j]);
  }
  std::vector<std::vector<rank_t>> g;
  std::size_t i = 0;
  if (n == 1) return {{0}};
  for (; i + 3 < n || (n % 2 == 0 && i < n); i += 2) g.push_back({p[i], p[i + 1]});
  if (n % 2 == 1) g.push_back({p[n - 3], p[n - 2], p[n - 1]});
  for (auto& v : g) std::sort(v.begin(), v.end());
  return g;
}

}  // namespace

TEST_CASE("noloco: groups follow the documented permutation and partition the peers", "[net][noloco]") {
  for (std::size_t n = 1; n <= 17; ++n) {
    for (std::uint64_t round = 0; round < 6; ++round) {
      CAPTURE(n, round);
      const auto groups = noloco_groups(n, 1234, round);
      const auto spec = spec_groups(n, 1234, round);
      REQUIRE(groups.size() == spec.size());
      std::vector<int> seen(n, 0);
      std::vector<rank_t> scratch(n);
      for (std::size_t k = 0; k < groups.size(); ++k) {
        const auto ranks = groups[k].ranks();
        CHECK(std::vector<rank_t>(ranks.begin(), ranks.end()) == spec[k]);
        CHECK(std::is_sorted(ranks.begin(), ranks.end()));
        const std::size_t expect_size = n == 1 ? 1 : (n % 2 == 1 && k + 1 == groups.size()) ? 3 : 2;
        CHECK(groups[k].size == expect_size);
        for (rank_t r : ranks) {
          ++seen[r];
          CHECK(noloco_group_of(1234, round, r, scratch) == groups[k]);
        }
      }
      CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
    }
  }
}

TEST_CASE("noloco: pairings change with the round, repeat with the seed, and are balanced", "[net][noloco]") {
  const std::size_t n = 16;
  CHECK(noloco_groups(n, 7, 3) == noloco_groups(n, 7, 3));
  CHECK(noloco_groups(n, 7, 3) != noloco_groups(n, 8, 3));
  std::set<std::vector<rank_t>> distinct;
  for (std::uint64_t r = 0; r < 20; ++r) {
    std::vector<rank_t> flat;
    for (const auto& g : noloco_groups(n, 7, r)) flat.insert(flat.end(), g.ranks().begin(), g.ranks().end());
    distinct.insert(flat);
  }
  CHECK(distinct.size() == 20);
  // Over many rounds, peer 0's partner is close to uniform over the other three (n = 4).
  std::vector<rank_t> scratch(4);
  std::vector<int> hits(4, 0);
  const int rounds = 3000;
  for (int r = 0; r < rounds; ++r) {
    const auto g = noloco_group_of(99, static_cast<std::uint64_t>(r), 0, scratch);
    REQUIRE(g.size == 2);
    ++hits[g.members[0] == 0 ? g.members[1] : g.members[0]];
  }
  CHECK(hits[0] == 0);
  for (int p = 1; p < 4; ++p) CHECK(hits[p] == Approx(rounds / 3.0).epsilon(0.08));
}

TEST_CASE("noloco: every group ends with its exact (weighted) mean, bit-identical", "[net][noloco]") {
  const std::size_t n = GENERATE(2, 3, 5, 8);
  const bool weighted = GENERATE(false, true);
  const std::uint64_t round = GENERATE(0, 9);
  const std::size_t count = 23;
  CAPTURE(n, weighted, round);
  counter_rng rng(n, round);
  vecs x(n, std::vector<float>(count));
  for (auto& v : x)
    for (float& e : v) e = static_cast<float>(static_cast<int>(rng.next_below(20001)) - 10000);
  std::vector<float> w(n, 1.0f);
  if (weighted)
    for (std::size_t r = 0; r < n; ++r) w[r] = static_cast<float>(r % 4);  // includes listeners (0)
  const auto out = test::average_on_peers(
      n,
      [&](rank_t r, transport& t) {
        collective_options o;
        o.weight = w[r];
        return noloco_pairing::create(t, count, o, 42);
      },
      x, /*want_residual=*/true, round);
  const auto groups = noloco_groups(n, 42, round);
  for (const auto& g : groups) {
    double wsum = 0;
    for (rank_t r : g.ranks()) wsum += w[r];
    const bool plain = wsum == 0;  // every member a listener: the plain mean
    if (plain) wsum = static_cast<double>(g.size);
    for (std::size_t k = 0; k < count; ++k) {
      double s = 0;  // exact: small integers times small weights
      for (rank_t r : g.ranks()) s += (plain ? 1.0 : w[r]) * x[r][k];
      const auto expect = static_cast<float>(s / wsum);  // = fl(S / W) for exact S and W
      for (rank_t r : g.ranks()) {
        CAPTURE(r, k);
        REQUIRE(out[r].st.ok());
        CHECK(out[r].data[k] == expect);
      }
    }
    for (rank_t r : g.ranks()) {
      CHECK(same_bits(out[r].data, out[g.members[0]].data));
      CHECK(out[r].residual == std::vector<float>(count, 0.0f));
      CHECK(out[r].report.contributors == (plain ? g.size : static_cast<std::size_t>(std::count_if(
                                                                g.ranks().begin(), g.ranks().end(),
                                                                [&](rank_t m) { return w[m] > 0; }))));
      // One frame to each other member; what r receives is what the others sent it.
      std::uint64_t in = 0;
      for (rank_t m : g.ranks())
        if (m != r) in += out[m].report.bytes_sent / (g.size - 1);
      CHECK(out[r].report.bytes_received == in);
      CHECK(out[r].report.bytes_sent > 0);
    }
  }
}

TEST_CASE("noloco: partner_of and group_of agree with the pairing", "[net][noloco]") {
  const std::size_t n = 5;
  inproc_fabric f(n);
  for (rank_t r = 0; r < n; ++r) {
    auto p = noloco_pairing::create(f.endpoint(r), 4, {}, 77);
    REQUIRE(p.ok());
    CHECK((*p)->name() == "noloco_pair");
    CHECK_FALSE((*p)->exact_consensus());
    for (std::uint64_t round = 0; round < 8; ++round) {
      const noloco_group g = (*p)->group_of(round);
      CHECK(g.contains(r));
      const auto partner = (*p)->partner_of(round);
      if (g.size == 2) {
        REQUIRE(partner.has_value());
        CHECK(*partner != r);
        CHECK(g.contains(*partner));
      } else {
        CHECK_FALSE(partner.has_value());
      }
    }
  }
}

TEST_CASE("noloco: average_pair equals two average() calls with the same round", "[net][noloco]") {
  const std::size_t n = GENERATE(4, 7);
  const std::size_t count = 19;
  const std::string spec = GENERATE(std::string("identity"), std::string("fp16"), std::string("minmax:bits=4"));
  CAPTURE(n, spec);
  counter_rng rng(n);
  vecs a(n, std::vector<float>(count)), b(n, std::vector<float>(count));
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t k = 0; k < count; ++k) {
      a[r][k] = rng.next_normal();
      b[r][k] = 100.0f * rng.next_normal();
    }
  std::vector<float> w(n);
  for (std::size_t r = 0; r < n; ++r) w[r] = static_cast<float>(r + 1);
  const auto make = [&](rank_t r, transport& t) {
    collective_options o;
    o.codec = spec;
    o.weight = w[r];
    return noloco_pairing::create(t, count, o, 5);
  };
  vecs a1 = a, b1 = b, ra1(n, std::vector<float>(count)), rb1 = ra1;
  vecs a2 = a, b2 = b, ra2 = ra1, rb2 = ra1;
  std::vector<status> st1(n), st2(n);
  {
    inproc_fabric f(n);
    run_peers(f, [&](rank_t r, transport& t) {
      auto p = make(r, t);
      st1[r] = p.ok() ? (*p)->average_pair(a1[r], b1[r], 3, ra1[r], rb1[r]) : p.status();
    });
  }
  {
    inproc_fabric f(n);
    run_peers(f, [&](rank_t r, transport& t) {
      auto p = make(r, t);
      if (!p.ok()) {
        st2[r] = p.status();
        return;
      }
      st2[r] = (*p)->average(a2[r], 3, ra2[r]);
      if (st2[r].ok()) st2[r] = (*p)->average(b2[r], 3, rb2[r]);
    });
  }
  auto c = codec::make_codec(spec);
  REQUIRE(c.ok());
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r);
    REQUIRE(st1[r].ok());
    REQUIRE(st2[r].ok());
    CHECK(same_bits(a1[r], a2[r]));
    CHECK(same_bits(b1[r], b2[r]));
    CHECK(same_bits(ra1[r], ra2[r]));
    CHECK(same_bits(rb1[r], rb2[r]));
    // The residual is exactly the input minus its own decoded payload.
    std::vector<std::byte> buf((*c)->max_encoded_bytes(count));
    auto len = (*c)->encode(a[r], buf);
    REQUIRE(len.ok());
    std::vector<float> dec(count);
    REQUIRE((*c)->decode(std::span(buf).first(*len), dec).ok());
    for (std::size_t k = 0; k < count; ++k) CHECK(ra1[r][k] == a[r][k] - dec[k]);
  }
  // Group members agree bit for bit.
  for (const auto& g : noloco_groups(n, 5, 3))
    for (rank_t r : g.ranks()) {
      CHECK(same_bits(a1[r], a1[g.members[0]]));
      CHECK(same_bits(b1[r], b1[g.members[0]]));
    }
}

TEST_CASE("noloco: non-finite inputs", "[net][noloco]") {
  const std::size_t n = 2, count = 4;
  vecs x = {{1, 2, 3, 4}, {5, 6, 7, 8}};
  x[1][2] = std::numeric_limits<float>::quiet_NaN();
  SECTION("reject_nonfinite: both members end with the finite one") {
    const auto out = test::average_on_peers(
        n, [&](rank_t, transport& t) { return noloco_pairing::create(t, count, {}, 0); }, x, true);
    for (std::size_t r = 0; r < n; ++r) {
      REQUIRE(out[r].st.ok());
      CHECK(out[r].data == x[0]);
      CHECK(out[r].report.dropped == 1);
      CHECK(out[r].report.contributors == 1);
    }
    // The dropped member's residual is its whole input (none of it was delivered).
    CHECK(out[1].residual[0] == 5.0f);
    CHECK(std::isnan(out[1].residual[2]));
    CHECK(out[0].residual == std::vector<float>(count, 0.0f));
  }
  SECTION("average_pair drops per vector") {
    vecs b = {{10, 10, 10, 10}, {20, 20, 20, 20}};
    vecs a = x;
    std::vector<status> st(n);
    inproc_fabric f(n);
    run_peers(f, [&](rank_t r, transport& t) {
      auto p = noloco_pairing::create(t, count, {}, 0);
      st[r] = p.ok() ? (*p)->average_pair(a[r], b[r], 0) : p.status();
    });
    for (std::size_t r = 0; r < n; ++r) {
      REQUIRE(st[r].ok());
      CHECK(a[r] == x[0]);
      CHECK(b[r] == std::vector<float>(count, 15.0f));
    }
  }
  SECTION("reject_nonfinite off: the NaN member fails, its partner aborts, data unchanged") {
    collective_options o;
    o.robust.reject_nonfinite = false;
    const auto out = test::average_on_peers(
        n, [&](rank_t, transport& t) { return noloco_pairing::create(t, count, o, 0); }, x, true);
    CHECK(out[1].st.code() == status_code::invalid_argument);
    CHECK(out[0].st.code() == status_code::aborted);
    CHECK(out[0].data == x[0]);
    CHECK(out[0].residual == std::vector<float>(count, -7.0f));
  }
  SECTION("every member non-finite: invalid_argument") {
    vecs y = x;
    y[0][0] = std::numeric_limits<float>::infinity();
    const auto out = test::average_on_peers(
        n, [&](rank_t, transport& t) { return noloco_pairing::create(t, count, {}, 0); }, y);
    for (std::size_t r = 0; r < n; ++r) CHECK(out[r].st.code() == status_code::invalid_argument);
  }
}

TEST_CASE("noloco: failures and arguments", "[net][noloco]") {
  SECTION("killed partner: aborted, data unchanged") {
    const std::size_t n = 4, count = 5;
    const auto groups = noloco_groups(n, 11, 0);
    const rank_t victim = groups[0].members[0], partner = groups[0].members[1];
    inproc_fabric f(n);
    f.kill(victim);
    vecs x(n, std::vector<float>(count));
    for (std::size_t r = 0; r < n; ++r) std::fill(x[r].begin(), x[r].end(), static_cast<float>(r));
    collective_options o;
    o.timeout = 20000ms;
    const auto out = test::average_on_peers(
        f, [&](rank_t, transport& t) { return noloco_pairing::create(t, count, o, 11); }, x, true);
    CHECK(out[partner].st.code() == status_code::aborted);
    CHECK(out[partner].data == x[partner]);
    CHECK(out[partner].residual == std::vector<float>(count, -7.0f));
    CHECK(out[victim].st.code() == status_code::aborted);
    for (rank_t r : groups[1].ranks()) CHECK(out[r].st.ok());  // the other pair is unaffected
  }
  SECTION("crash mid-run (after its first send): the partner fails, not hangs") {
    const std::size_t n = 2, count = 3;
    inproc_fabric f(n);
    test::crashing_transport crashing(f, 1, 0);
    vecs x = {{1, 1, 1}, {3, 3, 3}};
    std::vector<status> st(n);
    collective_options o;
    o.timeout = 20000ms;
    run_peers(f, [&](rank_t r, transport& t) {
      transport& use = r == 1 ? static_cast<transport&>(crashing) : t;
      auto p = noloco_pairing::create(use, count, o, 1);
      st[r] = p.ok() ? (*p)->average(x[r], 0) : p.status();
    });
    CHECK(st[0].code() == status_code::aborted);
    CHECK(st[1].code() == status_code::aborted);
    CHECK(x[0] == std::vector<float>{1, 1, 1});
  }
  SECTION("lone node and tiny counts") {
    inproc_fabric f(1);
    auto p = noloco_pairing::create(f.endpoint(0), 2, {}, 1);
    REQUIRE(p.ok());
    std::vector<float> v = {3, 4}, res = {9, 9};
    REQUIRE((*p)->average(v, 0, res).ok());
    CHECK(v == std::vector<float>{3, 4});
    CHECK(res == std::vector<float>{0, 0});
    CHECK((*p)->group_of(5).size == 1);
    const std::size_t count = GENERATE(0, 1);
    const auto out = test::average_on_peers(
        3, [&](rank_t, transport& t) { return noloco_pairing::create(t, count, {}, 2); },
        vecs{std::vector<float>(count, 0.0f), std::vector<float>(count, 3.0f), std::vector<float>(count, 6.0f)});
    for (const auto& o : out) {
      REQUIRE(o.st.ok());
      for (float e : o.data) CHECK(e == 3.0f);  // n = 3: one triple
    }
  }
  SECTION("create() and average() validate") {
    inproc_fabric f(2);
    collective_options o;
    o.robust.clip_to_median_norm = true;
    CHECK(noloco_pairing::create(f.endpoint(0), 4, o, 0).status().code() == status_code::invalid_argument);
    o = {};
    o.robust.trim_fraction = 0.25;
    CHECK(noloco_pairing::create(f.endpoint(0), 4, o, 0).status().code() == status_code::invalid_argument);
    o = {};
    o.weight = std::numeric_limits<float>::quiet_NaN();
    CHECK(noloco_pairing::create(f.endpoint(0), 4, o, 0).status().code() == status_code::invalid_argument);
    o = {};
    o.channel = 1u << 24;
    CHECK(noloco_pairing::create(f.endpoint(0), 4, o, 0).status().code() == status_code::invalid_argument);
    auto p = noloco_pairing::create(f.endpoint(0), 4, {}, 0);
    REQUIRE(p.ok());
    std::vector<float> bad(3), good(4), bad_res(1);
    CHECK((*p)->average(bad, 0).code() == status_code::invalid_argument);
    CHECK((*p)->average(good, 0, bad_res).code() == status_code::invalid_argument);
    CHECK((*p)->average_pair(good, bad, 0).code() == status_code::invalid_argument);
  }
}
