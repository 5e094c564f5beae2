// http_fetcher against a real nginx on 127.0.0.1 serving a temp dir: whole files,
// ranges (first, middle, last byte, past the end), 404, a closed port, a server that
// never answers, max_bytes, cancel, 100 parallel requests, poll() semantics and
// keep-alive reuse.
#include "dtrain/shard/http.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/test_bytes.h"
#include "shard/nginx_util.h"

using namespace dtrain;
using namespace dtrain::shard;
using namespace std::chrono_literals;
using dtrain::test::nginx_server;
using dtrain::test::temp_dir;

namespace {

void write_file(const std::filesystem::path& p, const std::vector<std::byte>& bytes) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::byte> slice(const std::vector<std::byte>& v, std::size_t first, std::size_t len) {
  return {v.begin() + static_cast<std::ptrdiff_t>(first), v.begin() + static_cast<std::ptrdiff_t>(first + len)};
}

// A socket listening on 127.0.0.1 that never accepts: connections complete in the
// kernel's backlog and requests are never answered.
class silent_server {
 public:
  silent_server() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 64) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
  }
  silent_server(const silent_server&) = delete;
  silent_server& operator=(const silent_server&) = delete;
  ~silent_server() { ::close(fd_); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/x"; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

struct fixture {
  temp_dir dir;
  std::vector<std::byte> data = dtrain::test::random_bytes(1'000'003, 42);
  nginx_server server;

  fixture() : server(start(dir.path(), data)) {}

  static nginx_server start(const std::filesystem::path& root, const std::vector<std::byte>& data) {
    write_file(root / "file.bin", data);
    write_file(root / "empty", {});
    auto s = nginx_server::start(root);
    INFO(s.status().to_string());
    REQUIRE(s.ok());
    return std::move(s).value();
  }
  std::string url(const std::string& name) const { return server.url() + "/" + name; }
};

http_request req(std::string url, std::optional<byte_range> range = std::nullopt) {
  http_request r;
  r.url = std::move(url);
  r.range = range;
  r.timeout = 10s;
  return r;
}

}  // namespace

TEST_CASE("http: whole files and ranges from nginx") {
  fixture fx;
  auto f = http_fetcher::create(4).value();

  SECTION("whole file: 200") {
    auto r = f.get(req(fx.url("file.bin"))).value();
    INFO(r.st.to_string());
    CHECK(r.st.ok());
    CHECK(r.http_status == 200);
    CHECK(r.body == fx.data);
    CHECK(r.seconds > 0);
  }
  SECTION("empty file") {
    auto r = f.get(req(fx.url("empty"))).value();
    CHECK(r.st.ok());
    CHECK(r.body.empty());
  }
  SECTION("ranges: 206 with exactly the bytes asked for") {
    const std::size_t n = fx.data.size();
    const auto [first, len] = GENERATE_COPY(table<std::size_t, std::size_t>(
        {{0, 1}, {0, 4096}, {n / 2, 1}, {123'457, 65'536}, {n - 1, 1}, {n - 4096, 4096}, {0, n}}));
    CAPTURE(first, len);
    auto r = f.get(req(fx.url("file.bin"), byte_range{first, len})).value();
    INFO(r.st.to_string());
    CHECK(r.st.ok());
    CHECK(r.http_status == 206);
    CHECK(r.body == slice(fx.data, first, len));
  }
  SECTION("a range running past the end: short 206 -> data_loss") {
    auto r = f.get(req(fx.url("file.bin"), byte_range{fx.data.size() - 10, 20})).value();
    CHECK(r.st.code() == status_code::data_loss);
    CHECK(r.http_status == 206);
    CHECK(r.body.empty());
  }
  SECTION("a range starting past the end: 416 -> out_of_range") {
    auto r = f.get(req(fx.url("file.bin"), byte_range{fx.data.size() + 5, 10})).value();
    CHECK(r.st.code() == status_code::out_of_range);
    CHECK(r.http_status == 416);
  }
  SECTION("a range of length 0 -> invalid_argument") {
    auto r = f.get(req(fx.url("file.bin"), byte_range{0, 0})).value();
    CHECK(r.st.code() == status_code::invalid_argument);
  }
}

TEST_CASE("http: bodies written straight into caller memory") {
  fixture fx;
  auto f = http_fetcher::create(4).value();
  const std::size_t n = fx.data.size();

  SECTION("a range into an exact buffer, a whole file into a larger one") {
    std::vector<std::byte> dst(70'000, std::byte{0x5a});
    auto q = req(fx.url("file.bin"), byte_range{123'457, 65'536});
    q.into = std::span(dst).subspan(100, 65'536);
    auto r = f.get(q).value();
    INFO(r.st.to_string());
    REQUIRE(r.st.ok());
    CHECK(r.body.empty());
    CHECK(r.body_size == 65'536);
    CHECK(std::equal(dst.begin() + 100, dst.begin() + 100 + 65'536, fx.data.begin() + 123'457));
    CHECK(dst[99] == std::byte{0x5a});  // nothing outside the span
    CHECK(dst[100 + 65'536] == std::byte{0x5a});

    std::vector<std::byte> whole(n + 10);
    auto w = req(fx.url("file.bin"));
    w.into = whole;
    r = f.get(w).value();
    REQUIRE(r.st.ok());
    CHECK(r.body_size == n);
    CHECK(std::equal(fx.data.begin(), fx.data.end(), whole.begin()));
  }
  SECTION("a body longer than the buffer is data_loss, and nothing is written past it") {
    std::vector<std::byte> dst(n, std::byte{0});
    auto q = req(fx.url("file.bin"));
    q.into = std::span(dst).first(n - 1);
    auto r = f.get(q).value();
    CHECK(r.st.code() == status_code::data_loss);
    CHECK(dst[n - 1] == std::byte{0});
  }
  SECTION("many ranges into one buffer, in parallel") {
    std::vector<std::byte> dst(n);
    const std::size_t piece = 65'536;
    std::size_t started = 0;
    for (std::size_t off = 0; off < n; off += piece) {
      auto q = req(fx.url("file.bin"), byte_range{off, std::min(piece, n - off)});
      q.into = std::span(dst).subspan(off, std::min(piece, n - off));
      f.start(q);
      ++started;
    }
    std::size_t ok = 0;
    for (int rounds = 0; f.in_flight() > 0 && rounds < 1000; ++rounds)
      for (auto& r : f.poll(1s)) ok += r.st.ok() ? 1 : 0;
    CHECK(ok == started);
    CHECK(dst == fx.data);
  }
  SECTION("without a buffer, body_size is the body's length") {
    auto r = f.get(req(fx.url("file.bin"), byte_range{5, 1000})).value();
    REQUIRE(r.st.ok());
    CHECK(r.body_size == 1000);
    CHECK(r.body.size() == 1000);
  }
}

TEST_CASE("http: error mapping") {
  fixture fx;
  auto f = http_fetcher::create(4).value();

  SECTION("404 -> unavailable with the code") {
    auto r = f.get(req(fx.url("nope"))).value();
    CHECK(r.st.code() == status_code::unavailable);
    CHECK(r.http_status == 404);
    CHECK(r.st.message().find("404") != std::string::npos);
    CHECK(r.body.empty());
  }
  SECTION("dot files (writers' temp dirs) are not served") {
    write_file(fx.dir.path() / ".tmp-v1-abc" / "manifest", dtrain::test::pattern_bytes(10));
    auto r = f.get(req(fx.url(".tmp-v1-abc/manifest"))).value();
    CHECK(r.http_status == 404);
  }
  SECTION("connection refused -> unavailable") {
    const std::uint16_t port = dtrain::test::free_loopback_port();
    REQUIRE(port != 0);
    auto r = f.get(req("http://127.0.0.1:" + std::to_string(port) + "/file.bin")).value();
    INFO(r.st.to_string());
    CHECK(r.st.code() == status_code::unavailable);
    CHECK(r.http_status == 0);
  }
  SECTION("a server that never answers -> deadline_exceeded") {
    silent_server silent;
    http_request r = req(silent.url());
    r.timeout = 300ms;
    auto res = f.get(r).value();
    INFO(res.st.to_string());
    CHECK(res.st.code() == status_code::deadline_exceeded);
    CHECK(res.http_status == 0);
  }
  SECTION("body longer than max_bytes -> data_loss") {
    const std::uint64_t limit = GENERATE(0u, 1u, 1'000'002u);
    CAPTURE(limit);
    http_request r = req(fx.url("file.bin"));
    r.max_bytes = limit;
    auto res = f.get(r).value();
    CHECK(res.st.code() == status_code::data_loss);
    CHECK(res.body.empty());
    r.max_bytes = fx.data.size();  // exactly the size is fine
    auto ok = f.get(r).value();
    CHECK(ok.st.ok());
    CHECK(ok.body == fx.data);
  }
  SECTION("unsupported scheme and malformed URL -> invalid_argument") {
    CHECK(f.get(req("file:///etc/passwd")).value().st.code() == status_code::invalid_argument);
    CHECK(f.get(req("http://[::1")).value().st.code() == status_code::invalid_argument);
  }
  SECTION("after errors the fetcher still works") {
    (void)f.get(req(fx.url("nope"))).value();
    auto r = f.get(req(fx.url("file.bin"), byte_range{10, 10})).value();
    CHECK(r.st.ok());
    CHECK(r.body == slice(fx.data, 10, 10));
  }
}

TEST_CASE("http: cancel") {
  fixture fx;
  silent_server silent;

  SECTION("a running request completes as cancelled at the next poll") {
    auto f = http_fetcher::create(4).value();
    http_request r = req(silent.url());
    r.timeout = 30s;
    const auto id = f.start(r);
    CHECK(f.poll(50ms).empty());  // still waiting for the silent server
    f.cancel(id);
    auto done = f.poll(0ms);
    REQUIRE(done.size() == 1);
    CHECK(done[0].id == id);
    CHECK(done[0].st.code() == status_code::cancelled);
    CHECK(f.in_flight() == 0);
    f.cancel(id);  // already completed: no effect
    CHECK(f.poll(0ms).empty());
  }
  SECTION("a queued request is cancelled before it starts; the others still complete") {
    auto f = http_fetcher::create(1).value();
    const auto a = f.start(req(fx.url("file.bin"), byte_range{0, 100}));
    const auto b = f.start(req(fx.url("file.bin"), byte_range{100, 100}));
    const auto c = f.start(req(fx.url("file.bin"), byte_range{200, 100}));
    f.cancel(b);
    std::map<std::uint64_t, http_result> got;
    while (f.in_flight() > 0) {
      for (auto& r : f.poll(1s)) got.emplace(r.id, std::move(r));
    }
    REQUIRE(got.size() == 3);
    CHECK(got[a].st.ok());
    CHECK(got[b].st.code() == status_code::cancelled);
    CHECK(got[c].st.ok());
    CHECK(got[c].body == slice(fx.data, 200, 100));
  }
}

TEST_CASE("http: 100 parallel range requests all correct") {
  fixture fx;
  auto f = http_fetcher::create(16).value();
  const std::size_t piece = fx.data.size() / 100;
  std::map<std::uint64_t, std::size_t> ids;
  for (std::size_t i = 0; i < 100; ++i) ids.emplace(f.start(req(fx.url("file.bin"), byte_range{i * piece, piece})), i);
  CHECK(f.in_flight() == 100);
  std::set<std::uint64_t> seen;
  for (int rounds = 0; f.in_flight() > 0 && rounds < 1000; ++rounds) {
    for (auto& r : f.poll(1s)) {
      INFO(r.st.to_string());
      REQUIRE(ids.count(r.id) == 1);
      CHECK(seen.insert(r.id).second);  // each id exactly once
      CHECK(r.st.ok());
      CHECK(r.body == slice(fx.data, ids[r.id] * piece, piece));
    }
  }
  CHECK(seen.size() == 100);
}

TEST_CASE("http: poll semantics and keep-alive") {
  fixture fx;
  auto f = http_fetcher::create(2).value();

  SECTION("nothing in flight: poll returns at once, empty") {
    CHECK(f.in_flight() == 0);
    CHECK(f.poll(10s).empty());
  }
  SECTION("ids increase; get() leaves other completions for poll()") {
    const auto a = f.start(req(fx.url("file.bin"), byte_range{0, 10}));
    auto g = f.get(req(fx.url("file.bin"), byte_range{10, 10})).value();
    CHECK(g.id > a);
    CHECK(g.body == slice(fx.data, 10, 10));
    std::vector<http_result> rest;
    while (f.in_flight() > 0) {
      for (auto& r : f.poll(1s)) rest.push_back(std::move(r));
    }
    REQUIRE(rest.size() == 1);
    CHECK(rest[0].id == a);
    CHECK(rest[0].body == slice(fx.data, 0, 10));
  }
  SECTION("sequential requests reuse one connection") {
    auto one = http_fetcher::create(1).value();
    for (int i = 0; i < 20; ++i) {
      auto r = one.get(req(fx.url("file.bin"), byte_range{static_cast<std::uint64_t>(i) * 7, 7})).value();
      REQUIRE(r.st.ok());
    }
    std::istringstream log(fx.server.access_log());
    std::set<std::string> connections;
    std::string line;
    int lines = 0;
    while (std::getline(log, line)) {
      ++lines;
      connections.insert(line.substr(0, line.find(' ')));
    }
    CHECK(lines == 20);
    CHECK(connections.size() == 1);
  }
}

TEST_CASE("http: fetcher is movable") {
  fixture fx;
  auto f = http_fetcher::create(2).value();
  const auto id = f.start(req(fx.url("file.bin"), byte_range{5, 5}));
  http_fetcher g = std::move(f);
  CHECK(g.in_flight() == 1);
  std::vector<http_result> got;
  while (g.in_flight() > 0) {
    for (auto& r : g.poll(1s)) got.push_back(std::move(r));
  }
  REQUIRE(got.size() == 1);
  CHECK(got[0].id == id);
  CHECK(got[0].body == slice(fx.data, 5, 5));
}
