// dtrain/codec/spec.h: parsing of codec spec strings, "name:key=value,key=value".
// Keys a codec does not know are an error, so typos never pass silently.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>

#include "dtrain/core/status.h"

namespace dtrain::codec {

class spec_args {
 public:
  /// Splits "name:k=v,k=v". Errors: invalid_argument for an empty name, a key without
  /// '=', or a repeated key.
  static result<spec_args> parse(std::string_view spec);

  const std::string& name() const noexcept { return name_; }
  /// Unsigned integer in [lo, hi], or `fallback` when absent.
  result<std::uint64_t> get_uint(std::string_view key, std::uint64_t fallback, std::uint64_t lo,
                                 std::uint64_t hi);
  /// Finite float in [lo, hi], or `fallback` when absent.
  result<double> get_float(std::string_view key, double fallback, double lo, double hi);
  /// One of `choices`, or `fallback` when absent.
  result<std::string> get_choice(std::string_view key, std::string_view fallback,
                                 std::initializer_list<std::string_view> choices);
  /// invalid_argument naming any key no getter asked for.
  status finish() const;

 private:
  struct item {
    std::string value;
    bool used = false;  ///< a getter asked for it (finish() reports the rest)
  };
  /// The value for `key`, marking it used; nullptr when absent.
  const std::string* take(std::string_view key);

  std::string name_;
  std::map<std::string, item, std::less<>> kv_;
};

}  // namespace dtrain::codec
