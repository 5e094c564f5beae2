// Spec-string parsing for make_codec().
#include "dtrain/codec/spec.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace dtrain::codec {

result<spec_args> spec_args::parse(std::string_view spec) {
  spec_args a;
  const std::size_t colon = spec.find(':');
  a.name_ = std::string(spec.substr(0, colon));
  if (a.name_.empty()) return invalid_argument("codec spec '" + std::string(spec) + "' has no name");
  if (colon == std::string_view::npos) return a;
  std::string_view rest = spec.substr(colon + 1);
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    std::string_view part = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const std::size_t eq = part.find('=');
    if (eq == std::string_view::npos || eq == 0)
      return invalid_argument("codec spec entry '" + std::string(part) + "' is not key=value");
    std::string key(part.substr(0, eq));
    if (a.kv_.count(key)) return invalid_argument("codec spec repeats key '" + key + "'");
    a.kv_[key] = {std::string(part.substr(eq + 1))};
  }
  return a;
}

const std::string* spec_args::take(std::string_view key) {
  auto it = kv_.find(key);
  if (it == kv_.end()) return nullptr;
  it->second.used = true;
  return &it->second.value;
}

result<std::uint64_t> spec_args::get_uint(std::string_view key, std::uint64_t fallback, std::uint64_t lo,
                                          std::uint64_t hi) {
  const std::string* found = take(key);
  if (!found) return fallback;
  const std::string& s = *found;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size())
    return invalid_argument(name_ + ": '" + std::string(key) + "' must be an unsigned integer, got '" + s + "'");
  if (v < lo || v > hi)
    return invalid_argument(name_ + ": '" + std::string(key) + "' = " + s + " is outside [" + std::to_string(lo) +
                            ", " + std::to_string(hi) + "]");
  return v;
}

result<double> spec_args::get_float(std::string_view key, double fallback, double lo, double hi) {
  const std::string* found = take(key);
  if (!found) return fallback;
  const std::string& s = *found;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v))
    return invalid_argument(name_ + ": '" + std::string(key) + "' must be a finite number, got '" + s + "'");
  if (v < lo || v > hi)
    return invalid_argument(name_ + ": '" + std::string(key) + "' = " + s + " is outside [" + std::to_string(lo) +
                            ", " + std::to_string(hi) + "]");
  return v;
}

result<std::string> spec_args::get_choice(std::string_view key, std::string_view fallback,
                                          std::initializer_list<std::string_view> choices) {
  const std::string* found = take(key);
  if (!found) return std::string(fallback);
  for (std::string_view c : choices)
    if (c == *found) return *found;
  std::string list;
  for (std::string_view c : choices) list += (list.empty() ? "" : "|") + std::string(c);
  return invalid_argument(name_ + ": '" + std::string(key) + "' must be one of " + list + ", got '" + *found + "'");
}

status spec_args::finish() const {
  for (const auto& [k, it] : kv_)
    if (!it.used) return invalid_argument(name_ + ": unknown parameter '" + k + "'");
  return {};
}

}  // namespace dtrain::codec
