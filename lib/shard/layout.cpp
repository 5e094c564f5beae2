// layout.cpp: paths of the shard directory layout, the `latest` parser and the
// crash-safe writer (POSIX open/write/fsync/rename: std::filesystem cannot fsync).
#include "dtrain/shard/layout.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "dtrain/crypto/identity.h"

namespace dtrain::shard {

namespace fs = std::filesystem;

namespace {

status fs_error(const std::string& what, const fs::path& p, int err) {
  return unavailable(what + " " + p.string() + ": " + std::strerror(err));
}

status fs_error(const std::string& what, const fs::path& p, const std::error_code& ec) {
  return unavailable(what + " " + p.string() + ": " + ec.message());
}

std::string random_suffix() {
  std::array<std::byte, 8> r{};
  crypto::random_bytes(r);
  static constexpr char hex[] = "0123456789abcdef";
  std::string s;
  for (std::byte b : r) {
    s.push_back(hex[std::to_integer<unsigned>(b) >> 4]);
    s.push_back(hex[std::to_integer<unsigned>(b) & 15]);
  }
  return s;
}

status write_file_synced(const fs::path& p, std::span<const std::byte> bytes) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fs_error("open", p, errno);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return fs_error("write", p, err);
    }
    done += static_cast<std::size_t>(w);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    return fs_error("fsync", p, err);
  }
  if (::close(fd) != 0) return fs_error("close", p, errno);
  return ok_status();
}

status fsync_dir(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fs_error("open dir", p, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return fs_error("fsync dir", p, err);
  return ok_status();
}

// "v<digits>" -> the number; 0 when the name is anything else.
std::uint64_t version_of_name(const std::string& name) {
  if (name.size() < 2 || name.size() > 21 || name[0] != 'v' || name[1] == '0') return 0;
  std::uint64_t v = 0;
  for (std::size_t i = 1; i < name.size(); ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return 0;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return 0;
    v = v * 10 + d;
  }
  return v;
}

}  // namespace

std::string layout_latest_path() { return "latest"; }
std::string layout_manifest_path(std::uint64_t version) { return "v" + std::to_string(version) + "/manifest"; }
std::string layout_chunk_path(std::uint64_t version, std::size_t index) {
  return "v" + std::to_string(version) + "/chunk/" + std::to_string(index);
}
std::string layout_url(std::string_view base, std::string_view rel) {
  std::string u(base);
  while (!u.empty() && u.back() == '/') u.pop_back();
  while (!rel.empty() && rel.front() == '/') rel.remove_prefix(1);
  u.push_back('/');
  u.append(rel);
  return u;
}

std::string format_latest(std::uint64_t version) { return std::to_string(version) + "\n"; }

result<std::uint64_t> parse_latest(std::span<const std::byte> bytes) {
  if (bytes.size() < 2 || bytes.size() > 21 || bytes.back() != std::byte{'\n'}) {
    return data_loss("latest: expected 1..20 decimal digits and a newline");
  }
  if (bytes[0] == std::byte{'0'}) return data_loss("latest: leading zero or version 0");
  std::uint64_t v = 0;
  for (std::size_t i = 0; i + 1 < bytes.size(); ++i) {
    const auto c = std::to_integer<unsigned>(bytes[i]);
    if (c < '0' || c > '9') return data_loss("latest: not a decimal number");
    const std::uint64_t d = c - '0';
    if (v > (UINT64_MAX - d) / 10) return data_loss("latest: version past 2^64 - 1");
    v = v * 10 + d;
  }
  return v;
}

result<std::uint64_t> read_latest(const fs::path& root) {
  const fs::path p = root / layout_latest_path();
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::uint64_t{0};
    return fs_error("open", p, errno);
  }
  std::array<std::byte, 32> buf{};
  std::size_t n = 0;
  for (;;) {
    const ssize_t r = ::read(fd, buf.data() + n, buf.size() - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int err = errno;
      ::close(fd);
      return fs_error("read", p, err);
    }
    if (r == 0) break;
    n += static_cast<std::size_t>(r);
    if (n == buf.size()) break;
  }
  ::close(fd);
  return parse_latest(std::span<const std::byte>(buf.data(), n));
}

result<std::vector<std::uint64_t>> list_versions(const fs::path& root) {
  std::error_code ec;
  std::vector<std::uint64_t> out;
  fs::directory_iterator it(root, ec), end;
  if (ec) return fs_error("list", root, ec);
  for (; it != end; it.increment(ec)) {
    if (ec) return fs_error("list", root, ec);
    const std::uint64_t v = version_of_name(it->path().filename().string());
    if (v == 0 || !it->is_directory(ec)) continue;
    out.push_back(v);
  }
  if (ec) return fs_error("list", root, ec);
  std::sort(out.begin(), out.end());
  return out;
}

status remove_stale_temps(const fs::path& root) {
  std::error_code ec;
  std::vector<fs::path> stale;
  fs::directory_iterator it(root, ec), end;
  if (ec) return fs_error("list", root, ec);
  for (; it != end; it.increment(ec)) {
    if (ec) return fs_error("list", root, ec);
    if (it->path().filename().string().rfind(".tmp-", 0) == 0) stale.push_back(it->path());
  }
  if (ec) return fs_error("list", root, ec);
  for (const auto& p : stale) {
    fs::remove_all(p, ec);
    if (ec) return fs_error("remove", p, ec);
  }
  return ok_status();
}

status write_latest(const fs::path& root, std::uint64_t version) {
  if (version == 0) return invalid_argument("write_latest: version 0");
  const fs::path tmp = root / (".tmp-latest-" + random_suffix());
  const std::string text = format_latest(version);
  status st = write_file_synced(tmp, std::as_bytes(std::span<const char>(text.data(), text.size())));
  if (st.ok() && ::rename(tmp.c_str(), (root / layout_latest_path()).c_str()) != 0) {
    st = fs_error("rename", tmp, errno);
  }
  if (!st.ok()) {
    std::error_code ec;
    fs::remove(tmp, ec);
    return st;
  }
  return fsync_dir(root);
}

result<std::vector<std::uint64_t>> prune_versions(const fs::path& root, std::size_t keep, std::uint64_t latest) {
  DTRAIN_ASSERT(keep >= 1);
  auto versions = list_versions(root);
  if (!versions.ok()) return std::move(versions).status();
  std::vector<std::uint64_t> removed;
  const auto& v = *versions;
  if (v.size() <= keep) return removed;
  for (std::size_t i = 0; i + keep < v.size(); ++i) {  // the oldest v.size() - keep
    if (v[i] == latest) continue;
    const fs::path p = root / ("v" + std::to_string(v[i]));
    std::error_code ec;
    fs::remove_all(p, ec);
    if (ec) return fs_error("remove", p, ec);
    removed.push_back(v[i]);
  }
  return removed;
}

result<version_writer> version_writer::begin(const fs::path& root, std::uint64_t version) {
  if (version == 0) return invalid_argument("version_writer: version 0");
  std::error_code ec;
  const fs::path final_dir = root / ("v" + std::to_string(version));
  if (fs::exists(final_dir, ec)) {
    return failed_precondition(final_dir.string() + " already exists");
  }
  version_writer w;
  w.root_ = root;
  w.version_ = version;
  w.tmp_ = root / (".tmp-v" + std::to_string(version) + "-" + random_suffix());
  fs::create_directories(w.tmp_ / "chunk", ec);
  if (ec) {
    const status st = fs_error("create", w.tmp_, ec);
    w.abandon();
    return st;
  }
  return w;
}

version_writer::version_writer(version_writer&& o) noexcept
    : root_(std::move(o.root_)), tmp_(std::exchange(o.tmp_, {})), version_(o.version_) {}

version_writer& version_writer::operator=(version_writer&& o) noexcept {
  if (this != &o) {
    abandon();
    root_ = std::move(o.root_);
    tmp_ = std::exchange(o.tmp_, {});
    version_ = o.version_;
  }
  return *this;
}

version_writer::~version_writer() { abandon(); }

void version_writer::abandon() noexcept {
  if (tmp_.empty()) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);  // best effort: a leftover is removed by remove_stale_temps
  tmp_.clear();
}

status version_writer::write_chunk(std::size_t index, std::span<const std::byte> bytes) {
  DTRAIN_ASSERT(!tmp_.empty() && "version_writer used after commit or abandon");
  return write_file_synced(tmp_ / "chunk" / std::to_string(index), bytes);
}

status version_writer::write_manifest(std::span<const std::byte> bytes) {
  DTRAIN_ASSERT(!tmp_.empty() && "version_writer used after commit or abandon");
  return write_file_synced(tmp_ / "manifest", bytes);
}

status version_writer::commit() {
  DTRAIN_ASSERT(!tmp_.empty() && "version_writer used after commit or abandon");
  status st = fsync_dir(tmp_ / "chunk");
  if (st.ok()) st = fsync_dir(tmp_);
  const fs::path final_dir = root_ / ("v" + std::to_string(version_));
  if (st.ok()) {
    // renameat2(RENAME_NOREPLACE) would be exact; a plain rename onto an existing empty
    // directory would succeed, so check first (one writer per root, see begin()).
    std::error_code ec;
    if (fs::exists(final_dir, ec)) st = failed_precondition(final_dir.string() + " already exists");
  }
  if (st.ok() && ::rename(tmp_.c_str(), final_dir.c_str()) != 0) st = fs_error("rename", tmp_, errno);
  if (!st.ok()) {
    abandon();
    return st;
  }
  tmp_.clear();
  return fsync_dir(root_);
}

}  // namespace dtrain::shard
