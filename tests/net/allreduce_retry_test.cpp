// allreduce_with_retry / retrying_allreduce: options, surviving_members against brute
// force, the no-failure path, input restoration (the averagers' own guarantee and the
// wrapper's), a peer crashing mid all-reduce (ring and butterfly) or killed from another
// thread, repeated kills down to min_peers and below, attempts running out, a stalled
// peer rejoining through the barrier, and late messages of a failed attempt planted where
// a reused channel would match them.
#include "dtrain/net/allreduce_retry.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <future>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dtrain/net/allreduce_butterfly.h"
#include "dtrain/net/allreduce_ring.h"
#include "net_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace dtrain::net::test;
using namespace std::chrono_literals;

namespace {

constexpr auto kTimeout = 150ms;  // the averagers' deadline: how long a far survivor waits to notice a loss
constexpr std::size_t kCount = 500;

retry_options test_options() {
  retry_options o;
  o.barrier_timeout = 10s;
  return o;
}

enum class kind { ring, butterfly };

make_averager_fn maker(kind k, std::size_t count = kCount) {
  return [k, count](transport& t, const retry_attempt& a) -> result<std::unique_ptr<averager>> {
    auto o = opts("identity");
    o.timeout = kTimeout;
    o.channel = a.channel;
    if (k == kind::ring) {
      auto r = ring_allreduce::create(t, count, o);
      if (!r.ok()) return r.status();
      return std::unique_ptr<averager>(std::move(*r));
    }
    auto b = butterfly_allreduce::create(t, count, o);
    if (!b.ok()) return b.status();
    return std::unique_ptr<averager>(std::move(*b));
  };
}

std::vector<rank_t> all_ranks(std::size_t n) {
  std::vector<rank_t> m(n);
  for (std::size_t i = 0; i < n; ++i) m[i] = static_cast<rank_t>(i);
  return m;
}

// fl(S / k) where S, the survivors' exact-sum fixture sum at index i, is exact in fp32.
float survivor_mean(const std::vector<std::vector<float>>& x, const std::vector<rank_t>& survivors, std::size_t i) {
  double s = 0;
  for (rank_t r : survivors) s += static_cast<double>(x[r][i]);
  return static_cast<float>(s) / static_cast<float>(survivors.size());
}

struct peer_result {
  status st;
  std::vector<float> data;
  retry_report report;
  std::vector<status> later;  // statuses of run()s after the first
  std::vector<std::vector<float>> later_data;
};

// Every peer builds a survivor_group over inner(r) (the endpoint or a fault-injecting
// wrapper of it) with the fabric's liveness as the oracle, a retrying_allreduce on its
// view, and calls run(x[r], 0), then `extra_runs` more runs on fresh copies of x[r].
std::vector<peer_result> run_retry(inproc_fabric& f, const std::vector<std::vector<float>>& x,
                                   const make_averager_fn& make, const retry_options& o,
                                   const std::function<transport&(rank_t, transport&)>& inner, int extra_runs = 0) {
  const std::size_t n = f.size();
  std::vector<peer_result> out(n);
  run_peers(f, [&](rank_t r, transport& t) {
    peer_result& p = out[r];
    p.data = x[r];
    auto sg = survivor_group::create(inner(r, t), all_ranks(n), [&f](rank_t m) { return f.alive(m); });
    if (!sg.ok()) return void(p.st = sg.status());
    auto ra = retrying_allreduce::create((*sg)->view(), make, std::ref(**sg), o);
    if (!ra.ok()) return void(p.st = ra.status());
    p.st = (*ra)->run(p.data, 0);
    p.report = (*ra)->last_report();
    for (int k = 0; k < extra_runs; ++k) {
      p.later_data.push_back(x[r]);
      p.later.push_back((*ra)->run(p.later_data.back(), static_cast<std::uint64_t>(k + 1)));
    }
  });
  return out;
}

transport& as_is(rank_t, transport& t) { return t; }

bool group_failure(const status& s) {
  return s.code() == status_code::aborted || s.code() == status_code::deadline_exceeded;
}

// Survivors ok, bit-identical, exactly the survivors' mean; at least `min_failures`
// failed attempts, each a group failure; final group = survivors.
void check_survivors(const std::vector<peer_result>& out, const std::vector<std::vector<float>>& x,
                     const std::vector<rank_t>& survivors, std::size_t min_failures) {
  const rank_t first = survivors[0];
  for (rank_t r : survivors) {
    const peer_result& p = out[r];
    CAPTURE(r, p.st.to_string());
    REQUIRE(p.st.ok());
    CHECK(same_bits(p.data, out[first].data));
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < p.data.size(); ++i) wrong += p.data[i] != survivor_mean(x, survivors, i);
    CHECK(wrong == 0);
    CHECK(p.report.final_peers == survivors.size());
    CHECK(p.report.average.contributors == survivors.size());
    CHECK(p.report.failures.size() >= min_failures);
    CHECK(p.report.attempts == static_cast<int>(p.report.failures.size()) + 1);
    for (const auto& s : p.report.failures) CHECK(group_failure(s));
  }
}

// Kills its rank at the k-th send (0-based) of an averager on `channel` (barrier sends,
// sequence 2^24 - 1, are not counted): a crash in a chosen group generation.
class channel_crasher final : public forwarding_transport {
 public:
  channel_crasher(inproc_fabric& f, rank_t r, std::uint32_t channel, std::size_t k)
      : forwarding_transport(f.endpoint(r)), f_(f), channel_(channel), k_(k) {}
  result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override {
    const bool barrier = ((tag >> 16) & 0xFFFFFFu) == 0xFFFFFFu;
    if ((tag >> 40) == channel_ && !barrier && sends_++ == k_) f_.kill(rank());
    return forwarding_transport::post_send(to, tag, data);
  }

 private:
  inproc_fabric& f_;
  std::uint32_t channel_;
  std::size_t k_;
  std::size_t sends_ = 0;
};

// An averager that writes garbage into data and fails with `code`: the wrapper must
// restore the input itself.
class scribbling_averager final : public averager {
 public:
  explicit scribbling_averager(status_code code) : code_(code) {}
  std::string_view name() const noexcept override { return "scribble"; }
  std::size_t count() const noexcept override { return kCount; }
  bool exact_consensus() const noexcept override { return true; }
  status average(std::span<float> data, std::uint64_t, std::span<float>) override {
    for (auto& v : data) v = -123.0f;
    return status(code_, "scribbled");
  }
  const average_report& last_report() const noexcept override { return report_; }

 private:
  status_code code_;
  average_report report_;
};

}  // namespace

TEST_CASE("allreduce_retry: bad options and too small a first group") {
  inproc_fabric f(3);
  auto regroup = [](const status&) -> result<transport*> { return failed_precondition("unused"); };
  retry_options o = test_options();
  SECTION("max_attempts 0") { o.max_attempts = 0; }
  SECTION("min_peers 0") { o.min_peers = 0; }
  SECTION("channel_span 0") { o.channel_span = 0; }
  SECTION("channel range past 2^24") { o.channel_base = (1u << 24) - 4, o.channel_span = 5; }
  SECTION("barrier_timeout 0") { o.barrier_timeout = 0ms; }
  auto r = retrying_allreduce::create(f.endpoint(0), maker(kind::ring), regroup, o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == status_code::invalid_argument);
  std::vector<float> d(kCount);
  auto w = allreduce_with_retry(d, 0, maker(kind::ring), regroup, f.endpoint(0), o);
  REQUIRE_FALSE(w.ok());
  CHECK(w.status().code() == status_code::invalid_argument);
}

TEST_CASE("allreduce_retry: a first group below min_peers is failed_precondition") {
  inproc_fabric f(3);
  auto regroup = [](const status&) -> result<transport*> { return failed_precondition("unused"); };
  retry_options o = test_options();
  o.min_peers = 4;
  auto r = retrying_allreduce::create(f.endpoint(0), maker(kind::ring), regroup, o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == status_code::failed_precondition);
  CHECK(retry_channel(o, 0) == o.channel_base);
  CHECK(retry_channel(o, o.channel_span + 3) == o.channel_base + 3);
}

TEST_CASE("surviving_members: the live members in group order, the same on every survivor") {
  const std::vector<rank_t> members{3, 0, 4, 1};  // a group order that is not sorted
  for (unsigned mask = 0; mask < 32; ++mask) {     // every liveness of ranks 0..4
    CAPTURE(mask);
    auto alive = [mask](rank_t r) { return ((mask >> r) & 1u) != 0; };
    std::vector<rank_t> expect;
    for (rank_t m : members)
      if (alive(m)) expect.push_back(m);
    for (rank_t self : members) {
      CAPTURE(self);
      auto s = surviving_members(members, self, alive);
      if (!alive(self)) {
        REQUIRE_FALSE(s.ok());
        CHECK(s.status().code() == status_code::failed_precondition);
      } else {
        REQUIRE(s.ok());
        CHECK(*s == expect);
      }
    }
  }
  auto notmember = surviving_members(members, 2, [](rank_t) { return true; });
  REQUIRE_FALSE(notmember.ok());
  CHECK(notmember.status().code() == status_code::invalid_argument);
}

TEST_CASE("allreduce_retry: without failures one attempt per run and the averager is kept") {
  const std::size_t n = 4;
  inproc_fabric f(n);
  const auto x = exact_sum_inputs(n, kCount);
  std::atomic<int> makes{0};
  auto base = maker(kind::ring);
  make_averager_fn counting = [&](transport& t, const retry_attempt& a) {
    ++makes;
    return base(t, a);
  };
  const auto out = run_retry(f, x, counting, test_options(), as_is, 2);
  check_survivors(out, x, all_ranks(n), 0);
  CHECK(makes == static_cast<int>(n));  // one averager per peer for three runs
  for (std::size_t r = 0; r < n; ++r) {
    CHECK(out[r].report.attempts == 1);
    CHECK(out[r].report.generation == 0);
    for (std::size_t k = 0; k < out[r].later.size(); ++k) {
      CHECK(out[r].later[k].ok());
      CHECK(same_bits(out[r].later_data[k], out[r].data));
    }
  }
}

TEST_CASE("allreduce_retry: the averagers already leave data unchanged on a crash") {
  // The retry loop relies on this and restores from its copy anyway (next test).
  // Crashes before the victim's last send that everyone depends on (butterfly: sends 0-2
  // are contributions, 3-5 results, and a late crash in the results may let some finish).
  const kind k = GENERATE(kind::ring, kind::butterfly);
  const std::size_t crash_at = GENERATE(0u, 2u, 5u);
  CAPTURE(static_cast<int>(k), crash_at);
  if (k == kind::butterfly && crash_at == 5) return;
  const std::size_t n = 4;
  inproc_fabric f(n);
  crashing_transport crashing(f, 1, crash_at);
  const auto x = exact_sum_inputs(n, kCount);
  auto make = maker(k);
  std::vector<status> st(n);
  std::vector<std::vector<float>> data = x;
  run_peers(f, [&](rank_t r, transport& t) {
    auto a = make(r == 1 ? static_cast<transport&>(crashing) : t, retry_attempt{});
    if (!a.ok()) return void(st[r] = a.status());
    st[r] = (*a)->average(data[r], 0);
  });
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r, st[r].to_string());
    CHECK(group_failure(st[r]));
    CHECK(same_bits(data[r], x[r]));
  }
}

TEST_CASE("allreduce_retry: the input is restored even from an averager that scribbles on it") {
  inproc_fabric f(2);
  const status_code code = GENERATE(status_code::aborted, status_code::data_loss);
  CAPTURE(code_name(code));
  int regroups = 0;
  auto regroup = [&](const status&) -> result<transport*> {
    ++regroups;
    return static_cast<transport*>(&f.endpoint(0));
  };
  auto make = [code](transport&, const retry_attempt&) -> result<std::unique_ptr<averager>> {
    return std::unique_ptr<averager>(new scribbling_averager(code));
  };
  retry_options o = test_options();
  o.max_attempts = 3;
  o.barrier_timeout = 50ms;  // nobody answers the barrier: each retry fails by its deadline
  auto ra = retrying_allreduce::create(f.endpoint(0), make, regroup, o);
  REQUIRE(ra.ok());
  std::vector<float> d(kCount);
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<float>(i) * 0.5f;
  const auto in = d;
  const status st = (*ra)->run(d, 7);
  CHECK(st.code() == (code == status_code::aborted ? status_code::deadline_exceeded : status_code::data_loss));
  CHECK(same_bits(d, in));
  const auto& rep = (*ra)->last_report();
  if (code == status_code::aborted) {
    CHECK(rep.attempts == 3);  // scribble (aborted), barrier timeout, barrier timeout
    CHECK(rep.failures.size() == 3);
    CHECK(regroups == 3);  // also after the last attempt, so the next run starts regrouped
    CHECK((*ra)->generation() == 3);
  } else {
    CHECK(rep.attempts == 1);  // data_loss is not a group failure: no retry
    CHECK(regroups == 0);
  }
}

TEST_CASE("allreduce_retry: a peer crashing mid all-reduce; survivors regroup and agree") {
  const kind k = GENERATE(kind::ring, kind::butterfly);
  // ring, 5 peers: sends 0-3 are the metadata, 4 and 5 the first reduce-scatter hops;
  // butterfly: sends 0-3 are contributions.
  const std::size_t crash_at = GENERATE(0u, 5u);
  CAPTURE(static_cast<int>(k), crash_at);
  if (k == kind::butterfly && crash_at == 5) return;  // would land in the result phase
  const std::size_t n = 5;
  const rank_t victim = 2;
  inproc_fabric f(n);
  crashing_transport crashing(f, victim, crash_at);
  const auto x = exact_sum_inputs(n, kCount);
  const auto out = run_retry(f, x, maker(k), test_options(), [&](rank_t r, transport& t) -> transport& {
    return r == victim ? crashing : t;
  });
  check_survivors(out, x, {0, 1, 3, 4}, 1);
  for (rank_t r : {0u, 1u, 3u, 4u}) CHECK(out[r].report.generation >= 1);
  CAPTURE(out[victim].st.to_string());
  CHECK(out[victim].st.code() == status_code::failed_precondition);  // it learns it was dropped
  CHECK(same_bits(out[victim].data, x[victim]));
}

TEST_CASE("allreduce_retry: a peer killed from another thread while the op runs") {
  // Rank 0 holds its first payload send until the killer thread has killed rank 3, so
  // the kill lands mid-operation: no peer can finish without rank 0's chunk.
  const std::size_t n = 4;
  const rank_t victim = 3;
  inproc_fabric f(n);
  std::promise<void> armed, released;
  auto released_f = released.get_future().share();

  class gate final : public forwarding_transport {
   public:
    gate(transport& t, std::promise<void>& a, std::shared_future<void> r)
        : forwarding_transport(t), armed_(a), released_(std::move(r)) {}
    result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override {
      if (!fired_ && data.size() > 24) {
        fired_ = true;
        armed_.set_value();
        released_.wait();
      }
      return forwarding_transport::post_send(to, tag, data);
    }

   private:
    std::promise<void>& armed_;
    std::shared_future<void> released_;
    bool fired_ = false;
  } g(f.endpoint(0), armed, released_f);

  std::thread killer([&] {
    armed.get_future().wait();
    f.kill(victim);
    released.set_value();
  });
  const auto x = exact_sum_inputs(n, kCount);
  const auto out = run_retry(f, x, maker(kind::ring), test_options(), [&](rank_t r, transport& t) -> transport& {
    return r == 0 ? g : t;
  });
  killer.join();
  check_survivors(out, x, {0, 1, 2}, 1);
  CHECK(out[victim].st.code() == status_code::failed_precondition);
  CHECK(same_bits(out[victim].data, x[victim]));
}

TEST_CASE("allreduce_retry: repeated kills down to min_peers, below it, and out of attempts") {
  const std::size_t n = 5;
  inproc_fabric f(n);
  retry_options o = test_options();
  o.min_peers = 3;
  // Kill rank 1 in generation 0, rank 3 in generation 1, (rank 4 in generation 2): each at
  // the second reduce-scatter send of its ring (group size m: m - 1 metadata sends first).
  std::vector<std::unique_ptr<channel_crasher>> crash(n);
  crash[1] = std::make_unique<channel_crasher>(f, 1, retry_channel(o, 0), 5);
  crash[3] = std::make_unique<channel_crasher>(f, 3, retry_channel(o, 1), 4);
  auto inner = [&](rank_t r, transport& t) -> transport& { return crash[r] ? *crash[r] : t; };
  const auto x = exact_sum_inputs(n, kCount);

  SECTION("down to min_peers: the last three agree") {
    const auto out = run_retry(f, x, maker(kind::ring), o, inner);
    check_survivors(out, x, {0, 2, 4}, 2);
    for (rank_t r : {0u, 2u, 4u}) CHECK(out[r].report.generation >= 2);
    for (rank_t r : {1u, 3u}) {
      CHECK(out[r].st.code() == status_code::failed_precondition);
      CHECK(same_bits(out[r].data, x[r]));
    }
  }
  SECTION("below min_peers: failed_precondition, input intact") {
    crash[4] = std::make_unique<channel_crasher>(f, 4, retry_channel(o, 2), 3);
    const auto out = run_retry(f, x, maker(kind::ring), o, inner);
    for (rank_t r : {0u, 2u}) {
      CAPTURE(r, out[r].st.to_string());
      CHECK(out[r].st.code() == status_code::failed_precondition);
      CHECK(same_bits(out[r].data, x[r]));
      CHECK(out[r].report.final_peers == 2);
      CHECK(out[r].report.failures.size() >= 3);
      for (const auto& s : out[r].report.failures) CHECK(group_failure(s));
    }
    for (rank_t r : {1u, 3u, 4u}) CHECK(out[r].st.code() == status_code::failed_precondition);
  }
  SECTION("out of attempts: the last failure, input intact; the next run starts on the survivors") {
    o.max_attempts = 2;
    const auto out = run_retry(f, x, maker(kind::ring), o, inner, 1);
    const std::vector<rank_t> survivors{0, 2, 4};
    for (rank_t r : survivors) {
      CAPTURE(r, out[r].st.to_string());
      CHECK(group_failure(out[r].st));
      CHECK(same_bits(out[r].data, x[r]));
      CHECK(out[r].report.attempts == 2);
      CHECK(out[r].report.final_peers == 3);
      REQUIRE(out[r].later.size() == 1);
      CAPTURE(out[r].later[0].to_string());
      CHECK(out[r].later[0].ok());
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < kCount; ++i) wrong += out[r].later_data[0][i] != survivor_mean(x, survivors, i);
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("allreduce_retry: a stalled peer (deadline_exceeded, nobody gone) rejoins through the barrier") {
  // Rank 2 stalls for two deadlines before its first payload send. Everyone times out,
  // regroups to the same four members, and waits in the barrier until rank 2 arrives.
  const std::size_t n = 4;
  inproc_fabric f(n);
  class staller final : public forwarding_transport {
   public:
    using forwarding_transport::forwarding_transport;
    result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override {
      if (!stalled_ && data.size() > 24) {
        stalled_ = true;
        std::this_thread::sleep_for(2 * kTimeout);
      }
      return forwarding_transport::post_send(to, tag, data);
    }

   private:
    bool stalled_ = false;
  } slow(f.endpoint(2));
  const auto x = exact_sum_inputs(n, kCount);
  const auto out = run_retry(f, x, maker(kind::ring), test_options(), [&](rank_t r, transport& t) -> transport& {
    return r == 2 ? slow : t;
  });
  check_survivors(out, x, all_ranks(n), 1);
  for (std::size_t r = 0; r < n; ++r)
    for (const auto& s : out[r].report.failures) CHECK(s.code() == status_code::deadline_exceeded);
}

TEST_CASE("allreduce_retry: late messages of a failed attempt never match the next attempt") {
  // After the crash, rank 0 plants messages carrying the tags that generation 1's ring
  // would use if it reused generation 0's channel (metadata to rank 1, a reduce-scatter
  // payload to rank 1): stand-ins for a failed attempt's messages still in flight. With
  // a fresh channel per generation they are never matched; the control shows they would
  // be.
  const bool reuse_channel = GENERATE(false, true);
  CAPTURE(reuse_channel);
  const std::vector<std::byte> garbage(64, std::byte{0x5A});  // outlives the fabric's ops
  const std::size_t n = 4;
  const rank_t victim = 3;
  inproc_fabric f(n);
  crashing_transport crashing(f, victim, 5);
  retry_options o = test_options();
  // The control's survivors give up after one retry instead of waiting in barriers for
  // rank 1, which left with data_loss.
  o.max_attempts = reuse_channel ? 2 : 4;
  const std::uint32_t ch0 = retry_channel(o, 0);
  auto base = maker(kind::ring);
  make_averager_fn make = [&](transport& t, const retry_attempt& a) {
    retry_attempt b = a;
    if (reuse_channel) b.channel = ch0;  // the mistake the fresh channel prevents
    return base(t, b);
  };
  std::vector<op> planted;
  const auto x = exact_sum_inputs(n, kCount);
  std::vector<peer_result> out(n);
  run_peers(f, [&](rank_t r, transport& t) {
    peer_result& p = out[r];
    p.data = x[r];
    transport& in = r == victim ? static_cast<transport&>(crashing) : t;
    auto sg = survivor_group::create(in, all_ranks(n), [&f](rank_t m) { return f.alive(m); });
    if (!sg.ok()) return void(p.st = sg.status());  // no Catch2 assertions on peer threads
    survivor_group& group = **sg;
    regroup_fn regroup = [&](const status& why) -> result<transport*> {
      auto next = group(why);
      if (next.ok() && r == 0 && planted.empty()) {
        for (std::uint32_t step : {1u, 0x4000u}) {
          auto s = t.post_send(1, make_tag(ch0, 0, step), std::span(garbage).first(step == 1 ? 24 : 64));
          if (s.ok()) planted.push_back(*s);
        }
      }
      return next;
    };
    auto ra = retrying_allreduce::create(group.view(), make, regroup, o);
    if (!ra.ok()) return void(p.st = ra.status());
    p.st = (*ra)->run(p.data, 0);
    p.report = (*ra)->last_report();
  });
  for (const op& s : planted) f.endpoint(0).wait(s, clock::now()).status().ignore();  // retire them
  CHECK(planted.size() == 2);
  if (!reuse_channel) {
    check_survivors(out, x, {0, 1, 2}, 1);
  } else {
    CAPTURE(out[1].st.to_string());
    CHECK(out[1].st.code() == status_code::data_loss);  // rank 1 matched the planted header
  }
}

TEST_CASE("allreduce_with_retry: one-off rounds, with and without a crash") {
  const std::size_t n = 4;
  const bool crash = GENERATE(false, true);
  CAPTURE(crash);
  inproc_fabric f(n);
  crashing_transport crashing(f, 1, 1);  // butterfly: its second contribution (sends 3-5 are results)
  const auto x = exact_sum_inputs(n, kCount);
  std::vector<status> st(n);
  std::vector<retry_report> rep(n);
  std::vector<std::vector<float>> data = x;
  const retry_options o = test_options();
  run_peers(f, [&](rank_t r, transport& t) {
    transport& in = crash && r == 1 ? static_cast<transport&>(crashing) : t;
    auto sg = survivor_group::create(in, all_ranks(n), [&f](rank_t m) { return f.alive(m); });
    if (!sg.ok()) return void(st[r] = sg.status());
    auto rr = allreduce_with_retry(data[r], 3, maker(kind::butterfly), std::ref(**sg), (*sg)->view(), o);
    if (!rr.ok()) return void(st[r] = rr.status());
    rep[r] = *rr;
  });
  const std::vector<rank_t> survivors = crash ? std::vector<rank_t>{0, 2, 3} : all_ranks(n);
  for (rank_t r : survivors) {
    CAPTURE(r, st[r].to_string());
    REQUIRE(st[r].ok());
    CHECK(same_bits(data[r], data[survivors[0]]));
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < kCount; ++i) wrong += data[r][i] != survivor_mean(x, survivors, i);
    CHECK(wrong == 0);
    CHECK(rep[r].final_peers == survivors.size());
    CHECK(rep[r].attempts == (crash ? 2 : 1));
    CHECK(rep[r].generation == 3u * static_cast<std::uint64_t>(o.max_attempts) + (crash ? 1 : 0));
  }
  if (crash) CHECK(st[1].code() == status_code::failed_precondition);
}

TEST_CASE("allreduce_retry: regroup_to admits a joiner at a step boundary") {
  // Ranks 0-2 average, then rank 3 joins: the members regroup_to() a view of all four
  // and the joiner starts at their new generation, so all use the same channel.
  const std::size_t n = 4;
  inproc_fabric f(n);
  const auto x = exact_sum_inputs(n, kCount);
  const retry_options o = test_options();
  auto fail = [](const status& why) -> result<transport*> { return why; };
  std::vector<status> st1(n), st2(n), st_join(n);
  std::vector<std::vector<float>> d1(n), d2(n);
  std::vector<std::uint64_t> gen(n);
  std::latch boundary(3);
  run_peers(f, [&](rank_t r, transport& t) {
    auto all = group_transport::create(t, all_ranks(n));
    if (!all.ok()) return void(st2[r] = all.status());
    std::unique_ptr<retrying_allreduce> ra;
    if (r < 3) {
      struct arrive {  // reaches the boundary on every path, so the joiner never hangs
        std::latch& l;
        ~arrive() { l.count_down(); }
      } at_boundary{boundary};
      auto three = group_transport::create(t, std::vector<rank_t>{0, 1, 2});
      if (!three.ok()) return void(st1[r] = three.status());
      auto c = retrying_allreduce::create(**three, maker(kind::ring), fail, o);
      if (!c.ok()) return void(st1[r] = c.status());
      ra = std::move(*c);
      d1[r] = x[r];
      st1[r] = ra->run(d1[r], 0);
      st_join[r] = ra->regroup_to(**all);  // the old view may go now: the averager moved
    } else {
      boundary.wait();  // the step boundary: the joiner is admitted once the members moved
      auto c = retrying_allreduce::create(**all, maker(kind::ring), fail, o, 1);
      if (!c.ok()) return void(st_join[r] = c.status());
      ra = std::move(*c);
    }
    gen[r] = ra->generation();
    d2[r] = x[r];
    st2[r] = ra->run(d2[r], 1);
  });
  for (rank_t r = 0; r < n; ++r) {
    CAPTURE(r, st1[r].to_string(), st_join[r].to_string(), st2[r].to_string());
    REQUIRE(st_join[r].ok());
    REQUIRE(st2[r].ok());
    CHECK(gen[r] == 1);
    for (std::size_t i = 0; i < kCount; ++i) REQUIRE(d2[r][i] == exact_sum_mean(n, i));
    if (r < 3) {
      REQUIRE(st1[r].ok());
      for (std::size_t i = 0; i < kCount; ++i) REQUIRE(d1[r][i] == survivor_mean(x, {0, 1, 2}, i));
    }
  }
}
