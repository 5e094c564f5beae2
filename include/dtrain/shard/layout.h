// dtrain/shard/layout.h: the directory layout that origins and relays write and any
// static HTTP server serves (latest, v<N>/manifest, v<N>/chunk/<i>): relative paths for
// URLs, the strict `latest` parser, and the crash-safe writer used by the publisher and
// the relay. Format and atomicity argument: docs/formats/shard_layout.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::shard {

/// "latest".
std::string layout_latest_path();
/// "v<version>/manifest".
std::string layout_manifest_path(std::uint64_t version);
/// "v<version>/chunk/<index>" (global chunk index: data chunks, then parity).
std::string layout_chunk_path(std::uint64_t version, std::size_t index);
/// `base` + "/" + `rel`, with at most one slash between them ("http://h:1/root" + "latest").
std::string layout_url(std::string_view base, std::string_view rel);

/// The bytes of a `latest` file for `version`: ASCII decimal and "\n".
std::string format_latest(std::uint64_t version);
/// Parses a `latest` file: 1..20 ASCII digits without a leading zero, then exactly one
/// "\n", value in [1, 2^64 - 1]. Errors: data_loss for anything else.
result<std::uint64_t> parse_latest(std::span<const std::byte> bytes);

/// The version `root/latest` names; 0 when the file does not exist.
/// Errors: data_loss for a malformed file, unavailable when it cannot be read.
result<std::uint64_t> read_latest(const std::filesystem::path& root);
/// Versions with a directory `root/v<N>` (N as written by layout_*), ascending. Entries
/// with other names are ignored. Errors: unavailable when root cannot be listed.
result<std::vector<std::uint64_t>> list_versions(const std::filesystem::path& root);
/// Removes leftovers of interrupted writes: every entry of root whose name starts with
/// ".tmp-". Only one writer may own a root. Errors: unavailable on a filesystem error.
status remove_stale_temps(const std::filesystem::path& root);
/// Replaces root/latest atomically: writes ".tmp-latest-<random>", fsyncs it, renames it
/// over `latest`, fsyncs root. Errors: unavailable on a filesystem error (the previous
/// `latest` is then unchanged).
status write_latest(const std::filesystem::path& root, std::uint64_t version);
/// Removes version directories older than the newest `keep` ones; `latest` (the version
/// root/latest names) is never removed. @pre keep >= 1. Returns the versions removed.
/// Errors: unavailable on a filesystem error (what was removed stays removed).
result<std::vector<std::uint64_t>> prune_versions(const std::filesystem::path& root, std::size_t keep,
                                                  std::uint64_t latest);

/// Writes one version directory invisibly, then publishes it with one rename:
/// begin() creates root/.tmp-v<N>-<random>/chunk/, write_chunk and write_manifest fill
/// it (each file written and fsynced), commit() fsyncs the directories and renames the
/// temp directory to root/v<N> (then fsyncs root). Destroying an uncommitted writer
/// removes its temp directory. It does not touch `latest`: call write_latest after
/// commit(). Movable, not copyable; not thread-safe.
class version_writer {
 public:
  /// Errors: failed_precondition when root/v<version> already exists; invalid_argument
  /// for version 0; unavailable on a filesystem error.
  static result<version_writer> begin(const std::filesystem::path& root, std::uint64_t version);

  version_writer(version_writer&& o) noexcept;
  version_writer& operator=(version_writer&& o) noexcept;
  version_writer(const version_writer&) = delete;
  version_writer& operator=(const version_writer&) = delete;
  ~version_writer();

  /// Writes chunk/<index>. Errors: unavailable on a filesystem error.
  status write_chunk(std::size_t index, std::span<const std::byte> bytes);
  /// Writes manifest. Errors: unavailable on a filesystem error.
  status write_manifest(std::span<const std::byte> bytes);
  /// Makes root/v<version> appear, complete. Errors: failed_precondition when it appeared
  /// meanwhile, unavailable on a filesystem error (the temp directory is then removed).
  status commit();
  /// Removes the temp directory now (also done by the destructor).
  void abandon() noexcept;

  std::uint64_t version() const noexcept { return version_; }
  const std::filesystem::path& temp_dir() const noexcept { return tmp_; }

 private:
  version_writer() = default;
  std::filesystem::path root_;
  std::filesystem::path tmp_;  // empty once committed or abandoned
  std::uint64_t version_ = 0;
};

}  // namespace dtrain::shard
