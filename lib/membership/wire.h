// lib/membership/wire.h (internal): a framed, signed control connection over asio: the
// stream reader/writer of membership messages and the per-connection replay state.
// Everything here runs on its owner's single io thread.
#pragma once

#include <asio.hpp>
#include <sodium.h>

#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "dtrain/membership/messages.h"

namespace dtrain::membership::detail {

/// Reads whole frames (prefix, then the rest as message_length() says) and writes queued
/// frames in order. Handlers run on the io thread; after close() or the first failure no
/// handler runs again.
class framed_conn : public std::enable_shared_from_this<framed_conn> {
 public:
  using frame_handler = std::function<void(std::vector<std::byte>)>;
  using close_handler = std::function<void(const status&)>;
  static constexpr std::size_t max_queued = 1024;  // a peer that stops reading is dropped

  explicit framed_conn(asio::ip::tcp::socket s) : sock_(std::move(s)) {
    asio::error_code ec;
    sock_.set_option(asio::ip::tcp::no_delay(true), ec);
  }

  void start(frame_handler on_frame, close_handler on_close) {
    on_frame_ = std::move(on_frame);
    on_close_ = std::move(on_close);
    read_prefix();
  }

  void send(std::vector<std::byte> frame) {
    if (closed_ || flushing_) return;
    if (outq_.size() >= max_queued) return fail(unavailable("send queue full: the other side stopped reading"));
    outq_.push_back(std::move(frame));
    if (!writing_) write_next();
  }

  /// Closes once everything queued is written (or fails); no more handlers run.
  void close_after_flush(std::function<void()> done = {}) {
    if (closed_) { if (done) done(); return; }
    flushing_ = true;
    on_flushed_ = std::move(done);
    on_frame_ = nullptr;
    on_close_ = nullptr;
    if (!writing_) finish_close();
  }

  /// Closes now; queued frames are dropped; no handler runs again.
  void close() {
    on_frame_ = nullptr;
    on_close_ = nullptr;
    finish_close();
  }

  bool is_open() const noexcept { return !closed_ && !flushing_; }

 private:
  void read_prefix() {
    auto self = shared_from_this();
    asio::async_read(sock_, asio::buffer(prefix_), [this, self](const asio::error_code& ec, std::size_t) {
      if (closed_) return;
      if (ec) return fail(ec == asio::error::eof ? unavailable("connection closed by the other side")
                                                 : unavailable("read failed: " + ec.message()));
      auto len = message_length(prefix_);
      if (!len.ok()) return fail(len.status());
      frame_.resize(*len);
      std::memcpy(frame_.data(), prefix_.data(), prefix_.size());
      read_rest();
    });
  }
  void read_rest() {
    auto self = shared_from_this();
    asio::async_read(sock_, asio::buffer(frame_.data() + prefix_.size(), frame_.size() - prefix_.size()),
                     [this, self](const asio::error_code& ec, std::size_t) {
                       if (closed_) return;
                       if (ec) return fail(unavailable("read failed mid-message: " + ec.message()));
                       std::vector<std::byte> f;
                       f.swap(frame_);
                       // Call a copy: the handler may close this connection, which
                       // clears on_frame_ while it runs.
                       if (auto h = on_frame_) h(std::move(f));
                       if (!closed_ && !flushing_) read_prefix();
                     });
  }
  void write_next() {
    writing_ = true;
    auto self = shared_from_this();
    asio::async_write(sock_, asio::buffer(outq_.front()), [this, self](const asio::error_code& ec, std::size_t) {
      writing_ = false;
      if (closed_) return;
      if (ec) {
        if (flushing_) return finish_close();
        return fail(unavailable("write failed: " + ec.message()));
      }
      outq_.pop_front();
      if (!outq_.empty()) return write_next();
      if (flushing_) finish_close();
    });
  }
  void fail(const status& st) {
    if (closed_) return;
    auto cb = std::move(on_close_);
    finish_close();
    if (cb) cb(st);
  }
  void finish_close() {
    if (closed_) return;
    closed_ = true;
    on_frame_ = nullptr;
    on_close_ = nullptr;
    asio::error_code ec;
    sock_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    sock_.close(ec);
    outq_.clear();
    if (auto done = std::move(on_flushed_)) done();
  }

  asio::ip::tcp::socket sock_;
  std::array<std::byte, message_prefix_bytes> prefix_{};
  std::vector<std::byte> frame_;
  std::deque<std::vector<std::byte>> outq_;
  bool writing_ = false, closed_ = false, flushing_ = false;
  frame_handler on_frame_;
  close_handler on_close_;
  std::function<void()> on_flushed_;
};

/// The replay state of one connection: the nonce this side issued (the other side signs
/// it), the nonce the other side issued (this side signs it), and both counters.
struct session_keys {
  nonce mine{};
  nonce theirs{};
  std::uint64_t sent = 0;      // counter of the last message this side sent
  std::uint64_t received = 0;  // counter of the last message this side accepted
  peer_id remote{};

  void reset() {
    random_bytes(mine);
    theirs = {};
    sent = received = 0;
    remote = {};
  }

  /// Checks a decoded message against this connection: the expected sender, our nonce
  /// (constant-time compare), the next counter. Advances the counter on success.
  status accept(const message& m) {
    if (m.sender != remote) return status(status_code::permission_denied, "message from an unexpected key");
    if (sodium_memcmp(m.challenge.data(), mine.data(), mine.size()) != 0)
      return status(status_code::permission_denied, "message signs the wrong challenge (replayed?)");
    if (m.counter != received + 1)
      return status(status_code::permission_denied,
                    "stale or out-of-order counter " + std::to_string(m.counter) + " (expected " +
                        std::to_string(received + 1) + ")");
    received = m.counter;
    return ok_status();
  }

  /// Encodes `body` for this connection (their nonce, the next counter).
  result<std::vector<std::byte>> seal(const message_body& body, const identity& self) {
    return encode_message(body, self, theirs, ++sent);
  }
};

}  // namespace dtrain::membership::detail
