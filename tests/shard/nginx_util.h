// tests/shard/nginx_util.h: runs a real nginx (Debian's /usr/sbin/nginx) on 127.0.0.1
// serving a directory, for the HTTP, relay and client tests. Generated config, logs, pid
// and temp paths live in a private temp dir; nginx is a child process (daemon off,
// master_process off), killed and reaped by stop() or the destructor.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::test {

inline constexpr const char* nginx_binary = "/usr/sbin/nginx";

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
inline std::uint16_t free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

/// True when something accepts TCP connections on 127.0.0.1:port.
inline bool loopback_port_accepts(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

/// A fresh directory under the system temp dir, removed with everything in it on
/// destruction.
class temp_dir {
 public:
  temp_dir() {
    std::string t = (std::filesystem::temp_directory_path() / "dtrain-shard-XXXXXX").string();
    if (::mkdtemp(t.data()) != nullptr) path_ = t;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

class nginx_server {
 public:
  /// Starts nginx serving `root` (which must exist) on a free 127.0.0.1 port and waits
  /// until the port accepts connections. Errors: unavailable when nginx is missing or
  /// does not come up (the message carries its error log); tests must fail on it.
  static result<nginx_server> start(std::filesystem::path root) { return launch(std::move(root), 0); }
  /// The same on a given port (a relay that comes back where it was after a stop).
  /// Errors: as start(), also when the port is taken.
  static result<nginx_server> start_on(std::filesystem::path root, std::uint16_t port) {
    return launch(std::move(root), port);
  }

  nginx_server(nginx_server&& o) noexcept
      : dir_(std::move(o.dir_)), port_(o.port_), pid_(std::exchange(o.pid_, -1)) {
    o.dir_.clear();
  }
  nginx_server& operator=(nginx_server&& o) noexcept {
    if (this != &o) {
      stop();
      dir_ = std::move(o.dir_);
      o.dir_.clear();
      port_ = o.port_;
      pid_ = std::exchange(o.pid_, -1);
    }
    return *this;
  }
  nginx_server(const nginx_server&) = delete;
  nginx_server& operator=(const nginx_server&) = delete;
  ~nginx_server() { stop(); }

  std::uint16_t port() const { return port_; }
  /// "http://127.0.0.1:PORT"
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  /// nginx's access log so far, one line per request:
  /// "<connection serial> <request number on it> <status> <method> <uri> <range header>".
  std::string access_log() const { return read_file(dir_ / "access.log"); }
  std::string error_log() const { return read_file(dir_ / "error.log"); }
  bool running() const { return pid_ > 0; }

  /// Kills nginx (SIGTERM, then SIGKILL after 5 s), reaps it and removes the temp dir.
  /// The port then refuses connections. Idempotent.
  void stop() {
    kill_child();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
  }

 private:
  // fixed_port 0: a free port, retried if another process takes it first.
  static result<nginx_server> launch(std::filesystem::path root, std::uint16_t fixed_port) {
    if (::access(nginx_binary, X_OK) != 0) {
      return unavailable(std::string(nginx_binary) + " not found: install nginx-light (scripts/deps.sh)");
    }
    std::error_code ec;
    root = std::filesystem::absolute(root, ec);
    std::string tmpl = (std::filesystem::temp_directory_path() / "dtrain-nginx-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) return unavailable("mkdtemp failed");
    nginx_server s;
    s.dir_ = tmpl;
    std::string last_error;
    for (int attempt = 0; attempt < (fixed_port != 0 ? 1 : 5); ++attempt) {
      s.port_ = fixed_port != 0 ? fixed_port : free_loopback_port();
      if (s.port_ == 0) continue;
      s.write_config(root);
      if (s.spawn() && s.wait_ready()) return s;
      last_error = s.error_log();
      s.kill_child();
    }
    return unavailable("nginx did not start: " + last_error);
  }

  nginx_server() = default;

  static std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  void write_config(const std::filesystem::path& root) const {
    const std::string d = dir_.string();
    std::ofstream c(dir_ / "nginx.conf", std::ios::trunc);
    c << "daemon off;\n"
      << "master_process off;\n"
      << "worker_processes 1;\n"
      << "pid " << d << "/nginx.pid;\n"
      << "error_log " << d << "/error.log warn;\n"
      << "events { worker_connections 1024; }\n"
      << "http {\n"
      << "  log_format dtrain '$connection $connection_requests $status $request_method $uri $http_range';\n"
      << "  access_log " << d << "/access.log dtrain;\n"
      << "  client_body_temp_path " << d << "/client_body;\n"
      << "  proxy_temp_path " << d << "/proxy;\n"
      << "  fastcgi_temp_path " << d << "/fastcgi;\n"
      << "  uwsgi_temp_path " << d << "/uwsgi;\n"
      << "  scgi_temp_path " << d << "/scgi;\n"
      << "  default_type application/octet-stream;\n"
      << "  sendfile on;\n"
      << "  tcp_nopush on;\n"
      << "  keepalive_timeout 65;\n"
      << "  keepalive_requests 100000;\n"
      << "  server {\n"
      << "    listen 127.0.0.1:" << port_ << ";\n"
      << "    root " << root.string() << ";\n"
      << "    location ~ /\\. { return 404; }\n"  // temp dirs of writers are never served
      << "    location / { }\n"
      << "  }\n"
      << "}\n";
  }

  bool spawn() {
    const std::string conf = (dir_ / "nginx.conf").string();
    const std::string prefix = dir_.string() + "/";
    const std::string elog = (dir_ / "error.log").string();
    const std::string out = (dir_ / "stdout.log").string();
    std::vector<std::string> args = {nginx_binary, "-p", prefix, "-e", elog, "-c", conf};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test process
      const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execv(nginx_binary, argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    return true;
  }

  bool wait_ready() {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;  // exited: bad config or port taken
        return false;
      }
      if (loopback_port_accepts(port_)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  void kill_child() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    int st = 0;
    while (::waitpid(pid_, &st, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > until) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
  }

  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace dtrain::test
