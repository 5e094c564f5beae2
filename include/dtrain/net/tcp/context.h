// dtrain/net/tcp/context.h: one per process: the I/O thread and the listening socket that
// every TCP transport (one per group and epoch) of this process shares. Incoming
// connections name their session in a hello and are handed to the transport that owns it.
#pragma once

#include <memory>

#include "dtrain/core/status.h"
#include "dtrain/net/tcp/address.h"
#include "dtrain/net/tcp/options.h"

namespace dtrain::net::tcp {

namespace detail {
struct context_impl;
}

class tcp_context {
 public:
  /// Binds `listen` (IPv4 or IPv6 literal or name; port 0 picks a free port) and starts the
  /// I/O thread. The address peers should dial is advertised_address().
  /// Errors: invalid_argument (unresolvable host), unavailable (bind/listen failed, e.g.
  /// port in use), each naming the address and the system error.
  static result<std::unique_ptr<tcp_context>> create(const address& listen, const tcp_options& options = {});
  /// Stops the I/O thread. Every transport created on this context must be destroyed first.
  ~tcp_context();
  tcp_context(const tcp_context&) = delete;
  tcp_context& operator=(const tcp_context&) = delete;

  /// The bound address (the real port when 0 was asked for). When bound to a wildcard
  /// (0.0.0.0 or ::) the host is the loopback of that family: set a reachable host for
  /// remote peers yourself.
  address advertised_address() const;
  const tcp_options& options() const noexcept;

  detail::context_impl& impl() noexcept { return *impl_; }

 private:
  explicit tcp_context(std::unique_ptr<detail::context_impl> impl) noexcept;
  std::unique_ptr<detail::context_impl> impl_;
};

}  // namespace dtrain::net::tcp
