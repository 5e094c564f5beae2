// dtrain-swarm (examples/swarm): DiLoCo over TCP with membership. By default it starts a
// coordinator and N peer processes on this host that train the tiny GPT together, shows
// live progress and closes with a summary (loss, bytes, recoveries, utilization).
//
//   dtrain-swarm                                   # 4 peers, a couple of minutes
//   dtrain-swarm --churn                           # kill and restart random peers meanwhile
//   dtrain-swarm --codec fp4 --peers 6
//   dtrain-swarm --collective gossip --topology one_peer_exponential
//   dtrain-swarm --serve                           # only a coordinator, for remote peers
//   dtrain-swarm --coordinator HOST:PORT --coordinator-id KEY --listen MY_IP --peers 2
#include <cstdio>
#include <cstdlib>
#include <string>

#include "swarm.h"

namespace dtrain::swarm {

namespace {
void usage() {
  std::fprintf(stderr,
               "usage: dtrain-swarm [--peers N] [--churn] [--codec SPEC] [--collective ring|butterfly|gossip|push_sum]\n"
               "                    [--topology NAME] [--outer-steps K] [--H H] [--batch B] [--lr LR] [--seed S]\n"
               "                    [--text FILE] [--timeout-ms T] [--probe 0|1] [--streams S]\n"
               "                    [--wan-mbps RATE --wan-ms LATENCY]  (user-space link shaper)\n"
               "                    [--churn-min S --churn-max S] [--max-seconds T [--stall-seconds S]]  (soak)\n"
               "                    [--restart-coordinator-at ROUND]\n"
               "                    [--coordinator HOST:PORT [--coordinator-id HEX]] [--listen HOST] [--serve] [--log-dir DIR]\n");
}
}  // namespace

bool parse(int argc, char** argv, options& o, bool& peer_mode) {
  peer_mode = false;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--peer") { peer_mode = true; continue; }
    if (k == "--churn") { o.churn = true; continue; }
    if (k == "--serve") { o.serve_only = true; continue; }
    if (k == "--help" || k == "-h" || i + 1 >= argc) { usage(); return false; }
    const std::string v = argv[++i];
    char* end = nullptr;
    const double num = std::strtod(v.c_str(), &end);
    const bool is_num = end != v.c_str() && *end == '\0';
    auto need = [&]() { if (!is_num) { std::fprintf(stderr, "%s: a number expected\n", k.c_str()); } return is_num; };
    if (k == "--peers") { if (!need()) return false; o.peers = static_cast<std::size_t>(num); }
    else if (k == "--coordinator") o.coordinator = v;
    else if (k == "--coordinator-id") o.coordinator_id = v;
    else if (k == "--listen") o.listen = v;
    else if (k == "--log-dir") o.log_dir = v;
    else if (k == "--codec") o.codec = v;
    else if (k == "--collective") o.collective = v;
    else if (k == "--topology") o.topology = v;
    else if (k == "--text") o.text = v;
    else if (k == "--outer-steps") { if (!need()) return false; o.outer_steps = static_cast<std::size_t>(num); }
    else if (k == "--H") { if (!need()) return false; o.inner_steps = static_cast<std::uint32_t>(num); }
    else if (k == "--batch") { if (!need()) return false; o.batch = static_cast<std::size_t>(num); }
    else if (k == "--lr") { if (!need()) return false; o.lr = num; }
    else if (k == "--seed") { if (!need()) return false; o.seed = static_cast<std::uint64_t>(num); }
    else if (k == "--timeout-ms") { if (!need()) return false; o.timeout = std::chrono::milliseconds(static_cast<long>(num)); }
    else if (k == "--probe") { if (!need()) return false; o.probe = num != 0; }
    else if (k == "--streams") { if (!need()) return false; o.streams = static_cast<unsigned>(num); }
    else if (k == "--wan-mbps") { if (!need()) return false; o.wan_mbps = num; }
    else if (k == "--wan-ms") { if (!need()) return false; o.wan_ms = num; }
    else if (k == "--churn-min") { if (!need()) return false; o.churn_min_s = num; }
    else if (k == "--churn-max") { if (!need()) return false; o.churn_max_s = num; }
    else if (k == "--restart-coordinator-at") { if (!need()) return false; o.restart_coordinator_at = static_cast<std::size_t>(num); }
    else if (k == "--max-seconds") { if (!need()) return false; o.max_seconds = num; }
    else if (k == "--stall-seconds") { if (!need()) return false; o.stall_seconds = static_cast<long>(num); }
    else { std::fprintf(stderr, "unknown option %s\n", k.c_str()); usage(); return false; }
  }
  if (o.peers == 0 || o.peers > 64 || o.outer_steps == 0 || o.inner_steps == 0 || o.batch == 0) {
    std::fprintf(stderr, "dtrain-swarm: --peers 1..64, --outer-steps, --H and --batch >= 1\n");
    return false;
  }
  return true;
}

}  // namespace dtrain::swarm

int main(int argc, char** argv) {
  dtrain::swarm::options o;
  bool peer = false;
  if (!dtrain::swarm::parse(argc, argv, o, peer)) return 2;
  if (peer) return dtrain::swarm::run_peer(o);
  return dtrain::swarm::run_launcher(o, "/proc/self/exe");
}
