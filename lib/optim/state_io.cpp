// Optimizer-state blob: parsing, sealing, and outer_optimizer's save/load on top of it.
#include "dtrain/optim/state_io.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "dtrain/core/convert.h"
#include "dtrain/core/dtype.h"
#include "dtrain/core/hash.h"

namespace dtrain::optim {

result<state_view> parse_state(std::span<const std::byte> blob) {
  if (blob.size() < state_header_bytes + state_checksum_bytes)
    return data_loss("optimizer state truncated: " + std::to_string(blob.size()) + " bytes");
  if (std::memcmp(blob.data(), state_magic.data(), state_magic.size()) != 0)
    return data_loss("optimizer state: bad magic (not a DTOS blob)");
  byte_reader r(blob.subspan(4));
  const auto version = r.get<std::uint16_t>();
  if (version == 0) return data_loss("optimizer state: format version 0");
  if (version > state_format_version)
    return unimplemented("optimizer state format version " + std::to_string(version) + " is newer than " +
                         std::to_string(state_format_version));
  state_view v;
  v.kind = static_cast<optimizer_kind>(r.get<std::uint8_t>());
  v.buffers = r.get<std::uint8_t>();
  v.count = r.get<std::uint64_t>();
  v.steps = r.get<std::uint64_t>();
  v.lr = r.get<double>();
  const auto hyper = r.get<std::uint16_t>();
  const auto reserved = r.get<std::uint16_t>();
  if (reserved != 0) return data_loss("optimizer state: reserved bytes are not zero");
  // Sizes come from the blob: bound them before multiplying so nothing overflows.
  const std::size_t body = blob.size() - state_header_bytes - state_checksum_bytes;
  if (hyper > body) return data_loss("optimizer state: length does not match its header");
  const std::size_t data = body - hyper;
  if (v.buffers == 0 ? data != 0
                     : (v.count > data / 4 / v.buffers || 4 * v.buffers * v.count != data))
    return data_loss("optimizer state: length does not match its header");
  const std::size_t covered = blob.size() - state_checksum_bytes;
  const std::uint64_t want = load_le<std::uint64_t>(blob.data() + covered);
  if (xxh3_64(blob.first(covered)) != want) return data_loss("optimizer state: checksum mismatch");
  v.hyper = blob.subspan(state_header_bytes, hyper);
  v.data = blob.subspan(state_header_bytes + hyper, data);
  return v;
}

void seal_state(std::span<std::byte> blob) noexcept {
  const std::size_t covered = blob.size() - state_checksum_bytes;
  store_le<std::uint64_t>(blob.data() + covered, xxh3_64(blob.first(covered)));
}

// ---- outer_optimizer ---------------------------------------------------------------

outer_optimizer::outer_optimizer(std::size_t n, double lr, std::size_t buffers)
    : n_(n), buffers_(buffers), lr_(lr), slab_(n * buffers, 0.0f) {
  DTRAIN_ASSERT(buffers <= std::numeric_limits<std::uint8_t>::max());
}

status outer_optimizer::check_lr(double lr) {
  if (!std::isfinite(lr) || lr < 0) return invalid_argument("learning rate must be finite and >= 0");
  return {};
}

status outer_optimizer::set_lr(double lr) {
  DTRAIN_RETURN_IF_ERROR(check_lr(lr));
  lr_ = lr;
  return {};
}

status outer_optimizer::step(std::span<float> params, std::span<const float> grad) {
  if (params.size() != n_ || grad.size() != n_)
    return invalid_argument("outer step: expected " + std::to_string(n_) + " params and gradients, got " +
                            std::to_string(params.size()) + " and " + std::to_string(grad.size()));
  const std::size_t bad = find_nonfinite(grad);
  if (bad != grad.size()) return invalid_argument("outer step: non-finite gradient at index " + std::to_string(bad));
  apply(params, grad);
  ++steps_;
  return {};
}

std::size_t outer_optimizer::state_bytes() const noexcept { return state_size(hyper_bytes(), buffers_, n_); }

result<std::size_t> outer_optimizer::save_state(std::span<std::byte> out) const {
  const std::size_t total = state_bytes();
  if (out.size() < total)
    return resource_exhausted("save_state needs " + std::to_string(total) + " bytes, got " +
                              std::to_string(out.size()));
  byte_writer w(out.first(total));
  w.put_bytes(state_magic);
  w.put<std::uint16_t>(state_format_version);
  w.put<std::uint8_t>(static_cast<std::uint8_t>(kind()));
  w.put<std::uint8_t>(static_cast<std::uint8_t>(buffers_));
  w.put<std::uint64_t>(n_);
  w.put<std::uint64_t>(steps_);
  w.put<double>(lr_);
  w.put<std::uint16_t>(static_cast<std::uint16_t>(hyper_bytes()));
  w.put<std::uint16_t>(0);
  write_hyper(w);
  auto data = w.take(4 * slab_.size());
  for (std::size_t i = 0; i < slab_.size(); ++i) store_le<float>(data.data() + 4 * i, slab_[i]);
  w.put<std::uint64_t>(0);
  DTRAIN_ASSERT(w.ok() && w.size() == total);
  seal_state(out.first(total));
  return total;
}

status outer_optimizer::load_state(std::span<const std::byte> in) {
  auto v = parse_state(in);
  if (!v.ok()) return v.status();
  if (v->kind != kind())
    return failed_precondition("optimizer state is of kind " + std::to_string(static_cast<int>(v->kind)) +
                               ", this optimizer is " + std::to_string(static_cast<int>(kind())));
  if (v->count != n_)
    return failed_precondition("optimizer state holds " + std::to_string(v->count) + " parameters, expected " +
                               std::to_string(n_));
  // Hyperparameters must match bit for bit: the buffers mean something else otherwise.
  std::byte mine[256];
  DTRAIN_ASSERT(hyper_bytes() <= sizeof mine);
  byte_writer hw({mine, hyper_bytes()});
  write_hyper(hw);
  if (v->hyper.size() != hyper_bytes() || std::memcmp(v->hyper.data(), mine, hyper_bytes()) != 0)
    return failed_precondition("optimizer state was written with other hyperparameters");
  if (v->buffers != buffers_) return data_loss("optimizer state: buffer count does not match its hyperparameters");
  if (!std::isfinite(v->lr) || v->lr < 0) return data_loss("optimizer state: invalid learning rate");
  for (std::size_t i = 0; i < slab_.size(); ++i)
    if (!is_finite_bits(load_le<float>(v->data.data() + 4 * i)))
      return data_loss("optimizer state: non-finite value in buffer " + std::to_string(i / (n_ ? n_ : 1)));
  for (std::size_t i = 0; i < slab_.size(); ++i) slab_[i] = load_le<float>(v->data.data() + 4 * i);
  steps_ = v->steps;
  lr_ = v->lr;
  return {};
}

}  // namespace dtrain::optim
