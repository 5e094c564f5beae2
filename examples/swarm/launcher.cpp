// The swarm launcher: a coordinator, N peer processes, a live progress line, optional
// churn (SIGKILL a random peer, start a fresh one), and a closing summary.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "common/child_process.h"
#include "dtrain/membership/coordinator.h"
#include "swarm.h"

namespace dtrain::swarm {
namespace {

using namespace std::chrono;
using examples::child;

// The value of "key=" in a report line, or `def`.
double field(const std::string& line, const std::string& key, double def = 0) {
  const auto k = line.find(" " + key + "=");
  if (k == std::string::npos) return def;
  return std::strtod(line.c_str() + k + key.size() + 2, nullptr);
}

struct tracked {
  std::unique_ptr<child> proc;
  std::size_t read = 0;  // lines consumed
  double round = 0, loss = 0, sent = 0, compute = 0, wall = 0;
  bool member = false;  // has joined and holds the swarm's state
  bool done = false, killed = false, failed = false;
  int exit_code = -1;
  std::string last_error;
};

std::vector<std::string> peer_argv(const options& o, const char* self, const std::string& coord, const std::string& id) {
  auto num = [](auto v) { return std::to_string(v); };
  std::vector<std::string> a = {self, "--peer", "--coordinator", coord, "--coordinator-id", id,
                                "--codec", o.codec, "--collective", o.collective, "--topology", o.topology,
                                "--outer-steps", num(o.outer_steps), "--H", num(o.inner_steps), "--batch", num(o.batch),
                                "--lr", num(o.lr), "--seed", num(o.seed), "--timeout-ms", num(o.timeout.count()),
                                "--listen", o.listen, "--streams", num(o.streams), "--probe", o.probe ? "1" : "0",
                                "--wan-mbps", num(o.wan_mbps), "--wan-ms", num(o.wan_ms)};
  if (!o.text.empty()) {
    a.push_back("--text");
    a.push_back(o.text);
  }
  return a;
}

}  // namespace

int run_launcher(const options& o, const char* self) {
  std::unique_ptr<membership::coordinator> coord;
  std::string addr = o.coordinator, id = o.coordinator_id;
  const membership::identity coord_key = membership::identity::generate();
  membership::coordinator_options co;
  if (addr.empty()) {
    co.listen = net::tcp::address{o.listen, 0};
    co.heartbeat_interval = milliseconds(500);
    co.failure_deadline = milliseconds(2000);
    co.min_peers = o.serve_only ? 1 : o.peers;
    co.logger = [](std::string_view) {};
    auto c = membership::coordinator::create(coord_key, co);
    if (!c.ok()) {
      std::fprintf(stderr, "dtrain-swarm: %s\n", c.status().to_string().c_str());
      return 1;
    }
    coord = std::move(*c);
    addr = coord->address().to_string();
    id = coord->id().hex();
    co.listen = coord->address();  // a restart binds the same port
  }
  bool restarted = false;
  std::printf("dtrain-swarm: coordinator %s (key %s)\n", addr.c_str(), id.empty() ? "not pinned" : id.c_str());
  if (o.serve_only) {
    std::printf("serving; peers join with: dtrain-swarm --coordinator %s --coordinator-id %s\n", addr.c_str(), id.c_str());
    std::fflush(stdout);
    for (;;) std::this_thread::sleep_for(seconds(60));
  }
  std::printf("dtrain-swarm: %zu peers, DiLoCo H=%u, %zu outer steps, codec %s, %s%s%s%s\n", o.peers, o.inner_steps,
              o.outer_steps, o.codec.c_str(), o.collective.c_str(),
              o.collective == "gossip" || o.collective == "push_sum" ? (" on " + o.topology).c_str() : "",
              o.churn ? ", churn on" : "", o.wan_mbps > 0 ? ", shaped links" : "");
  std::fflush(stdout);

  std::vector<tracked> peers;
  auto spawn = [&] {
    tracked t;
    t.proc = std::make_unique<child>(peer_argv(o, self, addr, id));
    peers.push_back(std::move(t));
  };
  for (std::size_t i = 0; i < o.peers; ++i) spawn();

  std::mt19937_64 rng(o.seed * 7919 + 1);
  std::uniform_real_distribution<double> pause(o.churn_min_s, o.churn_max_s);
  const auto t0 = steady_clock::now();
  auto next_churn = t0 + duration_cast<steady_clock::duration>(duration<double>(pause(rng) + 5.0));
  int kills = 0, spawned_later = 0, recoveries = 0, joins = 0, repairs = 0;
  double first_loss = -1, val = -1, global_round = 0;
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  bool stopped_at_limit = false, hang = false;
  double last_round = 0;
  auto last_progress = t0;
  auto last_print = t0;
  std::vector<std::string> events;

  for (;;) {
    std::this_thread::sleep_for(milliseconds(50));
    std::size_t alive = 0, running = 0;
    bool any_done = false;
    for (std::size_t i = 0; i < peers.size(); ++i) {
      auto& p = peers[i];
      for (const auto& line : p.proc->lines_from(p.read)) {
        ++p.read;
        if (line.rfind("OUTER", 0) == 0) {
          p.round = field(line, "round");
          p.loss = field(line, "loss");
          p.sent = field(line, "sent");
          p.compute = field(line, "compute");
          p.wall = field(line, "wall");
          global_round = std::max(global_round, p.round);
          if (first_loss < 0) first_loss = p.loss;
        } else if (line.rfind("RING", 0) == 0) {
          events.push_back("measured links; ring order applied: " + line.substr(5));
        } else if (line.rfind("REPAIR", 0) == 0) {
          ++repairs;
          events.push_back("peer " + std::to_string(i) + ": " + line);
        } else if (line.rfind("RECOVERED", 0) == 0) {
          ++recoveries;
        } else if (line.rfind("JOINED", 0) == 0) {
          ++joins;
          p.member = true;
          if (field(line, "round") > 0) events.push_back("peer " + std::to_string(i) + " joined at round " +
                                                         std::to_string(static_cast<int>(field(line, "round"))) +
                                                         ", pulled " + std::to_string(static_cast<long>(field(line, "pulled") / 1024)) + " KiB");
        } else if (line.rfind("DONE", 0) == 0) {
          p.done = true;
          p.sent = field(line, "sent");
          p.compute = field(line, "compute");
          p.wall = field(line, "wall");
          if (field(line, "val", -1) >= 0) val = field(line, "val");
        } else if (line.rfind("ERROR", 0) == 0) {
          p.failed = true;
          p.last_error = line;
        }
      }
      if (p.exit_code < 0) {
        p.exit_code = p.proc->poll_exit();
        if (p.exit_code < 0) {
          ++running;
          if (!p.done) ++alive;
        }
      }
      any_done |= p.done;
    }
    const auto now = steady_clock::now();
    if (running == 0) break;
    if (o.max_seconds > 0 && now - t0 > duration<double>(o.max_seconds)) {
      for (auto& p : peers)
        if (p.exit_code < 0) p.proc->signal(SIGKILL);
      stopped_at_limit = true;
      for (auto& p : peers)
        if (p.exit_code < 0) p.exit_code = p.proc->wait_exit(seconds(5));
      break;
    }
    if (global_round > last_round) {
      last_round = global_round;
      last_progress = now;
    } else if (o.max_seconds > 0 && now - last_progress > seconds(o.stall_seconds)) {
      std::fprintf(stderr, "\ndtrain-swarm: no outer step completed for %ld s: hang\n", static_cast<long>(o.stall_seconds));
      hang = true;
      for (auto& p : peers)
        if (p.exit_code < 0) p.proc->signal(SIGKILL);
      for (auto& p : peers)
        if (p.exit_code < 0) p.exit_code = p.proc->wait_exit(seconds(5));
      break;
    }
    if (now - t0 > minutes(30)) {
      std::fprintf(stderr, "\ndtrain-swarm: giving up after 30 minutes\n");
      break;
    }
    // Churn: never below two live peers, and quiet near the end so the run can finish.
    // Coordinator restart: its state is soft, the peers re-populate the new one.
    if (coord && o.restart_coordinator_at > 0 && !restarted && global_round >= static_cast<double>(o.restart_coordinator_at)) {
      coord.reset();
      std::this_thread::sleep_for(milliseconds(300));
      auto c = membership::coordinator::create(coord_key, co);
      for (int i = 0; i < 50 && !c.ok(); ++i) {  // the port may be briefly held (TIME_WAIT races)
        std::this_thread::sleep_for(milliseconds(100));
        c = membership::coordinator::create(coord_key, co);
      }
      if (!c.ok()) {
        std::fprintf(stderr, "\ndtrain-swarm: coordinator restart failed: %s\n", c.status().to_string().c_str());
        return 1;
      }
      coord = std::move(*c);
      restarted = true;
      events.push_back("restarted the coordinator at round " + std::to_string(static_cast<int>(global_round)) +
                       " (same key and port; the peers re-populated it)");
    }
    const bool churn_window = o.max_seconds > 0 ? now - t0 < duration<double>(o.max_seconds - 3)
                                                : global_round + 3 < static_cast<double>(o.outer_steps);
    if (o.churn && !any_done && now >= next_churn && churn_window) {
      std::vector<std::size_t> live;
      std::size_t members = 0;
      for (std::size_t i = 0; i < peers.size(); ++i)
        if (peers[i].exit_code < 0 && !peers[i].done) {
          live.push_back(i);
          members += peers[i].member ? 1 : 0;
        }
      // Kill only while at least two members would survive: the swarm's state lives in
      // its members (a peer still joining holds none yet).
      const bool kill = members > 2 && (live.size() > o.peers || std::bernoulli_distribution(0.5)(rng));
      if (kill) {
        std::size_t victim = live[std::uniform_int_distribution<std::size_t>(0, live.size() - 1)(rng)];
        if (members <= 3 && peers[victim].member)  // keep two members even if a joiner never arrives
          for (auto i : live)
            if (!peers[i].member) victim = i;
        peers[victim].proc->signal(SIGKILL);
        peers[victim].killed = true;
        ++kills;
        events.push_back("killed peer " + std::to_string(victim) + " (SIGKILL) at round " + std::to_string(static_cast<int>(global_round)));
      } else {
        spawn();
        ++spawned_later;
        events.push_back("started peer " + std::to_string(peers.size() - 1) + " at round " + std::to_string(static_cast<int>(global_round)));
      }
      next_churn = now + duration_cast<steady_clock::duration>(duration<double>(pause(rng)));
    }
    if (now - last_print > milliseconds(tty ? 200 : 5000)) {
      last_print = now;
      double loss = 0, sent = 0;
      int n = 0;
      for (auto& p : peers) {
        sent += p.sent;
        if (p.exit_code < 0 && p.round > 0) {
          loss += p.loss;
          ++n;
        }
      }
      const double el = duration<double>(now - t0).count();
      const double eta = global_round > 0 ? el / global_round * (static_cast<double>(o.outer_steps) - global_round) : 0;
      std::printf("%sround %3.0f/%zu | peers %zu | train loss %.3f | sent %7.1f MB | recoveries %d | %5.1fs | ETA %4.0fs%s",
                  tty ? "\r" : "", global_round, o.outer_steps, alive, n ? loss / n : 0.0, sent / 1e6, recoveries, el, eta,
                  tty ? "  " : "\n");
      std::fflush(stdout);
    }
  }
  const double wall = duration<double>(steady_clock::now() - t0).count();
  if (!o.log_dir.empty()) {
    for (std::size_t i = 0; i < peers.size(); ++i) {
      const std::string path = o.log_dir + "/peer-" + std::to_string(i) + ".log";
      if (FILE* f = std::fopen(path.c_str(), "w")) {
        for (const auto& l : peers[i].proc->lines()) std::fprintf(f, "%s\n", l.c_str());
        std::fprintf(f, "exit %d%s\n", peers[i].exit_code, peers[i].killed ? " (killed by churn)" : "");
        std::fclose(f);
      }
    }
  }
  double sent = 0, compute = 0, pwall = 0;
  int errors = 0, finished = 0;
  for (auto& p : peers) {
    sent += p.sent;
    compute += p.compute;
    pwall += p.wall;
    if (p.done) ++finished;
    if (!p.killed && (p.failed || (p.exit_code != 0 && !p.done && !stopped_at_limit))) {
      ++errors;
      std::fprintf(stderr, "\npeer error: %s (exit %d)\n", p.last_error.c_str(), p.exit_code);
    }
  }
  std::printf("\n\n");
  for (const auto& e : events) std::printf("  - %s\n", e.c_str());
  std::printf("\n== dtrain-swarm summary ==\n");
  std::printf("  outer steps          %.0f of %zu (H = %u, %s, %s)\n", global_round, o.outer_steps, o.inner_steps,
              o.codec.c_str(), o.collective.c_str());
  std::printf("  train loss           %.4f -> %.4f (first and last outer step)\n", first_loss,
              [&] {
                double l = 0;
                int n = 0;
                for (auto& p : peers)
                  if (p.done) {
                    l += p.loss;
                    ++n;
                  }
                return n ? l / n : 0.0;
              }());
  std::printf("  validation loss      %.4f (floor of the Markov language: 1.2440)\n", val);
  std::printf("  bytes sent           %.1f MB in all (%.2f MB per peer-round)\n", sent / 1e6,
              global_round > 0 ? sent / 1e6 / global_round / static_cast<double>(std::max<std::size_t>(1, o.peers)) : 0.0);
  std::printf("  peers                %zu started, %d killed, %d started during the run, %d finished\n", peers.size(),
              kills, spawned_later, finished);
  std::printf("  recoveries           %d (survivors that rolled back, regrouped and redid a round)\n", recoveries);
  std::printf("  consensus repairs    %d (outer steps after which members' parameters differed)\n", repairs);
  std::printf("  compute utilization  %.0f%% (forward/backward time over peer wall time)\n",
              pwall > 0 ? 100.0 * compute / pwall : 0.0);
  std::printf("  wall time            %.1f s\n", wall);
  if (stopped_at_limit) {
    std::printf("  stopped at the %.0f s limit; no hang, no error, every step bit-identical: %s\n", o.max_seconds,
                errors == 0 && !hang && repairs == 0 ? "yes" : "NO");
    return errors == 0 && !hang && repairs == 0 && global_round > 0 ? 0 : 1;
  }
  return errors == 0 && !hang && repairs == 0 && finished > 0 && global_round >= static_cast<double>(o.outer_steps) ? 0 : 1;
}

}  // namespace dtrain::swarm
