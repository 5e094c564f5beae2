// lib/shard/client_detail.h: internals of the multi-relay client shared by client.cpp
// (the public client), fetch_run.{h,cpp} and fetch_files.cpp (one fetch) and
// client_io.cpp (files, the stable marker, manifest discovery); relay.cpp uses its file
// helpers (unique_fd, pread_all, errno_status) too.
// Not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "dtrain/core/status.h"
#include "dtrain/shard/client.h"
#include "dtrain/shard/http.h"
#include "dtrain/shard/manifest.h"

namespace dtrain::shard::client_detail {

inline constexpr std::uint64_t max_manifest_bytes = std::uint64_t{256} << 20;
inline constexpr std::uint64_t max_latest_bytes = 64;

inline status make_status(status_code c, std::string m) { return {c, std::move(m)}; }
/// ENOSPC, EDQUOT, ENOMEM: resource_exhausted; anything else: unavailable.
status errno_status(const std::string& what, int err);
status fs_status(const std::string& what, const std::error_code& ec);

/// A file descriptor closed on destruction.
struct unique_fd {
  int fd = -1;
  unique_fd() = default;
  explicit unique_fd(int f) : fd(f) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd();
};

/// A read-only private mapping of a whole file, unmapped on destruction. Movable.
class mapped_file {
 public:
  mapped_file() = default;
  mapped_file(mapped_file&& o) noexcept;
  mapped_file& operator=(mapped_file&& o) noexcept;
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file();
  std::span<const std::byte> bytes() const noexcept { return {static_cast<const std::byte*>(addr_), size_}; }

 private:
  friend result<mapped_file> map_file(const std::filesystem::path& p);
  void* addr_ = nullptr;
  std::size_t size_ = 0;
};
/// Maps `p` (an empty file gives an empty span). Errors: unavailable when it cannot be
/// opened or mapped.
result<mapped_file> map_file(const std::filesystem::path& p);

status pwrite_all(int fd, std::span<const std::byte> b, std::uint64_t off, const std::string& what);
/// data_loss when the file ends early.
status pread_all(int fd, std::span<std::byte> b, std::uint64_t off, const std::string& what);
status fsync_path(const std::filesystem::path& p);
/// Writes `bytes` to `p` via p.tmp + rename; with `durable`, fsyncs the file and the directory.
status write_file_atomic(const std::filesystem::path& p, std::span<const std::byte> bytes, bool durable);
/// The whole file, or nullopt when it does not exist, cannot be read or exceeds `max` bytes.
std::optional<std::vector<std::byte>> read_small_file(const std::filesystem::path& p, std::uint64_t max);

/// <out>/stable = "<version>\n", via temp + fsync + rename + fsync of out.
status write_stable(const std::filesystem::path& out, std::uint64_t version);
/// The version <out>/stable names; nullopt when there is none or it is not a number.
std::optional<std::uint64_t> read_stable(const std::filesystem::path& out);
/// Keeps `current` and the newest keep - 1 other complete versions in out; removes the
/// partial downloads of versions older than `current`. Best effort.
void prune_output(const std::filesystem::path& out, std::uint64_t current, std::size_t keep);

status check_options(const fetch_options& o, bool need_out);
http_request make_request(const fetch_options& o, std::string url, std::uint64_t max_bytes);

struct manifest_pick {
  manifest man;
  std::vector<std::byte> bytes;  ///< the signed bytes as served
};
using bad_list = std::vector<std::pair<std::string, std::string>>;

/// The first manifest of `version` that opens against o.trusted_origins and states that
/// version, asking every relay at once (the rest are cancelled). Rejected manifests are
/// appended to `bad`. Errors: the worst seen (permission_denied > data_loss > others).
result<manifest_pick> fetch_manifest(http_fetcher& f, const fetch_options& o, std::uint64_t version, bad_list& bad);
/// The highest version some relay's `latest` names that has a valid manifest.
result<manifest_pick> find_latest(http_fetcher& f, const fetch_options& o, bad_list& bad);

}  // namespace dtrain::shard::client_detail
