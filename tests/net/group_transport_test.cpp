// group_transport: member-list checks, rank mapping over a subset, per-view byte counters,
// abort/reset reaching the inner endpoint, a ring all-reduce over a permutation that
// sends along the permuted ring (checked with the inner per-peer byte counters), and two
// disjoint replica groups averaging at once.
#include "dtrain/net/group_transport.h"

#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dtrain/net/allreduce_ring.h"
#include "net_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace dtrain::net::test;
using namespace std::chrono_literals;

namespace {

std::vector<std::unique_ptr<group_transport>> views_over(inproc_fabric& f, const std::vector<rank_t>& members) {
  std::vector<std::unique_ptr<group_transport>> v(f.size());
  for (rank_t m : members) {
    auto g = group_transport::create(f.endpoint(m), members);
    REQUIRE(g.ok());
    v[m] = std::move(*g);
  }
  return v;
}

}  // namespace

TEST_CASE("group_transport: create refuses bad member lists") {
  inproc_fabric f(4);
  transport& t = f.endpoint(2);
  using list = std::vector<rank_t>;
  const list bad = GENERATE(list{}, list{2, 4}, list{0, 2, 0}, list{0, 1, 3}, list{2, 2});
  CAPTURE(bad);
  auto g = group_transport::create(t, bad);
  REQUIRE_FALSE(g.ok());
  CHECK(g.status().code() == status_code::invalid_argument);

  auto ok = group_transport::create(t, list{3, 2});
  REQUIRE(ok.ok());
  CHECK((*ok)->size() == 2);
  CHECK((*ok)->rank() == 1);
  CHECK((*ok)->inner_rank(0) == 3);
  CHECK((*ok)->view_rank(3) == 0);
  CHECK((*ok)->view_rank(0) == 2);  // not a member: size()
  CHECK((*ok)->view_rank(99) == 2);
}

TEST_CASE("group_transport: a subset maps ranks both ways and reports bytes in view ranks") {
  inproc_fabric f(5);
  const std::vector<rank_t> members{4, 1, 3};  // view 0 = inner 4, 1 = 1, 2 = 3
  auto v = views_over(f, members);
  const std::size_t k = members.size();
  // Every member sends to every other member a message of (5 + 10 * its view rank) bytes
  // holding its inner rank, and checks what it receives.
  struct seen {
    status st;
    std::vector<std::size_t> len;
    std::vector<int> from_inner;
  };
  std::vector<seen> out(5);
  run_peers(f, [&](rank_t r, transport&) {
    if (!v[r]) return;
    group_transport& g = *v[r];
    seen& s = out[r];
    s.len.assign(k, 0);
    s.from_inner.assign(k, -1);
    std::vector<std::byte> msg(5 + 10 * g.rank(), static_cast<std::byte>(r));
    std::vector<std::vector<std::byte>> in(k, std::vector<std::byte>(64));
    std::vector<op> ops;
    for (rank_t p = 0; p < k; ++p) {
      if (p == g.rank()) continue;
      auto o = g.post_recv(p, make_tag(1, 0, 0), in[p]);
      if (!o.ok()) return void(s.st = o.status());
      ops.push_back(*o);
    }
    for (rank_t p = 0; p < k; ++p) {
      if (p == g.rank()) continue;
      auto o = g.post_send(p, make_tag(1, 0, 0), msg);
      if (!o.ok()) return void(s.st = o.status());
      ops.push_back(*o);
    }
    std::size_t i = 0;
    for (rank_t p = 0; p < k; ++p) {
      if (p == g.rank()) continue;
      auto n = g.wait(ops[i++], after(10s));
      if (!n.ok()) return void(s.st = n.status());
      s.len[p] = *n;
      s.from_inner[p] = std::to_integer<int>(in[p][0]);
    }
    s.st = wait_all(g, std::span(ops).subspan(i), after(10s));
  });
  for (rank_t m : members) {
    const group_transport& g = *v[m];
    CAPTURE(m, out[m].st.to_string());
    REQUIRE(out[m].st.ok());
    const auto st = g.stats();
    REQUIRE(st.sent.size() == k);
    for (rank_t p = 0; p < k; ++p) {
      if (p == g.rank()) {
        CHECK(st.sent[p] == 0);
        continue;
      }
      CHECK(out[m].len[p] == 5 + 10 * p);
      CHECK(out[m].from_inner[p] == static_cast<int>(members[p]));
      CHECK(st.sent[p] == 5 + 10 * g.rank());
      CHECK(st.received[p] == 5 + 10 * p);
    }
  }
  // The non-members saw nothing.
  CHECK(f.endpoint(0).stats().total_sent() == 0);
  CHECK(f.endpoint(2).stats().total_received() == 0);

  SECTION("bad peers are refused without posting") {
    group_transport& g = *v[1];  // view rank 1
    std::byte b[4] = {};
    for (rank_t bad : {rank_t{1}, rank_t{3}, rank_t{100}}) {
      CAPTURE(bad);
      auto s = g.post_send(bad, 0, b);
      REQUIRE_FALSE(s.ok());
      CHECK(s.status().code() == status_code::invalid_argument);
      auto rr = g.post_recv(bad, 0, b);
      REQUIRE_FALSE(rr.ok());
      CHECK(rr.status().code() == status_code::invalid_argument);
    }
  }
}

TEST_CASE("group_transport: abort and reset act on the inner endpoint") {
  inproc_fabric f(3);
  auto g = group_transport::create(f.endpoint(1), std::vector<rank_t>{1, 2});
  REQUIRE(g.ok());
  std::byte b[4] = {};
  (*g)->abort();
  auto viaview = (*g)->post_send(1, 0, b);
  REQUIRE_FALSE(viaview.ok());
  CHECK(viaview.status().code() == status_code::aborted);
  auto direct = f.endpoint(1).post_send(0, 0, b);  // the inner endpoint is aborted too
  REQUIRE_FALSE(direct.ok());
  CHECK(direct.status().code() == status_code::aborted);
  (*g)->reset();
  auto again = (*g)->post_recv(1, 7, b);
  REQUIRE(again.ok());
  CHECK((*g)->wait(*again, clock::now()).status().code() == status_code::deadline_exceeded);
}

TEST_CASE("group_transport: a ring over a permutation sends along it and stays exact") {
  // View rank i = order[i]: the ring sends order[i] -> order[i + 1]. The inner per-peer
  // byte counters show where the payload went: the successor in `order` gets every hop,
  // every other peer (the identity successor included) only the 24-byte metadata header.
  using list = std::vector<rank_t>;
  const list order = GENERATE(list{0, 2, 4, 1, 3}, list{0, 4, 3, 2, 1}, list{0, 3, 1, 2}, list{1, 0});
  CAPTURE(order);
  const std::size_t n = order.size(), count = 1000;
  inproc_fabric f(n);
  auto v = views_over(f, order);
  const auto x = exact_sum_inputs(n, count);
  auto o = opts("identity");
  const auto out = average_on_peers(
      f, [&](rank_t r, transport&) { return ring_allreduce::create(*v[r], count, o); }, x);
  check_exact_sum_result(out, n, count);
  for (std::size_t r = 1; r < n; ++r) CHECK(same_bits(out[r].data, out[0].data));

  constexpr std::uint64_t meta = 24;  // docs/formats/collective_messages.md header
  for (std::size_t pos = 0; pos < n; ++pos) {
    const rank_t p = order[pos], succ = order[(pos + 1) % n];
    CAPTURE(p, succ);
    const auto st = f.endpoint(p).stats();
    // 2 (n - 1) hops of count / n floats each (n divides count here), plus the codec
    // payload headers, plus the metadata.
    const std::uint64_t floats = 2 * (n - 1) * (count / n) * sizeof(float);
    CHECK(st.sent[succ] > floats + meta);
    for (rank_t q = 0; q < n; ++q)
      if (q != p && q != succ) CHECK(st.sent[q] == meta);
    const rank_t identity_succ = static_cast<rank_t>((p + 1) % n);
    if (identity_succ != succ) CHECK(st.sent[identity_succ] == meta);
  }
}

TEST_CASE("group_transport: two disjoint replica groups average at once") {
  const std::size_t n = 6, count = 300;
  inproc_fabric f(n);
  const std::vector<rank_t> even{0, 2, 4}, odd{5, 3, 1};
  auto ve = views_over(f, even);
  auto vo = views_over(f, odd);
  const auto x = exact_sum_inputs(n, count);
  auto o = opts("identity");
  const auto out = average_on_peers(
      f, [&](rank_t r, transport&) { return ring_allreduce::create(r % 2 ? *vo[r] : *ve[r], count, o); }, x);
  check_all_ok(out);
  for (rank_t r = 0; r < n; ++r) {
    CAPTURE(r);
    const auto& grp = r % 2 ? odd : even;
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < count; ++i) {
      double s = 0;
      for (rank_t m : grp) s += static_cast<double>(x[m][i]);
      wrong += out[r].data[i] != static_cast<float>(s) / 3.0f;
    }
    CHECK(wrong == 0);
    CHECK(same_bits(out[r].data, out[grp[0]].data));
    // Nothing crossed between the groups.
    const auto st = f.endpoint(r).stats();
    for (rank_t q = 0; q < n; ++q)
      if (q % 2 != r % 2) CHECK(st.sent[q] == 0);
  }
}
