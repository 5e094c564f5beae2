// dtrain/codec/codec_powersgd.h: rank-r PowerSGD for one 2-D tensor (Vogels et al.,
// arXiv 1905.13727): one step of warm-started subspace iteration, payload P (R x r) and
// Q (C x r), decoded as P Q^T. Not summable. Wire format: docs/codecs/powersgd_ef.md.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dtrain/codec/payload.h"
#include "dtrain/codec/spec.h"

namespace dtrain::codec {

/// Largest rows * cols a powersgd codec accepts (keeps every size computation far from
/// overflow; 2^48 floats is 1 PiB).
inline constexpr std::uint64_t powersgd_max_elements = std::uint64_t{1} << 48;

/// Single-peer PowerSGD compressor with warm start. The input of encode() is the row-major
/// rows x cols matrix M. encode(): P = M Q_prev, orthonormalize P's columns (Gram-Schmidt
/// twice, in double), Q = M^T P; the payload carries P and Q as f32 and Q is kept as the
/// next warm start. The first encode draws Q_prev uniformly in [-1, 1) from
/// counter_rng(seed). All arithmetic is in a fixed order in double, so the payload bytes
/// are identical on every IEEE-754 machine.
class powersgd_codec final : public basic_codec {
 public:
  /// @pre 1 <= rows, cols <= 2^32-1; rows*cols <= powersgd_max_elements;
  ///      1 <= rank <= min(rows, cols) (from_spec/from_params check these).
  powersgd_codec(std::uint32_t rows, std::uint32_t cols, std::uint32_t rank, std::uint64_t seed) noexcept;

  codec_id id() const noexcept override { return codec_id::powersgd; }
  /// "powersgd:rows=R,cols=C,rank=r,seed=s".
  std::string spec() const override;
  /// False: P and Q are data dependent (a sum of P Q^T products is not a P Q^T product).
  bool summable() const noexcept override { return false; }

  std::uint32_t rows() const noexcept { return rows_; }
  std::uint32_t cols() const noexcept { return cols_; }
  std::uint32_t rank() const noexcept { return rank_; }
  /// Drops the warm start: the next encode starts again from counter_rng(seed).
  void reset() noexcept { q_.clear(); }

  /// Keys: rows, cols (required, >= 1), rank (default min(2, rows, cols)), seed (default 0).
  /// Errors: invalid_argument for a missing/out-of-range key or rows*cols > 2^48.
  static result<std::unique_ptr<codec>> from_spec(spec_args& a);
  /// Decoder for a payload's parameters. Errors: data_loss for inconsistent parameters
  /// (rank out of range, rows*cols != count).
  static result<std::unique_ptr<codec>> from_params(std::span<const std::byte> params, std::uint64_t count);

 protected:
  std::size_t params_bytes() const noexcept override { return 12; }
  void write_params(byte_writer& w) const noexcept override;
  status check_params(std::span<const std::byte> params, std::uint64_t count) const override;
  /// 4 * rank * (rows + cols), whatever n is (check_input rejects n != rows*cols).
  std::size_t body_bytes(std::size_t n) const noexcept override;
  status check_input(std::span<const float> in) const override;
  void encode_body(std::span<const float> in, std::span<std::byte> body) override;
  status decode_body(std::span<const std::byte> params, std::span<const std::byte> body, std::span<float> out,
                     bool accumulate, float weight) const override;

 private:
  std::uint32_t rows_, cols_, rank_;
  std::uint64_t seed_;
  // Encoder state and scratch, sized on the first encode (decoders never allocate them).
  std::vector<double> q_;   // warm start, rank x cols (column k of Q is q_[k*cols ...])
  std::vector<double> p_;   // rank x rows
  std::vector<double> qn_;  // rank x cols
};

}  // namespace dtrain::codec
