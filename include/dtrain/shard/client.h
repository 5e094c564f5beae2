// dtrain/shard/client.h: the multi-relay client: fetches a checkpoint version over plain
// HTTP from several relays at once (range requests, weighted relay choice, hedging),
// verifies every chunk as it arrives, rebuilds from any k of n, resumes after a kill and
// marks the version stable atomically. Rules: docs/shard.md "Distribution: the client";
// served layout: docs/formats/shard_layout.md; resume file: docs/formats/shard_resume.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/crypto/identity.h"
#include "dtrain/shard/relay_scoring.h"

namespace dtrain::shard {

struct fetch_options {
  /// Base URLs ("http://host:port" or with a path prefix) serving the layout of
  /// docs/formats/shard_layout.md; the origin can be one of them. At least one.
  std::vector<std::string> relays;
  /// Manifests must be signed by one of these. Required non-empty unless allow_any_origin.
  std::vector<crypto::peer_id> trusted_origins;
  /// FOOTGUN: accept a manifest signed by anyone (the signature then proves only that the
  /// bytes were not altered after someone signed them).
  bool allow_any_origin = false;
  /// Output: <out>/v<N>/checkpoint, <out>/v<N>/manifest, <out>/stable (ASCII N + "\n");
  /// while downloading, <out>/v<N>.partial/{checkpoint,manifest,resume}.
  std::filesystem::path out_dir;
  std::size_t parallel = 8;                ///< requests in flight (hedges may add up to as many again)
  std::size_t max_attempts_per_chunk = 4;  ///< failed attempts per chunk, across relays, before giving up on it
  /// Chunks longer than this are fetched as ranges of this size, each from a relay of its
  /// own, assembled, then verified as a whole chunk. >= 1.
  std::uint64_t split_bytes = std::uint64_t{1} << 20;
  /// A request slower than max(hedge_min, hedge_factor x median time of completed requests
  /// of similar size) gets a duplicate on another relay; the first copy wins, the other is
  /// cancelled. hedge_factor <= 0 disables hedging.
  double hedge_factor = 2.0;
  std::chrono::milliseconds hedge_min{200};
  std::chrono::milliseconds request_timeout{30000};  ///< per request
  std::chrono::milliseconds connect_timeout{3000};   ///< per request
  /// Complete version directories kept in out_dir (the new stable one included; >= 1).
  std::size_t keep_versions = 3;
  /// <out>/stable only moves forward: fetching a version older than the one it names
  /// downloads it but leaves stable (and every version directory) alone, unless this is
  /// set (a deliberate rollback).
  bool allow_rollback = false;
  /// With a `client`: a relay found down (connection refused or reset) is left out of that
  /// client's later fetches for this long, then tried again. The free function fetch()
  /// starts fresh every call.
  std::chrono::milliseconds down_retry_after{30000};
  /// Seeds the weighted relay choice (reproducible runs).
  std::uint64_t seed = 0;
  /// Polled between events: returning true stops the fetch (cancelled), leaving the
  /// partial download and its resume file for the next call.
  std::function<bool()> should_stop;
  /// Test hook: stop (cancelled) once at least this many chunks were verified in this
  /// call (chunks are verified in batches, so a few more may be).
  std::optional<std::size_t> stop_after_chunks;
};

struct fetch_report {
  std::uint64_t version = 0;
  std::uint64_t bytes_downloaded = 0;  ///< body bytes received in this call (hedge losers and rejects included)
  std::size_t chunks_from_parity = 0;  ///< data chunks rebuilt from parity instead of fetched
  std::size_t hedged = 0;              ///< duplicate requests started by hedging
  std::size_t retries = 0;             ///< failed or rejected requests (each led to a retry or a replacement)
  /// In fetch_options::relays order. With a `client`, the scores and counters carry over
  /// from its earlier fetches (cumulative); with the free function fetch(), this call's.
  std::vector<relay_score> relays;
  std::vector<std::pair<std::string, std::size_t>> bad_chunks;   ///< relay url, chunk index (digest mismatch)
  std::vector<std::pair<std::string, std::string>> bad_manifests; ///< relay url, why its manifest was rejected
  double seconds = 0;
  bool resumed = false;  ///< a valid resume file supplied verified chunks
  bool already_present = false;  ///< <out>/v<N> already held this manifest's version: nothing fetched
  /// <out>/stable names this version now; false when it names a newer one and
  /// allow_rollback is off (the version is downloaded, nothing is pruned).
  bool marked_stable = false;
};

/// The highest version that some relay advertises in `latest` AND for which some relay
/// serves a manifest that opens (signature, trusted origin, structure) and states that
/// version: a lying relay cannot make the client chase a version without a valid manifest.
/// Errors: invalid_argument for bad options; unavailable when no relay answers `latest`;
/// when no advertised version has a valid manifest, the worst manifest error seen
/// (permission_denied before data_loss before unavailable).
result<std::uint64_t> latest_version(const fetch_options& opts);

/// Fetches `version` (default: latest_version) into opts.out_dir, then marks it stable:
/// fsync, rename v<N>.partial -> v<N>, write <out>/stable via temp + rename, prune to
/// keep_versions. The manifest comes from the first relay with a valid one (others are
/// listed in bad_manifests). Every chunk is verified before it is written. On any error
/// nothing is marked stable and the previous stable version stays; the partial download
/// and its resume file stay for the next call.
/// Errors: invalid_argument for bad options; permission_denied / data_loss / unavailable
/// when no relay serves a valid manifest for the version (permission_denied: forged, i.e.
/// signed by an untrusted key; data_loss: tampered or not the requested version);
/// failed_precondition for a delta-coded version whose base version is not in out_dir
/// (<out>/v<base>/checkpoint, left by an earlier fetch; it is mapped read-only);
/// unavailable when every relay is down; data_loss when some chunk failed
/// max_attempts_per_chunk times and parity cannot stand in; cancelled by should_stop or
/// stop_after_chunks; the file system's errors (as unavailable / resource_exhausted).
result<fetch_report> fetch(const fetch_options& opts, std::optional<std::uint64_t> version = {});

/// A client for repeated fetches (one per outer step): what it measured about the relays
/// (scores, bandwidth, which are down, request times for hedging) carries over from one
/// fetch to the next, so a relay that died is not tried again on every version
/// (fetch_options::down_retry_after) and the fastest relays get the traffic from the
/// first request on. Movable; not thread-safe (one fetch at a time).
class client {
 public:
  /// Errors: invalid_argument for bad options (as fetch()).
  static result<client> create(fetch_options opts);

  /// As the free functions, with this client's options and relay memory.
  result<std::uint64_t> latest_version();
  result<fetch_report> fetch(std::optional<std::uint64_t> version = {});

  /// The relay scores so far, in fetch_options::relays order.
  const std::vector<relay_score>& relay_scores() const noexcept { return board_.scores(); }
  const fetch_options& options() const noexcept { return o_; }

 private:
  client(fetch_options o, relay_scoreboard b) : o_(std::move(o)), board_(std::move(b)) {}
  fetch_options o_;
  relay_scoreboard board_;
  request_timer timer_;
  std::vector<std::optional<std::chrono::steady_clock::time_point>> down_since_;
};

}  // namespace dtrain::shard
