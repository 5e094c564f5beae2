// dtrain/net/transport_forward.h: a transport that forwards every call to another one.
// Derive from it to wrap a transport and override only what changes: record what is
// sent, inject a crash, remap ranks, shape a link.
#pragma once

#include "dtrain/net/transport.h"

namespace dtrain::net {

/// Forwards every call to `inner`, which must outlive it. Thread-safety and errors are
/// the inner transport's.
class forwarding_transport : public transport {
 public:
  explicit forwarding_transport(transport& inner) noexcept : inner_(inner) {}

  rank_t rank() const noexcept override { return inner_.rank(); }
  std::size_t size() const noexcept override { return inner_.size(); }
  result<op> post_send(rank_t to, tag_t tag, std::span<const std::byte> data) override {
    return inner_.post_send(to, tag, data);
  }
  result<op> post_recv(rank_t from, tag_t tag, std::span<std::byte> buf) override {
    return inner_.post_recv(from, tag, buf);
  }
  result<std::size_t> wait(op o, deadline d) override { return inner_.wait(o, d); }
  void abort() noexcept override { inner_.abort(); }
  void reset() noexcept override { inner_.reset(); }
  transport_stats stats() const override { return inner_.stats(); }

 protected:
  transport& inner() noexcept { return inner_; }

 private:
  transport& inner_;
};

}  // namespace dtrain::net
