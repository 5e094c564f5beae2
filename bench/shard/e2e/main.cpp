// dtrain_shard_e2e: the end-to-end distribution benchmark on loopback (a driver, not
// Google Benchmark). Topology: one origin root published by dtrain::shard::publisher and
// served by nginx; 2 relays (dtrain::shard::relay objects on threads of this process)
// mirroring it into their own roots, each served by its own nginx; C clients, each a
// separate process (this binary in --client mode), fetching the same version through both
// relays with fetch(). Baseline in the same run: plain `curl` downloads of the same
// checkpoint bytes from the relays' nginx, C in parallel and 1 alone.
// Method and results: docs/shard_bench.md "End to end"; driver script:
// scripts/bench_shard_e2e.sh.
//
//   dtrain_shard_e2e [--sizes 256M,1G] [--configs rs10_4:blake2b,none:blake2b,rs10_4:xxh3,none:xxh3]
//                    [--reps 3] [--clients 4] [--chunk-size 4M] [--parallel 8] [--split 1M] [--workdir DIR]
//   dtrain_shard_e2e --client --relays URL,URL --key HEX --out DIR --version N [--parallel P] [--split BYTES]
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "dtrain/crypto/identity.h"
#include "dtrain/shard/client.h"
#include "dtrain/shard/origin.h"
#include "dtrain/shard/relay.h"
#include "nginx_util.h"

namespace {

namespace fs = std::filesystem;
namespace sh = dtrain::shard;
using clk = std::chrono::steady_clock;

double secs(clk::time_point a, clk::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t end = s.find(sep, start);
    const auto piece = s.substr(start, end == std::string_view::npos ? s.size() - start : end - start);
    if (!piece.empty()) out.emplace_back(piece);
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

// "256M", "1G", "4096" -> bytes (binary units); nullopt when malformed.
std::optional<std::uint64_t> parse_size(const std::string& s) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (end == s.c_str()) return std::nullopt;
  std::uint64_t mul = 1;
  const std::string unit(end);
  if (unit == "K" || unit == "KiB") mul = 1ull << 10;
  else if (unit == "M" || unit == "MiB") mul = 1ull << 20;
  else if (unit == "G" || unit == "GiB") mul = 1ull << 30;
  else if (!unit.empty()) return std::nullopt;
  return static_cast<std::uint64_t>(v) * mul;
}

std::string size_name(std::uint64_t b) {
  if (b % (1ull << 30) == 0) return std::to_string(b >> 30) + " GiB";
  if (b % (1ull << 20) == 0) return std::to_string(b >> 20) + " MiB";
  return std::to_string(b) + " B";
}

std::optional<dtrain::crypto::peer_id> parse_key(const std::string& hex) {
  if (hex.size() != 64) return std::nullopt;
  dtrain::crypto::peer_id id;
  for (std::size_t i = 0; i < 32; ++i) {
    unsigned v = 0;
    if (std::sscanf(hex.c_str() + 2 * i, "%2x", &v) != 1) return std::nullopt;
    id.key[i] = static_cast<std::byte>(v);
  }
  if (id.hex() != hex) return std::nullopt;  // rejects upper case and stray characters
  return id;
}

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ---- child processes ------------------------------------------------------------------

struct proc {
  pid_t pid = -1;
  int out_fd = -1;  // its stdout
};

proc spawn(const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {};
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return {};
  }
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

// Waits for the process; returns its exit status (-1 when it did not exit normally), its
// whole stdout, and adds its user and system CPU seconds to cpu_user / cpu_sys.
int finish(proc& p, std::string& out, double& cpu_user, double& cpu_sys) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(p.out_fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(p.out_fd);
  int st = 0;
  rusage ru{};
  ::wait4(p.pid, &st, 0, &ru);
  cpu_user += static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) * 1e-6;
  cpu_sys += static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) * 1e-6;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

struct group_result {
  double seconds = 0;  // from the first spawn to the last exit
  double cpu_user = 0, cpu_sys = 0;  // CPU seconds of all the processes together
  bool ok = true;
  std::vector<std::string> outputs;
};

group_result run_group(const std::vector<std::vector<std::string>>& argvs) {
  group_result r;
  const auto t0 = clk::now();
  std::vector<proc> ps;
  for (const auto& a : argvs) ps.push_back(spawn(a));
  for (auto& p : ps) {
    std::string out;
    if (p.pid < 0) {
      r.ok = false;
      r.outputs.emplace_back("spawn failed");
      continue;
    }
    const int rc = finish(p, out, r.cpu_user, r.cpu_sys);
    if (rc != 0) {
      r.ok = false;
      out += " (exit " + std::to_string(rc) + ")";
    }
    r.outputs.push_back(out);
  }
  r.seconds = secs(t0, clk::now());
  return r;
}

// ---- client mode ----------------------------------------------------------------------

int client_main(int argc, char** argv) {
  sh::fetch_options o;
  std::optional<std::uint64_t> version;
  std::string key;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--relays") o.relays = split(v, ',');
    else if (k == "--key") key = v;
    else if (k == "--out") o.out_dir = v;
    else if (k == "--version") version = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--parallel") o.parallel = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--seed") o.seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--split") o.split_bytes = std::strtoull(v.c_str(), nullptr, 10);
    else {
      std::printf("client: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  const auto id = parse_key(key);
  if (!id) {
    std::printf("client: bad --key\n");
    return 2;
  }
  o.trusted_origins.push_back(*id);
  o.keep_versions = 1;
  const auto t0 = clk::now();
  auto r = sh::fetch(o, version);
  const double s = secs(t0, clk::now());
  if (!r.ok()) {
    std::printf("client: fetch failed: %s\n", r.status().to_string().c_str());
    return 1;
  }
  std::size_t bad = 0;
  for (const auto& rs : r->relays) bad += rs.bad_chunks;
  std::printf("fetched version %" PRIu64 " in %.3f s: %" PRIu64 " bytes, %zu from parity, %zu hedged, %zu retries, %zu bad\n",
              r->version, s, r->bytes_downloaded, r->chunks_from_parity, r->hedged, r->retries, bad);
  return 0;
}

// ---- driver ---------------------------------------------------------------------------

struct config {
  std::string name;
  sh::hash_algo algo = sh::hash_algo::blake2b_256;
  std::size_t k = 0, m = 0;
};

std::optional<config> parse_config(const std::string& s) {
  const auto parts = split(s, ':');
  if (parts.size() != 2) return std::nullopt;
  config c;
  c.name = s;
  if (parts[0] == "none") c.k = c.m = 0;
  else if (parts[0].rfind("rs", 0) == 0) {
    const auto km = split(parts[0].substr(2), '_');
    if (km.size() != 2) return std::nullopt;
    c.k = std::strtoull(km[0].c_str(), nullptr, 10);
    c.m = std::strtoull(km[1].c_str(), nullptr, 10);
    if (c.k == 0 || c.m == 0) return std::nullopt;
  } else return std::nullopt;
  if (parts[1] == "blake2b") c.algo = sh::hash_algo::blake2b_256;
  else if (parts[1] == "xxh3") c.algo = sh::hash_algo::xxh3_128;
  else return std::nullopt;
  return c;
}

struct rep_result {
  double publish = 0, relay_sync = 0, fetch = 0, curl_par = 0, curl_par_file = 0, curl_one = 0;
  double fetch_user = 0, fetch_sys = 0, curl_file_user = 0, curl_file_sys = 0;  // CPU seconds, all processes
};

struct settings {
  std::vector<std::uint64_t> sizes;
  std::vector<config> configs;
  std::size_t reps = 3, clients = 4, parallel = 8;
  std::uint64_t split = std::uint64_t{1} << 20;  // fetch_options::split_bytes
  std::uint64_t chunk_size = std::uint64_t{4} << 20;
  fs::path workdir;
  std::string self;
};

// Pseudo-random, incompressible bytes (splitmix64).
void fill_random(std::vector<std::byte>& v, std::uint64_t seed) {
  std::uint64_t x = seed;
  for (std::size_t i = 0; i + 8 <= v.size(); i += 8) {
    x += 0x9e3779b97f4a7c15ull;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::memcpy(v.data() + i, &z, 8);
  }
}

bool same_as(const fs::path& p, const std::vector<std::byte>& want) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> buf(std::size_t{8} << 20);
  std::size_t off = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<std::size_t>(in.gcount());
    if (n == 0) break;
    if (off + n > want.size() || std::memcmp(buf.data(), want.data() + off, n) != 0) return false;
    off += n;
  }
  return off == want.size();
}

bool fsync_file(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

void remove_quiet(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
}

// One (size, config) cell: fresh roots and nginx servers, `reps` repetitions.
bool run_cell(const settings& st, std::uint64_t size, const config& c, const std::vector<std::byte>& data,
              std::vector<rep_result>& out) {
  const fs::path dir = st.workdir / ("cell-" + std::to_string(size) + "-" + c.name.substr(0, c.name.find(':')) + "-" +
                                     c.name.substr(c.name.find(':') + 1));
  remove_quiet(dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  const fs::path origin_root = dir / "origin";
  const fs::path relay_root[2] = {dir / "relay0", dir / "relay1"};

  const auto ident = dtrain::crypto::identity::generate();
  sh::encode_options enc;
  enc.chunk_size = st.chunk_size;
  enc.algo = c.algo;
  enc.k = c.k;
  enc.m = c.m;
  sh::publisher_options po{.root = origin_root, .origin = ident, .keep_versions = 1, .encoding = enc};
  auto pub = sh::publisher::create(po);
  if (!pub.ok()) {
    std::fprintf(stderr, "publisher: %s\n", pub.status().to_string().c_str());
    return false;
  }
  auto origin_srv = dtrain::test::nginx_server::start(origin_root);
  if (!origin_srv.ok()) {
    std::fprintf(stderr, "origin nginx: %s\n", origin_srv.status().to_string().c_str());
    return false;
  }
  std::vector<sh::relay> relays;
  std::vector<dtrain::test::nginx_server> relay_srv;
  for (const auto& rr : relay_root) {
    sh::relay_options ro;
    ro.upstream_url = origin_srv->url();
    ro.root = rr;
    ro.trusted_origins = {ident.id()};
    ro.keep_versions = 1;
    auto r = sh::relay::create(ro);
    if (!r.ok()) {
      std::fprintf(stderr, "relay: %s\n", r.status().to_string().c_str());
      return false;
    }
    relays.push_back(std::move(*r));
    auto s = dtrain::test::nginx_server::start(rr);
    if (!s.ok()) {
      std::fprintf(stderr, "relay nginx: %s\n", s.status().to_string().c_str());
      return false;
    }
    relay_srv.push_back(std::move(*s));
  }
  // The baseline's file: the same bytes, hard-linked into both relay roots.
  {
    std::ofstream f(dir / "plain.bin", std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", (dir / "plain.bin").c_str());
      return false;
    }
  }
  for (const auto& rr : relay_root) {
    fs::create_hard_link(dir / "plain.bin", rr / "plain.bin", ec);
    if (ec) {
      std::fprintf(stderr, "link: %s\n", ec.message().c_str());
      return false;
    }
  }
  const std::string relay_list = relay_srv[0].url() + "," + relay_srv[1].url();

  for (std::size_t rep = 0; rep < st.reps; ++rep) {
    rep_result rr;
    // 1. publish (encode, sign, write + fsync, rename, latest).
    auto t0 = clk::now();
    auto v = pub->publish(data);
    rr.publish = secs(t0, clk::now());
    if (!v.ok()) {
      std::fprintf(stderr, "publish: %s\n", v.status().to_string().c_str());
      return false;
    }
    // 2. both relays sync at once.
    t0 = clk::now();
    dtrain::status sync_err[2];
    {
      std::vector<std::jthread> ts;
      for (std::size_t i = 0; i < 2; ++i)
        ts.emplace_back([&, i] {
          auto r = relays[i].sync_once();
          if (!r.ok()) sync_err[i] = r.status();
          else if (r->version != *v) sync_err[i] = dtrain::data_loss("relay did not reach the new version");
        });
    }
    rr.relay_sync = secs(t0, clk::now());
    for (const auto& e : sync_err)
      if (!e.ok()) {
        std::fprintf(stderr, "relay sync: %s\n", e.to_string().c_str());
        return false;
      }
    // 3. baseline: curl x clients in parallel (alternating relays) to /dev/null.
    const auto curl_argv = [&](std::size_t i, const std::string& dst) {
      return std::vector<std::string>{"/usr/bin/curl", "-sS", "--fail", "-o", dst, "-w", "%{size_download}\n",
                                      relay_srv[i % 2].url() + "/plain.bin"};
    };
    std::vector<std::vector<std::string>> cmds;
    for (std::size_t i = 0; i < st.clients; ++i) cmds.push_back(curl_argv(i, "/dev/null"));
    auto g = run_group(cmds);
    const auto check_curl = [&](const group_result& gr) {
      bool ok = gr.ok;
      for (const auto& o : gr.outputs) ok = ok && std::strtoull(o.c_str(), nullptr, 10) == data.size();
      if (!ok) std::fprintf(stderr, "curl failed: %s\n", gr.outputs.empty() ? "" : gr.outputs[0].c_str());
      return ok;
    };
    if (!check_curl(g)) return false;
    rr.curl_par = g.seconds;
    // 4 and 5: the dtrain clients and the curls writing files, in alternating order (even
    // reps fetch first). Each group deletes its own outputs from the previous rep just
    // before it starts, so both write into memory the kernel freed just before: on a VM
    // whose host backs guest memory lazily, writing into long-unused pages costs a host
    // fault per page, and whichever group ran right after the other's files were
    // deleted would otherwise get the warm pages (docs/shard_bench.md "Method").
    std::vector<fs::path> outs;
    for (std::size_t i = 0; i < st.clients; ++i) outs.push_back(dir / ("client" + std::to_string(i)));
    std::vector<fs::path> files;
    for (std::size_t i = 0; i < st.clients; ++i) files.push_back(dir / ("curl" + std::to_string(i) + ".bin"));
    const auto run_fetch = [&]() -> bool {
      cmds.clear();
      for (std::size_t i = 0; i < st.clients; ++i) {
        remove_quiet(outs[i]);
        cmds.push_back({st.self, "--client", "--relays", relay_list, "--key", ident.id().hex(), "--out",
                        outs[i].string(), "--version", std::to_string(*v), "--parallel", std::to_string(st.parallel),
                        "--split", std::to_string(st.split), "--seed", std::to_string(rep * 100 + i)});
      }
      g = run_group(cmds);
      rr.fetch = g.seconds;
      rr.fetch_user = g.cpu_user;
      rr.fetch_sys = g.cpu_sys;
      if (!g.ok) {
        for (const auto& o : g.outputs) std::fprintf(stderr, "%s", o.c_str());
        return false;
      }
      if (rep == 0) std::printf("    client 0: %s", g.outputs[0].c_str());
      for (const auto& o : outs)
        if (!same_as(o / ("v" + std::to_string(*v)) / "checkpoint", data)) {
          std::fprintf(stderr, "client output differs from the checkpoint: %s\n", o.c_str());
          return false;
        }
      return true;
    };
    const auto run_curl_files = [&]() -> bool {
      // Each file is fsynced after its curl exits, as fetch() fsyncs its output.
      cmds.clear();
      for (std::size_t i = 0; i < st.clients; ++i) {
        remove_quiet(files[i]);
        cmds.push_back(curl_argv(i, files[i].string()));
      }
      t0 = clk::now();
      g = run_group(cmds);
      for (const auto& f : files) g.ok = fsync_file(f) && g.ok;
      rr.curl_par_file = secs(t0, clk::now());
      rr.curl_file_user = g.cpu_user;
      rr.curl_file_sys = g.cpu_sys;
      return check_curl(g);
    };
    if (rep % 2 == 0) {
      if (!run_fetch() || !run_curl_files()) return false;
    } else {
      if (!run_curl_files() || !run_fetch()) return false;
    }
    // 6. baseline: one curl alone.
    g = run_group({curl_argv(0, "/dev/null")});
    if (!check_curl(g)) return false;
    rr.curl_one = g.seconds;

    const double total = static_cast<double>(size) * static_cast<double>(st.clients) / 1e6;
    std::printf("    rep %zu: publish %.2f s, relay sync %.2f s, fetch x%zu %.2f s (%.0f MB/s), curl x%zu %.2f s "
                "(%.0f MB/s), curl x%zu to files %.2f s, curl x1 %.2f s; ratio %.2f; CPU s user/sys: fetch %.2f/%.2f, "
                "curl to files %.2f/%.2f; load %s\n",
                rep + 1, rr.publish, rr.relay_sync, st.clients, rr.fetch, total / rr.fetch, st.clients, rr.curl_par,
                total / rr.curl_par, st.clients, rr.curl_par_file, rr.curl_one, rr.curl_par / rr.fetch, rr.fetch_user,
                rr.fetch_sys, rr.curl_file_user, rr.curl_file_sys, loadavg().c_str());
    std::fflush(stdout);
    out.push_back(rr);
  }
  for (auto& s : relay_srv) s.stop();
  origin_srv->stop();
  remove_quiet(dir);
  return true;
}

void usage() {
  std::fprintf(stderr,
               "usage: dtrain_shard_e2e [--sizes 256M,1G] [--configs rs10_4:blake2b,none:blake2b,rs10_4:xxh3,none:xxh3]\n"
               "                        [--reps 3] [--clients 4] [--chunk-size 4M] [--parallel 8] [--split 1M] [--workdir DIR]\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "--client") return client_main(argc, argv);
  settings st;
  std::string sizes = "256M,1G", configs = "rs10_4:blake2b,none:blake2b,rs10_4:xxh3,none:xxh3";
  std::string workdir;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h" || i + 1 >= argc) {
      usage();
      return k == "--help" || k == "-h" ? 0 : 2;
    }
    const std::string v = argv[++i];
    if (k == "--sizes") sizes = v;
    else if (k == "--configs") configs = v;
    else if (k == "--reps") st.reps = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--clients") st.clients = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--parallel") st.parallel = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--workdir") workdir = v;
    else if (k == "--split") {
      const auto c = parse_size(v);
      if (!c || *c == 0) {
        std::fprintf(stderr, "bad --split\n");
        return 2;
      }
      st.split = *c;
    } else if (k == "--chunk-size") {
      const auto c = parse_size(v);
      if (!c || *c == 0) {
        std::fprintf(stderr, "bad --chunk-size\n");
        return 2;
      }
      st.chunk_size = *c;
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      usage();
      return 2;
    }
  }
  for (const auto& s : split(sizes, ',')) {
    const auto b = parse_size(s);
    if (!b || *b == 0) {
      std::fprintf(stderr, "bad size %s\n", s.c_str());
      return 2;
    }
    st.sizes.push_back(*b);
  }
  for (const auto& s : split(configs, ',')) {
    const auto c = parse_config(s);
    if (!c) {
      std::fprintf(stderr, "bad config %s (none|rsK_M):(blake2b|xxh3)\n", s.c_str());
      return 2;
    }
    st.configs.push_back(*c);
  }
  if (st.reps == 0 || st.clients == 0 || st.parallel == 0 || st.sizes.empty() || st.configs.empty()) {
    usage();
    return 2;
  }
  std::error_code ec;
  st.self = fs::read_symlink("/proc/self/exe", ec).string();
  if (ec) {
    std::fprintf(stderr, "cannot resolve /proc/self/exe\n");
    return 1;
  }
  bool own_workdir = false;
  if (workdir.empty()) {
    std::string t = (fs::temp_directory_path() / "dtrain-shard-e2e-XXXXXX").string();
    if (::mkdtemp(t.data()) == nullptr) {
      std::fprintf(stderr, "mkdtemp failed\n");
      return 1;
    }
    workdir = t;
    own_workdir = true;
  }
  st.workdir = workdir;
  fs::create_directories(st.workdir, ec);

  std::printf("dtrain_shard_e2e: origin -> 2 relays -> %zu clients (processes) on 127.0.0.1, nginx %s, "
              "chunk %s, client parallel %zu, split %s, %zu reps, hw threads %u, load %s\n",
              st.clients, dtrain::test::nginx_binary, size_name(st.chunk_size).c_str(), st.parallel, size_name(st.split).c_str(), st.reps,
              std::thread::hardware_concurrency(), loadavg().c_str());
  struct row {
    std::uint64_t size;
    std::string config;
    double publish, relay_sync, fetch, curl_par, curl_par_file, curl_one, fetch_cpu, curl_file_cpu;
  };
  std::vector<row> rows;
  bool all_ok = true;
  for (const auto size : st.sizes) {
    std::vector<std::byte> data(size);
    fill_random(data, size);
    for (const auto& c : st.configs) {
      std::printf("  %s %s\n", size_name(size).c_str(), c.name.c_str());
      std::fflush(stdout);
      std::vector<rep_result> reps;
      if (!run_cell(st, size, c, data, reps)) {
        all_ok = false;
        continue;
      }
      auto med = [&](double rep_result::*f) {
        std::vector<double> v;
        for (const auto& r : reps) v.push_back(r.*f);
        return median(v);
      };
      rows.push_back({size, c.name, med(&rep_result::publish), med(&rep_result::relay_sync), med(&rep_result::fetch),
                      med(&rep_result::curl_par), med(&rep_result::curl_par_file), med(&rep_result::curl_one),
                      med(&rep_result::fetch_user) + med(&rep_result::fetch_sys),
                      med(&rep_result::curl_file_user) + med(&rep_result::curl_file_sys)});
    }
  }
  std::printf("\nMedians of %zu reps; throughput = %zu clients x size / wall time (MB = 10^6 B). load %s\n\n",
              st.reps, st.clients, loadavg().c_str());
  std::printf("| size | config | publish | relay sync (2 relays) | dtrain fetch x%zu | curl x%zu (/dev/null) | "
              "curl x%zu (files, fsync) | curl x1 | fetch / curl | fetch / curl to files | CPU s: fetch, curl to files |\n",
              st.clients, st.clients, st.clients);
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : rows) {
    const double mb = static_cast<double>(r.size) / 1e6;
    const double n = static_cast<double>(st.clients);
    std::printf("| %s | %s | %.2f s | %.2f s | %.2f s (%.0f MB/s) | %.2f s (%.0f MB/s) | %.2f s (%.0f MB/s) | "
                "%.2f s (%.0f MB/s) | **%.2fx** | %.2fx | %.1f, %.1f |\n",
                size_name(r.size).c_str(), r.config.c_str(), r.publish, r.relay_sync, r.fetch, n * mb / r.fetch,
                r.curl_par, n * mb / r.curl_par, r.curl_par_file, n * mb / r.curl_par_file, r.curl_one,
                mb / r.curl_one, r.curl_par / r.fetch, r.curl_par_file / r.fetch, r.fetch_cpu, r.curl_file_cpu);
  }
  if (own_workdir) remove_quiet(st.workdir);
  return all_ok ? 0 : 1;
}
