// libFuzzer target for the TCP transport's frames (docs/formats/tcp_frames.md). Byte 0
// picks the mode:
//   0: parse_header and parse_hello on the rest; a parsed header must re-encode to the
//      same bytes, a parsed hello too;
//   1: a live transport (rank 0) whose peer (rank 1, a raw socket that completed a valid
//      handshake) sends the rest as raw bytes;
//   2: as 1, but the rest is a list of frame records whose checksums the harness fixes,
//      so the fuzzer reaches the matching state machine (stripes, sequence numbers,
//      cancels, backlog) instead of the checksum.
// In 1 and 2 rank 0 has three receives posted; every one must end (ok with a length no
// larger than its buffer, or a typed error) once the raw peer closes, and nothing may
// crash, leak or hang.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <span>
#include <vector>

#include "dtrain/net/tcp/frame.h"
#include "dtrain/net/transport_tcp.h"

namespace {

using namespace dtrain;
using namespace dtrain::net;
using namespace std::chrono_literals;

[[noreturn]] void fail(const char* what, const status& st = {}) {
  std::fprintf(stderr, "tcp_frame_fuzz: contract violated: %s (%s)\n", what, st.to_string().c_str());
  std::abort();
}

void parse_mode(std::span<const std::byte> in) {
  if (in.size() >= tcp::frame_header_bytes) {
    auto head = in.first<tcp::frame_header_bytes>();
    auto h = tcp::parse_header(head);
    if (h.ok()) {
      std::array<std::byte, tcp::frame_header_bytes> again{};
      tcp::encode_header(*h, again);
      if (std::memcmp(again.data(), head.data(), again.size()) != 0) fail("header does not re-encode");
    } else if (h.status().code() != status_code::data_loss && h.status().code() != status_code::unimplemented) {
      fail("header error code", h.status());
    }
  }
  auto he = tcp::parse_hello(in.first(std::min(in.size(), tcp::hello_bytes)));
  if (he.ok()) {
    std::array<std::byte, tcp::hello_bytes> again{};
    tcp::encode_hello(*he, again);
    if (std::memcmp(again.data(), in.data(), again.size()) != 0) fail("hello does not re-encode");
  }
}

struct harness {
  std::unique_ptr<tcp::tcp_context> ctx;
  std::uint64_t session = 1;
  harness() {
    tcp::tcp_options o;
    o.stripe_bytes = 4096;
    o.unexpected_cap_bytes = 64 << 10;
    o.max_message_bytes = 1 << 20;
    o.hello_timeout = 2000ms;
    auto c = tcp::tcp_context::create(tcp::address{"127.0.0.1", 0}, o);
    if (!c.ok()) fail("context", c.status());
    ctx = std::move(*c);
  }
};

harness& h() {
  static harness* x = new harness();  // never destroyed: libFuzzer exits without teardown
  return *x;
}

void write_all(int fd, const std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // the transport closed on us: fine
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

// Mode 2 records: type(1) tagsel(1) seq(1) len(2) offset(2) stripe(2), then `stripe` payload bytes.
std::vector<std::byte> build_frames(std::span<const std::byte> in) {
  std::vector<std::byte> out;
  std::size_t i = 0;
  auto u8 = [&](std::size_t k) { return std::to_integer<std::uint8_t>(in[i + k]); };
  while (i + 9 <= in.size()) {
    tcp::frame_header fh;
    fh.type = static_cast<tcp::frame_type>(1 + u8(0) % 6);
    fh.tag = make_tag(1, 0, u8(1) % 3);
    fh.msg_seq = u8(2) % 8;
    fh.msg_len = static_cast<std::uint64_t>(u8(3) | (u8(4) << 8)) % 9000;
    fh.offset = static_cast<std::uint64_t>(u8(5) | (u8(6) << 8)) % 9000;
    std::uint32_t stripe = static_cast<std::uint32_t>(u8(7) | (u8(8) << 8)) % 5000;
    i += 9;
    stripe = static_cast<std::uint32_t>(std::min<std::size_t>(stripe, in.size() - i));
    if (fh.type == tcp::frame_type::hello || fh.type == tcp::frame_type::hello_ack) stripe = std::min<std::uint32_t>(stripe, 32);
    fh.stripe_len = stripe;
    std::array<std::byte, tcp::frame_header_bytes> head{};
    tcp::encode_header(fh, head);
    fh.checksum = tcp::frame_checksum(head, in.subspan(i, stripe));
    tcp::encode_header(fh, head);
    out.insert(out.end(), head.begin(), head.end());
    out.insert(out.end(), in.begin() + static_cast<std::ptrdiff_t>(i), in.begin() + static_cast<std::ptrdiff_t>(i + stripe));
    i += stripe;
  }
  return out;
}

void live_mode(std::span<const std::byte> in, bool fix_checksums) {
  harness& x = h();
  const std::uint64_t session = x.session++;
  const auto addr = x.ctx->advertised_address();
  auto pending = std::async(std::launch::async, [&] {
    return tcp_transport::create(*x.ctx, session, 0, {addr, tcp::address{"127.0.0.1", 1}}, after(5s));
  });
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(addr.port);
  ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  int rc = 0;
  do rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) fail("connect");
  std::array<std::byte, tcp::frame_header_bytes + tcp::hello_bytes> hello_frame{};
  const tcp::hello hl{session, 1, 0, 2, 0, 1, 0};
  tcp::encode_hello(hl, std::span<std::byte, tcp::hello_bytes>(hello_frame.data() + tcp::frame_header_bytes, tcp::hello_bytes));
  tcp::frame_header fh;
  fh.type = tcp::frame_type::hello;
  fh.stripe_len = tcp::hello_bytes;
  auto head = std::span<std::byte, tcp::frame_header_bytes>(hello_frame.data(), tcp::frame_header_bytes);
  tcp::encode_header(fh, head);
  fh.checksum = tcp::frame_checksum(head, std::span<const std::byte>(hello_frame.data() + tcp::frame_header_bytes, tcp::hello_bytes));
  tcp::encode_header(fh, head);
  write_all(fd, hello_frame.data(), hello_frame.size());
  std::array<std::byte, 88> ack{};
  std::size_t got = 0;
  while (got < ack.size()) {
    const ssize_t r = ::recv(fd, ack.data() + got, ack.size() - got, 0);
    if (r < 0 && errno == EINTR) continue;  // libFuzzer's SIGALRM timer
    if (r <= 0) {
      std::fprintf(stderr, "recv=%zd errno=%d got=%zu session=%llu\n", r, errno, got, static_cast<unsigned long long>(session));
      fail("no hello_ack");
    }
    got += static_cast<std::size_t>(r);
  }
  auto t = pending.get();
  if (!t.ok()) fail("create", t.status());
  std::vector<std::byte> b0(64), b1(4096), b2(9000);
  std::array<op, 3> ops{};
  auto o0 = (*t)->post_recv(1, make_tag(1, 0, 0), b0);
  auto o1 = (*t)->post_recv(1, make_tag(1, 0, 1), b1);
  auto o2 = (*t)->post_recv(1, make_tag(1, 0, 0), b2);
  if (!o0.ok() || !o1.ok() || !o2.ok()) fail("post_recv");
  ops = {*o0, *o1, *o2};
  const std::array<std::size_t, 3> caps = {b0.size(), b1.size(), b2.size()};
  if (fix_checksums) {
    auto frames = build_frames(in);
    write_all(fd, frames.data(), frames.size());
  } else {
    write_all(fd, in.data(), in.size());
  }
  ::shutdown(fd, SHUT_WR);
  for (std::size_t k = 0; k < ops.size(); ++k) {
    auto r = (*t)->wait(ops[k], after(3s));
    if (r.ok()) {
      if (*r > caps[k]) fail("length beyond the buffer");
    } else {
      const auto c = r.status().code();
      if (c != status_code::aborted && c != status_code::data_loss && c != status_code::resource_exhausted &&
          c != status_code::unimplemented)
        fail("unexpected error code", r.status());
    }
  }
  t->reset();
  ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto in = std::span<const std::byte>(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: parse_mode(in); break;
    case 1: live_mode(in, false); break;
    default: live_mode(in, true); break;
  }
  return 0;
}
