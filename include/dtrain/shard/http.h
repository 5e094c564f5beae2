// dtrain/shard/http.h: a small HTTP GET client for the shard distribution (libcurl's
// multi interface): many concurrent GETs, optional byte ranges, per-request deadlines,
// a hard cap on body size, cancellation (for hedging). Rules: docs/shard.md
// "Distribution: origin and relays".
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::shard {

/// Bytes [first, first + length) of a resource: HTTP `Range: bytes=first-(first+length-1)`.
/// length must be >= 1 (a request with length 0 completes as invalid_argument).
struct byte_range {
  std::uint64_t first = 0;
  std::uint64_t length = 0;
};

struct http_request {
  std::string url;                                  ///< http:// or https:// only; redirects are not followed
  std::optional<byte_range> range;
  std::chrono::milliseconds timeout{30000};         ///< whole-request deadline, from when the transfer starts
  std::chrono::milliseconds connect_timeout{3000};
  /// A longer body is data_loss, detected while it arrives (a hostile server cannot make
  /// us allocate more than this).
  std::uint64_t max_bytes = std::uint64_t{1} << 32;
  /// Optional caller-owned destination: the body is written straight into this memory
  /// (no allocation, no copy) instead of http_result::body, and a body longer than
  /// into.size() is data_loss like one longer than max_bytes. The memory must stay
  /// valid and untouched by the caller until poll() or get() returns this request's
  /// result, cancel() is called on it, or the fetcher is destroyed; after a failure its
  /// contents are unspecified (partial bytes).
  std::span<std::byte> into;
};

struct http_result {
  std::uint64_t id = 0;         ///< from start()
  /// ok only for 200 (no range) and 206 (range, body exactly the requested length). Else:
  ///  - unavailable: connection refused or reset, name not resolved, a truncated body
  ///    (connection closed early), HTTP 404, 5xx and any other status not listed here
  ///    (the message names the code; 3xx because redirects are not followed);
  ///  - deadline_exceeded: the request's timeout or connect_timeout ran out;
  ///  - out_of_range: HTTP 416 (the range starts past the end of the resource);
  ///  - data_loss: a body longer than max_bytes, a range answered with another length,
  ///    with 200 (range ignored) or a 206 to a request without a range;
  ///  - cancelled: cancel() was called;
  ///  - invalid_argument: a malformed URL, an unsupported scheme, a range of length 0.
  dtrain::status st;
  long http_status = 0;          ///< 0 when no response arrived
  std::vector<std::byte> body;   ///< the body when st is ok and no `into` was given; empty otherwise
  std::uint64_t body_size = 0;   ///< bytes of the body received (in `body` or in `into`)
  double seconds = 0;            ///< wall time from when the transfer left the queue to its completion
};

/// Concurrent HTTP GETs over libcurl's multi interface. Connections to the same host are
/// kept alive and reused across requests (HTTP/1.1). Not thread-safe: one owner thread
/// calls everything; different fetchers may live on different threads.
class http_fetcher {
 public:
  /// A fetcher running at most `max_parallel` transfers at once (>= 1; 0 is taken as 1).
  /// Initializes libcurl once per process (thread-safe).
  /// Errors: internal when libcurl cannot be initialized.
  static result<http_fetcher> create(std::size_t max_parallel = 16);

  http_fetcher(http_fetcher&&) noexcept;
  http_fetcher& operator=(http_fetcher&&) noexcept;
  ~http_fetcher();  ///< aborts every transfer still running

  /// Queues a GET and returns its id (1, 2, ...; never reused by this fetcher). Transfers
  /// start in order as slots free up; a request's timeout runs from its start on the wire.
  std::uint64_t start(http_request req);
  /// Aborts the request: it completes as cancelled at the next poll(). No effect on an
  /// id that already completed or is unknown.
  void cancel(std::uint64_t id);
  /// Drives the transfers, waiting up to `wait` for at least one completion, and returns
  /// every completed request (possibly none: the wait ran out, or nothing is in flight,
  /// in which case it returns at once). Each request is returned exactly once.
  std::vector<http_result> poll(std::chrono::milliseconds wait);
  /// Requests started and not yet returned by poll() (queued, running or completed).
  std::size_t in_flight() const noexcept;
  /// Blocking convenience: start(req) and drive until it completes. Other requests keep
  /// running and their results stay for the next poll(). Returns the http_result (whose
  /// st carries the outcome as above); the result itself is an error only when the
  /// fetcher is unusable.
  result<http_result> get(http_request req);

 private:
  struct impl;
  explicit http_fetcher(std::unique_ptr<impl> p) noexcept;
  std::unique_ptr<impl> impl_;
};

}  // namespace dtrain::shard
