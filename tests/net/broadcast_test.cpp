// Broadcast: every root's bytes reach every peer (tree and chain, segmented), the root's
// data stays intact, the algorithm choice and its byte counts, argument checks, size
// mismatches, crashes and TCP.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "dtrain/core/rng.h"
#include "dtrain/net/broadcast.h"
#include "net_test_util.h"
#include "tcp_test_util.h"

using namespace dtrain;
using namespace dtrain::net;
using namespace dtrain::net::test;
using namespace std::chrono_literals;

namespace {

std::vector<std::byte> bytes_of(std::size_t size, std::uint64_t seed) {
  std::vector<std::byte> v(size);
  counter_rng rng(seed, 3);
  std::uint64_t word = 0;
  for (std::size_t i = 0; i < size; ++i) {
    if (i % 8 == 0) word = rng.next_u64();
    v[i] = static_cast<std::byte>((word >> (8 * (i % 8))) & 0xFF);
  }
  return v;
}

broadcast_options quick(std::size_t segment = std::size_t{4} << 20) {
  broadcast_options o;
  o.timeout = 10s;
  o.max_segment_bytes = segment;
  return o;
}

bool is_failure(const status& s) {
  return s.code() == status_code::aborted || s.code() == status_code::deadline_exceeded;
}

std::size_t ceil_log2(std::size_t n) {
  std::size_t k = 0;
  while ((std::size_t{1} << k) < n) ++k;
  return k;
}

}  // namespace

TEST_CASE("broadcast: every root's bytes reach every peer", "[broadcast]") {
  const std::size_t n = GENERATE(values<std::size_t>({1, 2, 3, 5, 8}));
  const std::size_t size = GENERATE(values<std::size_t>({0, 1, 7, 4096, (1u << 20) + 3}));
  const bool small_segments = GENERATE(false, true);  // chain of ~5 segments for size > 5
  CAPTURE(n, size, small_segments);
  auto o = quick(small_segments ? std::max<std::size_t>(1, size / 5) : std::size_t{4} << 20);
  if (small_segments) o.tree_max_bytes = 0;  // the chain even for small data
  const auto algo = broadcast_choice(size, o);
  CAPTURE(broadcast_algorithm_name(algo));

  for (std::size_t root = 0; root < n; ++root) {
    CAPTURE(root);
    const auto want = bytes_of(size, root);
    inproc_fabric f(n);
    std::vector<status> st(n);
    std::vector<std::vector<std::byte>> data(n, std::vector<std::byte>(size, std::byte{0xEE}));
    data[root] = want;
    run_peers(f, [&](rank_t r, transport& t) { st[r] = broadcast(t, static_cast<rank_t>(root), data[r], o); });
    require_all_ok(st);
    std::size_t most = 0, total = 0;
    for (std::size_t r = 0; r < n; ++r) {
      CAPTURE(r);
      CHECK(data[r] == want);
      const auto s = f.endpoint(static_cast<rank_t>(r)).stats();
      // Every peer but the root receives the data exactly once.
      CHECK(s.total_received() == (r == root ? 0 : size));
      most = std::max<std::size_t>(most, s.total_sent());
      total += s.total_sent();
      if (algo == broadcast_algorithm::chain && n > 1) {
        // The chain: root -> root+1 -> ... ; the last one sends nothing.
        const std::size_t v = (r + n - root) % n;
        CHECK(s.total_sent() == (v + 1 < n ? size : 0));
        if (v + 1 < n) CHECK(s.sent[(r + 1) % n] == size);
      }
    }
    CHECK(total == (n - 1) * size);
    // The tree's root serves ceil(log2 n) children, the chain's peers one each.
    CHECK(most == (algo == broadcast_algorithm::chain ? (n > 1 ? size : 0) : ceil_log2(n) * size));
  }
}

TEST_CASE("broadcast: the algorithm follows the size and the options", "[broadcast]") {
  broadcast_options o;
  CHECK(broadcast_choice(0, o) == broadcast_algorithm::binomial_tree);
  CHECK(broadcast_choice(65536, o) == broadcast_algorithm::binomial_tree);
  CHECK(broadcast_choice(65537, o) == broadcast_algorithm::chain);
  o.tree_max_bytes = 0;
  CHECK(broadcast_choice(0, o) == broadcast_algorithm::binomial_tree);
  CHECK(broadcast_choice(1, o) == broadcast_algorithm::chain);
  o.tree_max_bytes = 1000;
  o.max_segment_bytes = 100;  // the tree sends one message, so it never exceeds a segment
  CHECK(broadcast_choice(100, o) == broadcast_algorithm::binomial_tree);
  CHECK(broadcast_choice(101, o) == broadcast_algorithm::chain);
  CHECK(broadcast_algorithm_name(broadcast_algorithm::chain) == "chain");
  CHECK(broadcast_algorithm_name(broadcast_algorithm::binomial_tree) == "binomial_tree");
}

TEST_CASE("broadcast: argument checks", "[broadcast]") {
  inproc_fabric f(3);
  std::vector<std::byte> data(10);
  auto o = quick();
  CHECK(broadcast(f.endpoint(0), 3, data, o).code() == status_code::invalid_argument);
  o.timeout = 0ms;
  CHECK(broadcast(f.endpoint(0), 0, data, o).code() == status_code::invalid_argument);
  o = quick(0);
  CHECK(broadcast(f.endpoint(0), 0, data, o).code() == status_code::invalid_argument);
  o = quick();
  o.channel = 1u << 24;
  CHECK(broadcast(f.endpoint(0), 0, data, o).code() == status_code::invalid_argument);
  CHECK(f.endpoint(0).stats().total_sent() == 0);
}

TEST_CASE("broadcast: a peer whose size differs from the root's fails, nobody hangs", "[broadcast]") {
  const std::size_t n = 4;
  // tree: 100 bytes, one message; chain: 5000 bytes in 1000-byte segments; empty: an empty
  // non-root against a non-empty root (and the reverse) on the tree.
  const std::size_t size = GENERATE(values<std::size_t>({100, 5000}));
  const std::size_t odd = GENERATE(values<std::size_t>({0, 1}));  // rank 2 holds size - 1 / size + 1 bytes
  CAPTURE(size, odd);
  auto o = quick(1000);
  // The mismatch must be seen before the deadline even under ASan on a loaded machine.
  o.timeout = 2s;
  inproc_fabric f(n);
  std::vector<status> st(n);
  const auto want = bytes_of(size, 1);
  std::vector<std::vector<std::byte>> data(n, std::vector<std::byte>(size));
  data[0] = want;
  data[2].resize(odd == 0 ? size - 1 : size + 1);
  run_peers(f, [&](rank_t r, transport& t) { st[r] = broadcast(t, 0, data[r], o); });
  CAPTURE(st[0].to_string(), st[1].to_string(), st[2].to_string(), st[3].to_string());
  // A length that differs within a message is invalid_argument; 5001 bytes against 5000
  // differ by a whole extra segment, which rank 2 waits for until the deadline.
  if (size == 5000 && odd == 1)
    CHECK(st[2].code() == status_code::deadline_exceeded);
  else
    CHECK(st[2].code() == status_code::invalid_argument);
  CHECK(data[0] == want);  // the root's data is never written
  if (size == 5000 && odd == 0) CHECK(!st[3].ok());  // below rank 2 in the chain, short of a segment
}

TEST_CASE("broadcast: empty data against non-empty data is a size mismatch", "[broadcast]") {
  const std::size_t n = 3;
  const bool empty_root = GENERATE(false, true);
  CAPTURE(empty_root);
  auto o = quick();
  o.timeout = 2s;  // as above: invalid_argument must come before the deadline under load
  std::vector<status> st(n);
  std::vector<std::vector<std::byte>> data(n, std::vector<std::byte>(empty_root ? 50 : 0));
  data[0].assign(empty_root ? 0 : 50, std::byte{1});
  run_peers(n, [&](rank_t r, transport& t) { st[r] = broadcast(t, 0, data[r], o); });
  // Root 0's children in the tree of 3 are ranks 2 and 1; each sees the wrong length.
  CHECK(st[1].code() == status_code::invalid_argument);
  CHECK(st[2].code() == status_code::invalid_argument);
}

TEST_CASE("broadcast: a peer crashing mid-chain fails every peer, root data intact", "[broadcast]") {
  const std::size_t n = 5, size = 64 * 1024;
  auto o = quick(1024);  // 64 segments down the chain
  o.timeout = 100ms;
  const auto want = bytes_of(size, 5);
  inproc_fabric f(n);
  crashing_transport crashing(f, 2, 1);  // rank 2 dies after forwarding one segment
  std::vector<status> st(n);
  std::vector<std::vector<std::byte>> data(n, std::vector<std::byte>(size));
  data[0] = want;
  run_peers(f, [&](rank_t r, transport& t) {
    st[r] = broadcast(r == 2 ? static_cast<transport&>(crashing) : t, 0, data[r], o);
  });
  for (std::size_t r = 0; r < n; ++r) {
    CAPTURE(r, st[r].to_string());
    CHECK(is_failure(st[r]));
  }
  CHECK(data[0] == want);
}

TEST_CASE("broadcast: a peer killed from another thread fails the peers that need it", "[broadcast]") {
  const std::size_t n = 5, size = 64 * 1024;
  const bool tree = GENERATE(false, true);
  CAPTURE(tree);
  auto o = quick(tree ? size : 1024);
  o.timeout = tree ? std::chrono::milliseconds(2000) : std::chrono::milliseconds(100);
  if (tree) o.tree_max_bytes = size;  // one message down the tree
  REQUIRE(broadcast_choice(size, o) == (tree ? broadcast_algorithm::binomial_tree : broadcast_algorithm::chain));
  const auto want = bytes_of(size, 5);
  inproc_fabric f(n);
  std::vector<status> st(n);
  std::vector<std::vector<std::byte>> data(n, std::vector<std::byte>(size));
  data[0] = want;
  std::thread killer([&] {
    std::this_thread::sleep_for(20ms);
    f.kill(3);
  });
  run_peers(f, [&](rank_t r, transport& t) {
    if (r == 3) return;  // crashed before the call
    st[r] = broadcast(t, 0, data[r], o);
  });
  killer.join();
  CAPTURE(st[0].to_string(), st[1].to_string(), st[2].to_string(), st[4].to_string());
  if (tree) {
    // Tree of 5 from root 0: 0 -> {4, 2, 1}, 2 -> 3: only 2 needs 3, and it fails.
    CHECK(is_failure(st[2]));
    for (std::size_t r : {0, 1, 4}) CHECK(st[r].ok());
    for (std::size_t r : {1, 2, 4}) CHECK((r == 2 || data[r] == want));
  } else {
    // Chain 0 -> 1 -> 2 -> 3 -> 4: 2 cannot hand on, 4 never hears, 0 and 1 stall.
    for (std::size_t r : {0, 1, 2, 4}) CHECK(is_failure(st[r]));
  }
  CHECK(data[0] == want);
}

TEST_CASE("broadcast over TCP from every root", "[broadcast][tcp]") {
  const std::size_t n = GENERATE(values<std::size_t>({2, 3, 4}));
  const std::size_t size = GENERATE(values<std::size_t>({100, 300001}));  // tree, chain
  CAPTURE(n, size);
  auto g = make_tcp_group(n);
  REQUIRE(g->error.empty());
  std::vector<status> st(n * n);
  std::vector<std::vector<std::byte>> got(n * n);
  run_tcp_peers(*g, [&](rank_t r, transport& t) {
    for (std::size_t root = 0; root < n; ++root) {
      auto o = quick(65536);
      o.sequence = static_cast<std::uint32_t>(root);
      auto& d = got[root * n + r];
      d = r == root ? bytes_of(size, root) : std::vector<std::byte>(size);
      st[root * n + r] = broadcast(t, static_cast<rank_t>(root), d, o);
    }
  });
  require_all_ok(st);
  for (std::size_t root = 0; root < n; ++root)
    for (std::size_t r = 0; r < n; ++r) {
      CAPTURE(root, r);
      CHECK(got[root * n + r] == bytes_of(size, root));
    }
}
