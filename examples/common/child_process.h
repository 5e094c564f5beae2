// examples/common/child_process.h: a child process with its stdout captured line by line:
// spawn, wait for a line or for exit with a deadline, send signals. Used by the swarm
// launcher and by the multi-process tests (tests/process/).
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/close_range.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace dtrain::examples {

class child {
 public:
  explicit child(std::vector<std::string> argv) {
    int fds[2];
    if (::pipe(fds) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], STDOUT_FILENO);
      // Close every inherited descriptor (listening sockets above all: a child holding the
      // parent's listener keeps its port busy after the parent closes it).
      if (::close_range(3, ~0U, 0) != 0)
        for (long fd = 3, max = ::sysconf(_SC_OPEN_MAX); fd < max; ++fd) ::close(static_cast<int>(fd));
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    reader_ = std::thread([this, fd = fds[0]] {
      std::string partial;
      char buf[4096];
      for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        partial.append(buf, static_cast<std::size_t>(n));
        std::size_t nl;
        while ((nl = partial.find('\n')) != std::string::npos) {
          std::lock_guard lock(mu_);
          lines_.push_back(partial.substr(0, nl));
          partial.erase(0, nl + 1);
          cv_.notify_all();
        }
      }
      ::close(fd);
      std::lock_guard lock(mu_);
      eof_ = true;
      cv_.notify_all();
    });
  }
  ~child() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, 0);
    }
    if (reader_.joinable()) reader_.join();
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig) const { ::kill(pid_, sig); }

  /// Waits until a line starting with `prefix` (after line index `from`) appears; returns its
  /// index, or -1 at the deadline or at EOF.
  long wait_line(const std::string& prefix, std::chrono::milliseconds timeout, std::size_t from = 0) {
    std::unique_lock lock(mu_);
    long found = -1;
    cv_.wait_for(lock, timeout, [&] {
      for (std::size_t i = from; i < lines_.size(); ++i)
        if (lines_[i].rfind(prefix, 0) == 0) {
          found = static_cast<long>(i);
          return true;
        }
      return eof_;
    });
    return found;
  }
  std::vector<std::string> lines() {
    std::lock_guard lock(mu_);
    return lines_;
  }
  /// Lines from index `from` on (for incremental readers).
  std::vector<std::string> lines_from(std::size_t from) {
    std::lock_guard lock(mu_);
    if (from >= lines_.size()) return {};
    return std::vector<std::string>(lines_.begin() + static_cast<std::ptrdiff_t>(from), lines_.end());
  }
  /// Reaped without blocking: the exit code (or 128 + signal), -1 while running.
  int poll_exit() {
    if (reaped_) return code_;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) != pid_) return -1;
    reaped_ = true;
    code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return code_;
  }
  /// Exit code, 128 + signal if killed, or -1 if still running at the deadline (then killed).
  int wait_exit(std::chrono::milliseconds timeout) {
    if (reaped_) {
      if (reader_.joinable()) reader_.join();
      return code_;
    }
    const auto end = std::chrono::steady_clock::now() + timeout;
    int st = 0;
    while (std::chrono::steady_clock::now() < end) {
      const pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        reaped_ = true;
        if (reader_.joinable()) reader_.join();
        code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return code_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &st, 0);
    reaped_ = true;
    if (reader_.joinable()) reader_.join();
    return -1;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int code_ = -1;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
  bool eof_ = false;
};

/// A fresh empty directory under /tmp, removed on destruction.
struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/dtrain-test-XXXXXX";
    if (::mkdtemp(tmpl)) path = tmpl;
  }
  ~temp_dir() {
    if (!path.empty()) std::system(("rm -rf '" + path + "'").c_str());
  }
};

}  // namespace dtrain::examples
