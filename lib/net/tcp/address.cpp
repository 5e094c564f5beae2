// address parse/format.
#include "dtrain/net/tcp/address.h"

#include <charconv>

namespace dtrain::net::tcp {

result<address> address::parse(std::string_view text) {
  address a;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return invalid_argument("address '" + std::string(text) + "': missing ']'");
    a.host = std::string(text.substr(1, close - 1));
    if (close + 1 >= text.size() || text[close + 1] != ':')
      return invalid_argument("address '" + std::string(text) + "': expected ':port' after ']'");
    port_text = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return invalid_argument("address '" + std::string(text) + "': expected host:port");
    a.host = std::string(text.substr(0, colon));
    if (a.host.find(':') != std::string::npos)
      return invalid_argument("address '" + std::string(text) + "': write IPv6 literals as [addr]:port");
    port_text = text.substr(colon + 1);
  }
  if (a.host.empty()) return invalid_argument("address '" + std::string(text) + "': empty host");
  if (a.host.find_first_of("[] \t\n") != std::string::npos)
    return invalid_argument("address '" + std::string(text) + "': bad character in host");
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535)
    return invalid_argument("address '" + std::string(text) + "': port must be a number 0..65535");
  a.port = static_cast<std::uint16_t>(port);
  return a;
}

std::string address::to_string() const {
  if (is_ipv6_literal()) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

}  // namespace dtrain::net::tcp
