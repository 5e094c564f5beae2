// dtrain/core/bytes.h: little-endian load/store and bounds-checked byte cursors for
// building and parsing wire formats. A reader never reads past its span: once a read
// fails it stays failed and returns zeros, so parsers check ok() once at the end.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

namespace dtrain {

template <class T>
inline void store_le(std::byte* p, T v) noexcept {
  static_assert(std::is_trivially_copyable_v<T>);
  if constexpr (std::is_floating_point_v<T>) {
    using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    store_le<U>(p, std::bit_cast<U>(v));
  } else {
    using U = std::make_unsigned_t<T>;
    U u = static_cast<U>(v);
    for (std::size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<std::byte>(u >> (8 * i));
  }
}

template <class T>
inline T load_le(const std::byte* p) noexcept {
  static_assert(std::is_trivially_copyable_v<T>);
  if constexpr (std::is_floating_point_v<T>) {
    using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    return std::bit_cast<T>(load_le<U>(p));
  } else {
    using U = std::make_unsigned_t<T>;
    U u = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) u |= static_cast<U>(static_cast<U>(p[i]) << (8 * i));
    return static_cast<T>(u);
  }
}

/// Appends little-endian values to a caller-owned span; overflow is sticky.
class byte_writer {
 public:
  explicit byte_writer(std::span<std::byte> out) noexcept : out_(out) {}
  template <class T>
  void put(T v) noexcept {
    if (!reserve(sizeof(T))) return;
    store_le<T>(out_.data() + pos_, v);
    pos_ += sizeof(T);
  }
  void put_bytes(std::span<const std::byte> b) noexcept {
    if (!reserve(b.size())) return;
    if (!b.empty()) std::memcpy(out_.data() + pos_, b.data(), b.size());
    pos_ += b.size();
  }
  /// Claims `n` bytes for the caller to fill; empty span on overflow.
  std::span<std::byte> take(std::size_t n) noexcept {
    if (!reserve(n)) return {};
    auto s = out_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  bool ok() const noexcept { return ok_; }
  std::size_t size() const noexcept { return pos_; }

 private:
  bool reserve(std::size_t n) noexcept {
    if (!ok_ || out_.size() - pos_ < n) return ok_ = false;
    return true;
  }
  std::span<std::byte> out_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

/// Reads little-endian values from a span; a short read is sticky and yields zeros.
class byte_reader {
 public:
  explicit byte_reader(std::span<const std::byte> in) noexcept : in_(in) {}
  template <class T>
  T get() noexcept {
    if (!claim(sizeof(T))) return T{};
    T v = load_le<T>(in_.data() + pos_);
    pos_ += sizeof(T);
    return v;
  }
  /// The next `n` bytes, or an empty span (and !ok()) if fewer remain.
  std::span<const std::byte> take(std::size_t n) noexcept {
    if (!claim(n)) return {};
    auto s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  bool ok() const noexcept { return ok_; }
  std::size_t remaining() const noexcept { return in_.size() - pos_; }
  std::size_t position() const noexcept { return pos_; }

 private:
  bool claim(std::size_t n) noexcept {
    if (!ok_ || in_.size() - pos_ < n) return ok_ = false;
    return true;
  }
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace dtrain
