// examples/swarm/swarm.h: the options shared by the swarm's launcher and its peers, and
// their entry points. A launcher starts a coordinator and N peer processes (this same
// binary with --peer); peers train the tiny GPT with DiLoCo over TCP and report progress
// as lines on stdout ("JOINED ...", "OUTER ...", "RECOVERED ...", "DONE ...").
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace dtrain::swarm {

struct options {
  // --- the launcher ---
  std::size_t peers = 4;              ///< peer processes started here
  std::string coordinator;            ///< HOST:PORT of a remote coordinator; empty = start one here
  std::string coordinator_id;         ///< its public key (64 hex digits) to pin; optional
  std::string listen = "127.0.0.1";   ///< host the peers' data plane and the coordinator bind
  bool churn = false;                 ///< kill and restart random peers while training
  double churn_min_s = 4.0, churn_max_s = 8.0;  ///< pause between churn events
  bool serve_only = false;            ///< run only a coordinator (for remote peers)
  double max_seconds = 0;             ///< stop everything after this long (soak tests); 0 = run to the end
  long stall_seconds = 30;            ///< with max_seconds: no outer step for this long is a hang
  std::size_t restart_coordinator_at = 0;  ///< restart the local coordinator at this round (0 = never)
  std::string log_dir;                ///< write each peer's report lines to LOG_DIR/peer-<i>.log
  // --- training (passed on to every peer) ---
  std::string codec = "identity";
  std::string collective = "ring";    ///< ring | butterfly | gossip | push_sum
  std::string topology = "complete";  ///< for gossip and push_sum
  std::size_t outer_steps = 200;      ///< global outer steps (DiLoCo rounds) to train
  std::uint32_t inner_steps = 25;     ///< H
  std::size_t batch = 8;
  double lr = 3e-3;                   ///< inner AdamW
  std::uint64_t seed = 1;
  std::string text;                   ///< training text file; empty = the Markov language
  std::chrono::milliseconds timeout{8000};  ///< per exchange
  bool probe = true;                  ///< measure links and apply the bottleneck ring order
  unsigned streams = 1;               ///< TCP streams per peer pair
  double wan_mbps = 0;                ///< user-space shaper rate per link (0 = off)
  double wan_ms = 0;                  ///< one-way latency added by the shaper
};

/// Parses argv into `o` (either role). Returns false after printing the usage.
bool parse(int argc, char** argv, options& o, bool& peer_mode);
/// The launcher (default role). Returns the process exit status.
int run_launcher(const options& o, const char* self_exe);
/// One peer (--peer). Returns the process exit status.
int run_peer(const options& o);

}  // namespace dtrain::swarm
