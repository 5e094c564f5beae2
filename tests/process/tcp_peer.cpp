// dtrain_tcp_peer: one rank of a multi-process TCP test (tests/process/process_test.cpp)
// or of the recovery benchmark. Ranks find each other through a rendezvous directory.
// Scenarios:
//   grid  — ring all-reduce for every codec and several sizes; prints one line per case
//           "CASE <codec> <count> <xxh3 of the result> <exact 0|1>";
//   rounds — repeated all-reduces of --count floats; on a failure it prints
//           "FAIL <code> <ms into the round> intact=<0|1>", rebuilds the group over the
//           survivors it can see and retries: "RETRY peers=<m> ms=<since failure> exact=<0|1>".
//           With --rounds R it stops after R successful rounds: "DONE".
// Exit status 0 only if every check passed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "dtrain/core/hash.h"
#include "dtrain/net/allreduce_ring.h"
#include "dtrain/net/tcp/rendezvous.h"
#include "dtrain/net/transport_tcp.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace std::chrono;

namespace {

struct args {
  std::string scenario = "grid", dir = "/tmp", codec = "identity";
  rank_t rank = 0;
  std::size_t size = 2, count = 1 << 20, rounds = 0;
  unsigned streams = 1;
  long timeout_ms = 5000;
};

// v[i] = (i mod 97)·n + r: every partial sum is a small integer, so fp32 sums are exact in
// any order and fp16 never overflows.
std::vector<float> input(std::size_t n, std::size_t r, std::size_t count) {
  std::vector<float> v(count);
  for (std::size_t i = 0; i < count; ++i) v[i] = static_cast<float>((i % 97) * n + r);
  return v;
}

// The exact mean over the ranks in `ranks` (original numbering) of input(n, r, count).
bool exact(const std::vector<float>& got, std::size_t n, const std::vector<rank_t>& ranks) {
  double rsum = 0;
  for (auto r : ranks) rsum += r;
  const auto m = static_cast<float>(ranks.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double sum = static_cast<double>((i % 97) * n) * static_cast<double>(ranks.size()) + rsum;
    if (got[i] != static_cast<float>(sum) / m) return false;
  }
  return true;
}

std::uint64_t hash_of(const std::vector<float>& v) {
  return xxh3_64(std::as_bytes(std::span<const float>(v)));
}

int fail(const std::string& why) {
  std::printf("ERROR %s\n", why.c_str());
  std::fflush(stdout);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--scenario") a.scenario = v;
    else if (k == "--dir") a.dir = v;
    else if (k == "--codec") a.codec = v;
    else if (k == "--rank") a.rank = static_cast<rank_t>(std::stoul(v));
    else if (k == "--size") a.size = std::stoul(v);
    else if (k == "--count") a.count = std::stoul(v);
    else if (k == "--rounds") a.rounds = std::stoul(v);
    else if (k == "--streams") a.streams = static_cast<unsigned>(std::stoul(v));
    else if (k == "--timeout-ms") a.timeout_ms = std::stol(v);
    else return fail("unknown flag " + k);
  }
  tcp::tcp_options o;
  o.streams = a.streams;
  auto ctx = tcp::tcp_context::create(tcp::address{"127.0.0.1", 0}, o);
  if (!ctx.ok()) return fail(ctx.status().to_string());
  auto addrs = tcp::file_rendezvous(a.dir, "peer", a.rank, a.size, (*ctx)->advertised_address(), after(seconds(30)));
  if (!addrs.ok()) return fail(addrs.status().to_string());

  std::vector<rank_t> members(a.size);  // original ranks of the current group, in order
  for (std::size_t r = 0; r < a.size; ++r) members[r] = static_cast<rank_t>(r);
  std::uint64_t session = 1;
  auto connect = [&](const std::vector<rank_t>& group) -> result<std::unique_ptr<tcp_transport>> {
    std::vector<tcp::address> ga;
    rank_t me = 0;
    for (std::size_t i = 0; i < group.size(); ++i) {
      ga.push_back((*addrs)[group[i]]);
      if (group[i] == a.rank) me = static_cast<rank_t>(i);
    }
    // Members that see the same survivors derive the same session.
    std::uint64_t s = session;
    for (auto g : group) s = s * 1'000'003u + g + 1;
    return tcp_transport::create(**ctx, s, me, ga, after(seconds(5)));
  };
  auto t = connect(members);
  if (!t.ok()) return fail(t.status().to_string());
  std::printf("READY\n");
  std::fflush(stdout);

  if (a.scenario == "grid") {
    int rc = 0;
    std::uint32_t channel = 0;
    for (const char* codec : {"identity", "fp16", "minmax:bits=8", "fp4"})
      for (std::size_t count : {std::size_t{1}, std::size_t{7}, std::size_t{1000}, std::size_t{100'003}}) {
        collective_options co;
        co.codec = codec;
        co.channel = channel++;
        co.timeout = milliseconds(a.timeout_ms);
        auto ar = ring_allreduce::create(**t, count, co);
        if (!ar.ok()) return fail(ar.status().to_string());
        auto v = input(a.size, a.rank, count);
        if (auto st = (*ar)->average(v, 0); !st.ok()) return fail(std::string(codec) + ": " + st.to_string());
        const bool ex = exact(v, a.size, members);
        if (std::string(codec) == "identity" && !ex) rc = 1;
        std::printf("CASE %s %zu %016llx %d\n", codec, count, static_cast<unsigned long long>(hash_of(v)), ex ? 1 : 0);
      }
    std::fflush(stdout);
    return rc;
  }

  if (a.scenario != "rounds") return fail("unknown scenario " + a.scenario);
  std::size_t done = 0;
  // Collectives on the current group, the tag channel of the next one: every member of a
  // group starts at 0, so a survivor that finished a round the others redo (a crash split
  // the round) still meets them on the same channel with the same input.
  std::uint32_t group_calls = 0;
  for (std::uint64_t round = 0;; ++round) {
    std::printf("ROUND %llu peers=%zu\n", static_cast<unsigned long long>(round), members.size());
    std::fflush(stdout);
    const auto v0 = input(a.size, a.rank, a.count);
    auto v = v0;
    const auto start = steady_clock::now();
    collective_options co;
    co.timeout = milliseconds(a.timeout_ms);
    co.channel = group_calls++;
    auto ar = ring_allreduce::create(**t, a.count, co);
    if (!ar.ok()) return fail(ar.status().to_string());
    status st = (*ar)->average(v, round);
    if (st.ok()) {
      if (!exact(v, a.size, members)) return fail("round " + std::to_string(round) + " inexact");
      if (a.rounds != 0 && ++done >= a.rounds) break;
      continue;
    }
    const auto failed_at = steady_clock::now();
    std::printf("FAIL %s %lld intact=%d msg=%s\n", std::string(code_name(st.code())).c_str(),
                static_cast<long long>(duration_cast<milliseconds>(failed_at - start).count()), v == v0 ? 1 : 0,
                st.message().c_str());
    std::fflush(stdout);
    if (v != v0) return fail("input changed by a failed all-reduce");
    // Regroup over the survivors this rank can see; members that disagree derive different
    // sessions, fail to connect, look again and converge.
    for (int attempt = 0;; ++attempt) {
      std::this_thread::sleep_for(milliseconds(100));
      std::vector<rank_t> alive;
      for (std::size_t i = 0; i < members.size(); ++i)
        if (members[i] == a.rank || (*t)->peer_alive(static_cast<rank_t>(i))) alive.push_back(members[i]);
      if (alive.size() < 2) return fail("too few peers left");
      ++session;
      // The old transport stays up until the new group exists, so every survivor still
      // sees the others alive while it looks.
      auto nt = connect(alive);
      if (nt.ok()) {
        t = std::move(nt);
        members = alive;
        group_calls = 0;
        break;
      }
      if (attempt > 20) return fail("could not regroup: " + nt.status().to_string());
    }
    // Redo the same round on the shrunk group.
    v = v0;
    collective_options co2 = co;
    co2.channel = group_calls++;
    auto ar2 = ring_allreduce::create(**t, a.count, co2);
    if (!ar2.ok()) return fail(ar2.status().to_string());
    if (auto st2 = (*ar2)->average(v, round); !st2.ok()) return fail("retry failed: " + st2.to_string());
    const bool ex = exact(v, a.size, members);
    std::printf("RETRY peers=%zu ms=%lld exact=%d\n", members.size(),
                static_cast<long long>(duration_cast<milliseconds>(steady_clock::now() - failed_at).count()), ex ? 1 : 0);
    std::fflush(stdout);
    if (!ex) return fail("retry inexact");
    if (a.rounds != 0 && ++done >= a.rounds) break;
  }
  std::printf("DONE\n");
  std::fflush(stdout);
  t->reset();
  return 0;
}
