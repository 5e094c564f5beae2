// dtrain/shard/relay.h: a relay mirrors an upstream (origin or another relay) into a
// local root in the same layout, checking the manifest's signature and every chunk's
// digest before anything is written; a static HTTP server (nginx) serves the root.
// Layout: docs/formats/shard_layout.md; rules: docs/shard.md "Distribution".
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/crypto/identity.h"
#include "dtrain/shard/http.h"

namespace dtrain::shard {

struct relay_sync_report {
  std::uint64_t upstream_version = 0;  ///< what upstream `latest` named
  std::uint64_t version = 0;           ///< this relay's `latest` after the sync (0: none yet)
  bool updated = false;                ///< a new version was mirrored
  std::size_t chunks_fetched = 0;      ///< chunks fetched, verified and written
  std::uint64_t bytes_fetched = 0;     ///< bytes of those chunks
  /// Chunks upstream failed to deliver in chunk_attempts tries that were rebuilt from
  /// their stripe's other chunks (manifest m > 0), verified and written; not counted in
  /// chunks_fetched or bytes_fetched. Their bad responses still count in bad_chunks.
  std::size_t chunks_rebuilt = 0;
  std::size_t bad_chunks = 0;          ///< responses whose length or digest did not match
  std::size_t retries = 0;             ///< chunk requests repeated (after a bad chunk or a transfer error)
  std::vector<std::uint64_t> pruned;   ///< versions removed by retention
};

struct relay_options {
  std::string upstream_url;  ///< base URL of the upstream root ("http://127.0.0.1:8080")
  std::filesystem::path root;  ///< created when missing; owned by this relay alone
  /// Origins whose manifests are accepted. FOOTGUN: empty accepts any signer (see
  /// open_manifest); a relay should always be given the origin's key.
  std::vector<crypto::peer_id> trusted_origins;
  std::size_t keep_versions = 5;          ///< >= 1
  std::size_t parallel = 8;               ///< concurrent chunk requests (>= 1)
  std::chrono::milliseconds timeout{30000};  ///< per HTTP request
  /// Tries per chunk (>= 1) before it is rebuilt from parity (m > 0) or the sync fails.
  std::size_t chunk_attempts = 3;
  std::uint64_t max_manifest_bytes = std::uint64_t{256} << 20;  ///< a longer manifest is data_loss
  /// Called by run() after every sync_once() (from run()'s thread); may be empty.
  std::function<void(const result<relay_sync_report>&)> on_sync;
};

/// Movable; not thread-safe (sync_once and run from one thread at a time).
class relay {
 public:
  /// Creates root if needed, removes leftovers of interrupted syncs (".tmp-*"), reads
  /// its `latest`, and sets up the HTTP fetcher.
  /// Errors: invalid_argument for an empty upstream_url or root, keep_versions,
  /// parallel or chunk_attempts 0; data_loss for a malformed local `latest`;
  /// unavailable on a filesystem error; internal when libcurl cannot start.
  static result<relay> create(relay_options opts);

  relay(relay&&) noexcept;
  relay& operator=(relay&&) noexcept;
  ~relay();

  /// One mirroring round:
  ///  1. GET upstream `latest` (a 404 is unavailable: nothing published yet). When it is
  ///     not above ours, returns ok with updated = false (a relay never goes backwards);
  ///  2. GET v<N>/manifest and open_manifest it against trusted_origins; its version must
  ///     be N. A forged (permission_denied), tampered or mislabelled (data_loss) manifest
  ///     fails the sync with nothing written;
  ///  3. GET every chunk (`parallel` at once), check length and digest against the
  ///     manifest before writing it into a temp version directory. A bad chunk or a
  ///     failed request is retried up to chunk_attempts in all. Then, without parity
  ///     (m = 0), the sync fails (data_loss naming the chunk and URL for a bad length or
  ///     digest, else the transfer's error). With parity, the chunk is *lost*: after all
  ///     fetches, each stripe's lost chunks are rebuilt from k of its verified chunks
  ///     (read back from the temp directory; a short stripe's missing data chunks count as
  ///     zero chunks), lost parity by encoding again; each rebuilt chunk's length, zero
  ///     padding and digest are checked against the manifest before it is written, and it
  ///     counts in chunks_rebuilt. Parity covers the bytes served (a delta-coded
  ///     manifest's wire bytes), so delta-coded versions rebuild the same way. A stripe
  ///     that loses more than m chunks fails the sync at once (data_loss when any of them
  ///     was a bad chunk, else the transfer's error), and a rebuilt chunk that fails its
  ///     digest (the origin signed inconsistent parity) fails it with data_loss; both
  ///     name the chunk, its URL and the reason. On failure the temp directory is
  ///     removed. Memory for a rebuild: one stripe, (k + m) x the stripe's length;
  ///  4. write the manifest bytes exactly as received, rename the directory into place,
  ///     replace `latest`, prune to keep_versions.
  /// Errors: as listed; a transfer error of `latest` or the manifest unchanged
  /// (unavailable, deadline_exceeded, ...); unavailable on a filesystem error.
  result<relay_sync_report> sync_once();

  /// Calls sync_once() every poll_interval until `stop` is requested (checked at least
  /// every 50 ms), passing each outcome to options.on_sync. Errors do not stop it: the
  /// next round tries again. Returns ok when stopped.
  status run(std::stop_token stop, std::chrono::milliseconds poll_interval);

  /// This relay's `latest` (0 before the first mirrored version).
  std::uint64_t latest() const noexcept;
  const std::filesystem::path& root() const noexcept;

 private:
  struct state;
  explicit relay(std::unique_ptr<state> s) noexcept;
  std::unique_ptr<state> s_;
};

}  // namespace dtrain::shard
