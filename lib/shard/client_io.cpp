// The client's I/O around the fetch loop: files (atomic writes, the stable marker,
// pruning), option checks, and manifest discovery (latest, first valid manifest).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <string_view>
#include <unordered_map>

#include "client_detail.h"
#include "dtrain/shard/layout.h"

namespace dtrain::shard {
namespace client_detail {

namespace fs = std::filesystem;

namespace {
int error_rank(status_code c) {
  switch (c) {
    case status_code::permission_denied: return 3;
    case status_code::data_loss: return 2;
    case status_code::unimplemented: return 2;
    default: return 1;
  }
}

}  // namespace

status errno_status(const std::string& what, int err) {
  const status_code c = (err == ENOSPC || err == EDQUOT || err == ENOMEM) ? status_code::resource_exhausted
                                                                          : status_code::unavailable;
  return make_status(c, what + ": " + std::strerror(err));
}

status fs_status(const std::string& what, const std::error_code& ec) { return errno_status(what, ec.value()); }

unique_fd::~unique_fd() {
  if (fd >= 0) ::close(fd);
}

mapped_file::mapped_file(mapped_file&& o) noexcept
    : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}

mapped_file& mapped_file::operator=(mapped_file&& o) noexcept {
  if (this != &o) {
    if (addr_ != nullptr) ::munmap(addr_, size_);
    addr_ = std::exchange(o.addr_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

mapped_file::~mapped_file() {
  if (addr_ != nullptr) ::munmap(addr_, size_);
}

result<mapped_file> map_file(const fs::path& p) {
  unique_fd f(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (f.fd < 0) return errno_status("open " + p.string(), errno);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return errno_status("stat " + p.string(), errno);
  mapped_file m;
  if (st.st_size == 0) return m;
  void* a = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (a == MAP_FAILED) return errno_status("mmap " + p.string(), errno);
  m.addr_ = a;
  m.size_ = static_cast<std::size_t>(st.st_size);
  return m;
}

status pwrite_all(int fd, std::span<const std::byte> b, std::uint64_t off, const std::string& what) {
  while (!b.empty()) {
    const ssize_t w = ::pwrite(fd, b.data(), b.size(), static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno_status(what, errno);
    }
    b = b.subspan(static_cast<std::size_t>(w));
    off += static_cast<std::uint64_t>(w);
  }
  return ok_status();
}

status pread_all(int fd, std::span<std::byte> b, std::uint64_t off, const std::string& what) {
  while (!b.empty()) {
    const ssize_t r = ::pread(fd, b.data(), b.size(), static_cast<off_t>(off));
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno_status(what, errno);
    }
    if (r == 0) return data_loss(what + ": short file");
    b = b.subspan(static_cast<std::size_t>(r));
    off += static_cast<std::uint64_t>(r);
  }
  return ok_status();
}

status fsync_path(const fs::path& p) {
  unique_fd f(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (f.fd < 0) return errno_status("open " + p.string(), errno);
  if (::fsync(f.fd) != 0) return errno_status("fsync " + p.string(), errno);
  return ok_status();
}

status write_file_atomic(const fs::path& p, std::span<const std::byte> bytes, bool durable) {
  const fs::path tmp = p.string() + ".tmp";
  {
    unique_fd f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (f.fd < 0) return errno_status("create " + tmp.string(), errno);
    DTRAIN_RETURN_IF_ERROR(pwrite_all(f.fd, bytes, 0, "write " + tmp.string()));
    if (durable && ::fsync(f.fd) != 0) return errno_status("fsync " + tmp.string(), errno);
  }
  if (::rename(tmp.c_str(), p.c_str()) != 0) return errno_status("rename " + tmp.string(), errno);
  if (durable) return fsync_path(p.parent_path().empty() ? fs::path(".") : p.parent_path());
  return ok_status();
}

std::optional<std::vector<std::byte>> read_small_file(const fs::path& p, std::uint64_t max) {
  unique_fd f(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (f.fd < 0) return std::nullopt;
  struct stat st {};
  if (::fstat(f.fd, &st) != 0 || st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) > max) return std::nullopt;
  std::vector<std::byte> b(static_cast<std::size_t>(st.st_size));
  if (!pread_all(f.fd, b, 0, p.string()).ok()) return std::nullopt;
  return b;
}


status check_options(const fetch_options& o, bool need_out) {
  if (o.relays.empty()) return invalid_argument("fetch_options: no relays");
  if (o.trusted_origins.empty() && !o.allow_any_origin)
    return invalid_argument("fetch_options: trusted_origins is empty (set allow_any_origin to accept any signer)");
  if (o.parallel == 0) return invalid_argument("fetch_options: parallel must be >= 1");
  if (o.max_attempts_per_chunk == 0) return invalid_argument("fetch_options: max_attempts_per_chunk must be >= 1");
  if (o.split_bytes == 0) return invalid_argument("fetch_options: split_bytes must be >= 1");
  if (o.keep_versions == 0) return invalid_argument("fetch_options: keep_versions must be >= 1");
  if (need_out && o.out_dir.empty()) return invalid_argument("fetch_options: out_dir is empty");
  return ok_status();
}


http_request make_request(const fetch_options& o, std::string url, std::uint64_t max_bytes) {
  http_request q;
  q.url = std::move(url);
  q.timeout = o.request_timeout;
  q.connect_timeout = o.connect_timeout;
  q.max_bytes = max_bytes;
  return q;
}

namespace {

// Asks every relay for `path` at once and hands each answer to take(relay, result) as it
// arrives; when take returns true the remaining requests are cancelled. With
// `settle_early`, once some relay answered ok, the others get at most as long again
// (twice the first answer's time, at least hedge_min) before they are cancelled: a
// relay that accepts connections and never answers must not hold everyone up until
// request_timeout.
template <class Take>
void ask_every_relay(http_fetcher& f, const fetch_options& o, const std::string& path, std::uint64_t max_bytes,
                     bool settle_early, Take take) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  std::optional<clock::time_point> give_up;
  std::unordered_map<std::uint64_t, std::size_t> pending;
  for (std::size_t r = 0; r < o.relays.size(); ++r)
    pending.emplace(f.start(make_request(o, layout_url(o.relays[r], path), max_bytes)), r);
  bool done = false;
  while (!done && !pending.empty() && !(give_up && clock::now() >= *give_up)) {
    for (auto& res : f.poll(std::chrono::milliseconds(20))) {
      auto it = pending.find(res.id);
      if (it == pending.end()) continue;
      const std::size_t r = it->second;
      pending.erase(it);
      if (settle_early && res.st.ok() && !give_up) {
        const auto now = clock::now();
        give_up = now + std::max<clock::duration>(now - t0, o.hedge_min);
      }
      if (take(r, res)) {
        done = true;
        break;
      }
    }
  }
  for (const auto& p : pending) f.cancel(p.first);
}

}  // namespace

result<manifest_pick> fetch_manifest(http_fetcher& f, const fetch_options& o, std::uint64_t version, bad_list& bad) {
  std::optional<manifest_pick> pick;
  status worst;
  std::string why;
  ask_every_relay(f, o, layout_manifest_path(version), max_manifest_bytes, false, [&](std::size_t r, http_result& res) {
    status st = res.st;
    if (st.ok()) {
      auto opened = open_manifest(res.body, o.trusted_origins);
      if (opened.ok() && opened->version == version) {
        pick = manifest_pick{std::move(opened).value(), std::move(res.body)};
        return true;
      }
      st = opened.ok() ? data_loss("manifest at v" + std::to_string(version) + " states version " +
                                   std::to_string(opened->version))
                       : opened.status();
      bad.emplace_back(o.relays[r], st.to_string());
    }
    why += (why.empty() ? "" : "; ") + o.relays[r] + ": " + st.to_string();
    if (worst.ok() || error_rank(st.code()) > error_rank(worst.code())) worst = st;
    return false;
  });
  if (pick) return std::move(*pick);
  return make_status(worst.code(), "no relay served a valid manifest for version " + std::to_string(version) + " (" + why + ")");
}

result<manifest_pick> find_latest(http_fetcher& f, const fetch_options& o, bad_list& bad) {
  std::vector<std::uint64_t> versions;
  std::string why;
  ask_every_relay(f, o, layout_latest_path(), max_latest_bytes, true, [&](std::size_t r, http_result& res) {
    status st = res.st;
    if (st.ok()) {
      auto v = parse_latest(res.body);
      if (v.ok()) {
        versions.push_back(*v);
        return false;
      }
      st = v.status();
    }
    why += (why.empty() ? "" : "; ") + o.relays[r] + ": " + st.to_string();
    return false;
  });
  if (versions.empty()) return unavailable("no relay answered latest (" + why + ")");
  std::sort(versions.begin(), versions.end(), std::greater<>());
  versions.erase(std::unique(versions.begin(), versions.end()), versions.end());
  status worst;
  for (std::uint64_t v : versions) {
    auto m = fetch_manifest(f, o, v, bad);
    if (m.ok()) return m;
    if (worst.ok() || error_rank(m.status().code()) > error_rank(worst.code())) worst = m.status();
  }
  return worst;
}


status write_stable(const fs::path& out, std::uint64_t version) {
  const std::string s = std::to_string(version) + "\n";
  return write_file_atomic(out / "stable", std::as_bytes(std::span<const char>(s.data(), s.size())), true);
}

std::optional<std::uint64_t> read_stable(const fs::path& out) {
  // The same form as a relay's `latest`: decimal digits and "\n".
  auto bytes = read_small_file(out / "stable", 32);
  if (!bytes) return std::nullopt;
  auto v = parse_latest(*bytes);
  if (!v.ok()) return std::nullopt;
  return *v;
}

void prune_output(const fs::path& out, std::uint64_t current, std::size_t keep) {
  std::error_code ec;
  std::vector<std::pair<std::uint64_t, fs::path>> done;
  std::vector<std::pair<std::uint64_t, fs::path>> partial;
  for (fs::directory_iterator it(out, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() < 2 || name[0] != 'v') continue;
    std::string_view rest(name);
    rest.remove_prefix(1);
    bool is_partial = false;
    if (rest.size() > 8 && rest.substr(rest.size() - 8) == ".partial") {
      rest.remove_suffix(8);
      is_partial = true;
    }
    if (rest.empty() || rest.size() > 19 || !std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    const std::uint64_t v = std::stoull(std::string(rest));
    (is_partial ? partial : done).emplace_back(v, it->path());
  }
  std::sort(done.begin(), done.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::size_t others = 0;
  for (const auto& [v, p] : done) {
    if (v == current) continue;
    if (others + 1 < keep) {
      ++others;
      continue;
    }
    fs::remove_all(p, ec);
  }
  for (const auto& [v, p] : partial) {
    if (v < current) fs::remove_all(p, ec);
  }
}


}  // namespace client_detail

result<std::uint64_t> latest_version(const fetch_options& opts) {
  using namespace client_detail;
  DTRAIN_RETURN_IF_ERROR(check_options(opts, false));
  auto f = http_fetcher::create(opts.relays.size());
  if (!f.ok()) return f.status();
  bad_list bad;
  auto m = find_latest(*f, opts, bad);
  if (!m.ok()) return m.status();
  return m->man.version;
}

}  // namespace dtrain::shard
