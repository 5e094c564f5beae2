// dtrain/net/tcp/address.h: a TCP endpoint as text: "host:port", "[v6]:port", parse and
// format. Resolution to socket addresses happens inside the transport.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "dtrain/core/status.h"

namespace dtrain::net::tcp {

/// A host (IPv4 literal, IPv6 literal without brackets, or a name) and a port.
struct address {
  std::string host;
  std::uint16_t port = 0;

  /// Parses "host:port", "[v6]:port" or "v4-literal:port". Port 0 means "any free port"
  /// when listening.
  /// Errors: invalid_argument naming what is wrong (no port, port > 65535, empty host,
  /// unbalanced brackets, a bare IPv6 literal without brackets).
  static result<address> parse(std::string_view text);

  /// "host:port", with brackets around an IPv6 literal; parse(to_string()) round-trips.
  std::string to_string() const;

  /// True when host is an IPv6 literal (contains ':').
  bool is_ipv6_literal() const noexcept { return host.find(':') != std::string::npos; }

  friend bool operator==(const address&, const address&) = default;
};

}  // namespace dtrain::net::tcp
