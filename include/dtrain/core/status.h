// dtrain/core/status.h: the error model. Recoverable failures come back as a
// [[nodiscard]] status or result<T> whose code says what the caller should do next;
// programmer errors hit DTRAIN_ASSERT (see assert.h). No exception crosses the API.
// Policy and examples: docs/errors.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "dtrain/core/assert.h"

namespace dtrain {

/// What went wrong, phrased as what to do about it.
enum class status_code : std::uint8_t {
  ok = 0,
  invalid_argument,     ///< The caller's input is wrong (bad size, bad parameter). Fix it; do not retry.
  out_of_range,         ///< A value or index lies outside what the operation accepts. Fix the input.
  failed_precondition,  ///< The object is in the wrong state for this call (e.g. codec/payload mismatch). Fix the state first.
  data_loss,            ///< Bytes are corrupt or truncated (bad checksum, short payload). Drop them; fetch again.
  unavailable,          ///< Transient: a peer or resource is unreachable right now. Retry the same call.
  aborted,              ///< The round was abandoned (a peer dropped). Redo the round at a higher level.
  deadline_exceeded,    ///< The operation ran out of time. Retry, perhaps with a longer deadline.
  cancelled,            ///< The caller cancelled the operation.
  resource_exhausted,   ///< Out of memory, buffer space or quota. Free something or use a bigger buffer.
  unimplemented,        ///< This build or version does not support the request (e.g. newer format version).
  permission_denied,    ///< Authentication or authorization failed. Do not retry with the same credentials.
  internal,             ///< An invariant broke inside dtrain. Report a bug.
};

/// Stable lower-case name of a code ("invalid_argument", ...).
constexpr std::string_view code_name(status_code c) noexcept {
  switch (c) {
    case status_code::ok: return "ok";
    case status_code::invalid_argument: return "invalid_argument";
    case status_code::out_of_range: return "out_of_range";
    case status_code::failed_precondition: return "failed_precondition";
    case status_code::data_loss: return "data_loss";
    case status_code::unavailable: return "unavailable";
    case status_code::aborted: return "aborted";
    case status_code::deadline_exceeded: return "deadline_exceeded";
    case status_code::cancelled: return "cancelled";
    case status_code::resource_exhausted: return "resource_exhausted";
    case status_code::unimplemented: return "unimplemented";
    case status_code::permission_denied: return "permission_denied";
    case status_code::internal: return "internal";
  }
  return "unknown";
}

/// True when calling again, unchanged, may succeed (unavailable, deadline_exceeded).
constexpr bool is_retryable(status_code c) noexcept {
  return c == status_code::unavailable || c == status_code::deadline_exceeded;
}

/// The outcome of an operation: ok, or a code plus a human-readable message.
/// An ok status holds an empty string and never allocates.
class [[nodiscard]] status {
 public:
  status() noexcept = default;
  status(status_code c, std::string message) : code_(c), message_(std::move(message)) {}

  bool ok() const noexcept { return code_ == status_code::ok; }
  dtrain::status_code code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  /// "invalid_argument: payload truncated (...)"; "ok" for success.
  std::string to_string() const {
    if (ok()) return "ok";
    return std::string(code_name(code_)) + ": " + message_;
  }
  /// Explicitly discard a status the caller has decided it does not need.
  void ignore() const noexcept {}

 private:
  dtrain::status_code code_ = status_code::ok;
  std::string message_;
};

inline status ok_status() noexcept { return {}; }
inline status invalid_argument(std::string m) { return {status_code::invalid_argument, std::move(m)}; }
inline status out_of_range(std::string m) { return {status_code::out_of_range, std::move(m)}; }
inline status failed_precondition(std::string m) { return {status_code::failed_precondition, std::move(m)}; }
inline status data_loss(std::string m) { return {status_code::data_loss, std::move(m)}; }
inline status unavailable(std::string m) { return {status_code::unavailable, std::move(m)}; }
inline status aborted(std::string m) { return {status_code::aborted, std::move(m)}; }
inline status resource_exhausted(std::string m) { return {status_code::resource_exhausted, std::move(m)}; }
inline status unimplemented(std::string m) { return {status_code::unimplemented, std::move(m)}; }
inline status internal_error(std::string m) { return {status_code::internal, std::move(m)}; }

/// A value of type T, or the status that explains why there is none.
template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : value_(std::move(value)) {}  // NOLINT: implicit on purpose
  result(dtrain::status s) : status_(std::move(s)) {     // NOLINT: implicit on purpose
    DTRAIN_ASSERT(!status_.ok() && "a result built from a status must carry an error");
  }

  bool ok() const noexcept { return value_.has_value(); }
  const dtrain::status& status() const& noexcept { return status_; }
  dtrain::status status() && noexcept { return std::move(status_); }

  /// The value; asserts ok().
  T& value() & {
    DTRAIN_ASSERT(ok() && "result::value() on an error");
    return *value_;
  }
  const T& value() const& {
    DTRAIN_ASSERT(ok() && "result::value() on an error");
    return *value_;
  }
  T&& value() && {
    DTRAIN_ASSERT(ok() && "result::value() on an error");
    return std::move(*value_);
  }
  T value_or(T fallback) const& { return ok() ? *value_ : std::move(fallback); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  dtrain::status status_;
  std::optional<T> value_;
};

}  // namespace dtrain

/// Propagate a non-ok status from an expression that yields a status.
#define DTRAIN_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::dtrain::status dtrain_st_ = (expr);            \
    if (!dtrain_st_.ok()) return dtrain_st_;         \
  } while (0)
