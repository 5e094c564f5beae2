// Internal: the state behind tcp_context and tcp_transport. Locking: every field below a
// mutex is touched only under it; sockets and timers only on the context's I/O thread.
#pragma once

#include <array>
#include <atomic>
#include <utility>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <asio.hpp>

#include "dtrain/net/tcp/address.h"
#include "dtrain/net/tcp/frame.h"
#include "dtrain/net/tcp/options.h"
#include "dtrain/net/tcp/shaper.h"
#include "dtrain/net/transport.h"

namespace dtrain::net::tcp::detail {

using asio::ip::tcp;
using socket_ptr = std::shared_ptr<tcp::socket>;

struct transport_impl;

/// Sets TCP_NODELAY, keepalive and the socket buffers. Errors are ignored (best effort).
void configure_socket(tcp::socket& s, const tcp_options& o) noexcept;

/// Reads a hello or hello_ack frame (88 bytes) and checks header, checksum and payload.
result<hello> decode_hello_frame(std::span<const std::byte> frame, frame_type expected);
/// Writes a hello or hello_ack frame into `out` (88 bytes).
void encode_hello_frame(const hello& h, frame_type type, std::span<std::byte, frame_header_bytes + hello_bytes> out) noexcept;

/// Counts a handler in flight on its owner (context_impl or transport_impl, which have
/// `pending`, `mu` and `cv`), so the owner's teardown can wait until none is left and no
/// handler outlives the object it points to. Move-only; asio accepts move-only handlers.
template <class Owner>
class handler_ref {
 public:
  explicit handler_ref(Owner* o) noexcept : o_(o) { o_->pending.fetch_add(1, std::memory_order_relaxed); }
  handler_ref(handler_ref&& other) noexcept : o_(std::exchange(other.o_, nullptr)) {}
  handler_ref& operator=(handler_ref&&) = delete;
  handler_ref(const handler_ref&) = delete;
  // The decrement happens under the owner's mutex: were it done before taking the lock, the
  // owner's teardown could see pending == 0, return and free the owner while this
  // destructor was still about to lock its mutex (use after free). A handler_ref is never
  // destroyed with the owner's mutex held (asio destroys handlers after they return).
  ~handler_ref() {
    if (!o_) return;
    std::lock_guard lock(o_->mu);
    if (o_->pending.fetch_sub(1, std::memory_order_acq_rel) == 1) o_->cv.notify_all();
  }

 private:
  Owner* o_;
};

struct context_impl {
  explicit context_impl(const tcp_options& o) : options(o) {}

  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  tcp::acceptor acceptor{io};
  std::thread thread;
  tcp_options options;
  address advertised;

  std::mutex mu;
  std::condition_variable cv;
  std::atomic<int> pending{0};
  bool closing = false;
  std::unordered_map<std::uint64_t, std::weak_ptr<transport_impl>> sessions;
  struct handshake {
    explicit handshake(asio::io_context& io) : sock(io), timer(io) {}
    tcp::socket sock;
    asio::steady_timer timer;
    std::array<std::byte, frame_header_bytes + hello_bytes> buf{};
  };
  std::vector<std::shared_ptr<handshake>> handshakes;  // accepted, hello not yet read
  struct parked_stream {
    socket_ptr sock;
    hello h;
    std::chrono::steady_clock::time_point expires;
  };
  std::vector<parked_stream> parked;

  void start_accept();
  void on_accepted(tcp::socket sock);
  void route(socket_ptr sock, const hello& h);
  /// Registers a session; returns false when it is taken. Parked streams for it are handed
  /// over on the I/O thread.
  bool register_session(std::uint64_t session, const std::shared_ptr<transport_impl>& t);
  void unregister_session(std::uint64_t session);
};

struct tx_job {
  frame_type type = frame_type::data;
  std::uint64_t op_id = 0;  // 0 for control frames
  tag_t tag = 0;
  std::uint64_t msg_seq = 0;
  std::uint64_t msg_len = 0;
  std::uint64_t offset = 0;
  std::uint32_t len = 0;
  const std::byte* src = nullptr;
  bool shaped = false;
  std::chrono::steady_clock::time_point release{};
};

struct stream {
  explicit stream(asio::io_context& io) : sock(io), timer(io) {}
  tcp::socket sock;
  asio::steady_timer timer;
  bool connected = false;
  // receive side
  std::array<std::byte, frame_header_bytes> rx_hdr{};
  frame_header cur{};
  std::byte* cur_dst = nullptr;
  std::uint64_t cur_op = 0;  // op whose buffer the current read fills (holds an io ref)
  std::vector<std::byte> scratch;
  bool paused = false;
  bool reading = false;
  // send side
  std::deque<tx_job> txq;
  bool writing = false;
  tx_job inflight{};
  std::array<std::byte, frame_header_bytes> tx_hdr{};
};

/// Backlog bytes charged per buffered message on top of its length, so that a flood of
/// empty messages is bounded by unexpected_cap_bytes too (docs/net_tcp.md).
inline constexpr std::uint64_t backlog_overhead_bytes = 64;

struct inbound_msg {
  tag_t tag = 0;
  std::uint64_t len = 0;
  std::uint64_t received = 0;
  std::uint64_t op_id = 0;  // bound receive, 0 if none
  // Backlogged stripes, one buffer per stripe as it arrives (offset, bytes): memory follows
  // the bytes actually received, never a length a peer merely claims in a header.
  std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> tmp;
  bool in_tmp = false;     // bytes go to tmp (unexpected or arrived before binding)
  bool discard = false;    // nobody wants it any more: drain into scratch
  bool cancelled = false;  // the sender cancelled it before sending a byte
  bool complete = false;   // all bytes in tmp, waiting for a receive
};

struct peer_state {
  std::vector<std::unique_ptr<stream>> streams;
  std::vector<socket_ptr> dialing;  // outgoing connections not yet installed (closed on teardown)
  unsigned connected = 0;
  std::size_t goodbyes = 0;
  bool gone = false;
  status why;
  std::uint64_t next_send_seq = 0;
  std::uint64_t next_bind = 0;
  std::map<std::uint64_t, inbound_msg> inbound;
  std::unordered_map<tag_t, std::deque<std::uint64_t>> posted;      // receive op ids
  std::unordered_map<tag_t, std::deque<std::uint64_t>> unexpected;  // message seqs
  std::uint64_t unexpected_bytes = 0;
  std::optional<link_shaper> shaper;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
};

struct op_rec {
  bool is_send = false;
  rank_t peer = 0;
  tag_t tag = 0;
  const std::byte* src = nullptr;
  std::byte* dst = nullptr;
  std::size_t len = 0;
  bool done = false;
  status error;
  std::size_t transferred = 0;
  int io_refs = 0;  // queued or in-flight stripes (send), in-flight reads (receive)
  bool close_requested = false;
  std::chrono::steady_clock::time_point abandoned_at{};  // first wait() past the deadline while I/O held the buffer
  // send
  std::uint64_t msg_seq = 0;
  std::uint32_t stripes_total = 0;
  std::uint32_t stripes_started = 0;
  std::uint32_t stripes_done = 0;
  // receive
  bool bound = false;
  std::uint64_t bound_seq = 0;
};

struct transport_impl : std::enable_shared_from_this<transport_impl> {
  transport_impl(context_impl& c, std::uint64_t s, rank_t r, std::size_t n);

  context_impl& ctx;
  asio::io_context& io;
  const tcp_options& opt;
  frame_limits limits;
  std::uint64_t session;
  rank_t rank;
  std::size_t n;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::atomic<int> pending{0};
  std::vector<peer_state> peers;
  std::unordered_map<std::uint64_t, op_rec> ops;
  std::uint64_t next_id = 1;
  bool is_aborted = false;
  status broken;  // set once a member is lost with fail_group_on_peer_loss
  bool closing = false;
  bool leaving = false;  // leave() sent goodbyes: EOFs from now on are not crashes
  std::size_t streams_up = 0;

  // --- I/O thread --------------------------------------------------------------------
  void install(rank_t from, unsigned s, tcp::socket&& sock);      // an authenticated stream is ready
  void adopt_accepted(socket_ptr sock, const hello& h);         // from context_impl::route
  void dial(rank_t to, unsigned s, tcp::endpoint ep, deadline by);
  void pump(rank_t p, unsigned s);                               // lock held
  void on_written(rank_t p, unsigned s, const asio::error_code& ec);
  void read_header(rank_t p, unsigned s);                        // lock held
  void on_header(rank_t p, unsigned s, const asio::error_code& ec);
  void start_payload(rank_t p, unsigned s);                      // lock held
  void on_payload(rank_t p, unsigned s, const asio::error_code& ec);
  void close_io(rank_t p);
  void close_dialing();                                          // I/O thread
  void drop_tx(peer_state& ps);                                  // lock held: clears queues, releases io refs
  void resume(rank_t p);                                         // lock held
  void schedule_resume(rank_t p);                                // lock held, any thread

  // --- any thread, lock held ----------------------------------------------------------
  /// crash: an unannounced loss (EOF, error, protocol error, timeout) that breaks the group
  /// under fail_group_on_peer_loss; false for a goodbye or our own close.
  void peer_gone(rank_t p, status why, bool crash = true);
  /// hard: the peer is suspected (deadline): an op with bytes still on the wire closes the
  /// connection. Otherwise (abort, broken group, lost peer) such bytes finish draining.
  void cancel_op(std::uint64_t id, op_rec& o, const status& why, bool hard);
  void try_bind(rank_t p);
  void complete(rank_t p, std::uint64_t seq);
  status place_stripe(rank_t p, stream& s);  // ok with s.paused set when waiting for space
  void kick(rank_t p);
};

}  // namespace dtrain::net::tcp::detail
