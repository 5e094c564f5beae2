// dtrain/shard/erasure.h: systematic Reed-Solomon erasure coding over GF(2^8) with a
// Cauchy matrix (ISA-L), k data chunks plus m parity chunks, any k of the k+m rebuild the
// data; and a plain reference encoder for the parity tests. Matrix and field:
// docs/shard.md "Erasure code".
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dtrain/core/status.h"

namespace dtrain::shard {

/// Largest k + m: ISA-L's Cauchy rows are 1/(i XOR j) with i < k+m, distinct from j < k.
inline constexpr std::size_t rs_max_chunks = 255;

/// A systematic RS(k, m) code: chunk i < k is data chunk i unchanged; parity chunk j
/// (chunk index k + j) is, byte by byte, sum_i C[j][i]·data[i] over GF(2^8) with the field
/// polynomial x^8+x^4+x^3+x^2+1 (0x11d) and C[j][i] = 1 / ((k + j) XOR i), the lower rows
/// of ISA-L's gf_gen_cauchy1_matrix(k + m, k). Every k x k submatrix of [I; C] is
/// invertible (MDS). The object is immutable after create(): share it across threads.
class rs_code {
 public:
  /// Builds the matrix and ISA-L's expanded tables (32·k·m bytes).
  /// Errors: invalid_argument unless k >= 1 and k + m <= rs_max_chunks (m may be 0).
  static result<rs_code> create(std::size_t k, std::size_t m);

  std::size_t k() const noexcept { return k_; }
  std::size_t m() const noexcept { return m_; }

  /// Writes parity[j] (j < m) from data[i] (i < k). Every span has the same length,
  /// >= 1 byte; any alignment works (ISA-L's AVX2/AVX-512 paths are fastest on lengths
  /// that are multiples of 64). Output spans must not overlap inputs or each other.
  /// Deterministic; allocates nothing. With m == 0 it checks the arguments and returns.
  /// Errors: invalid_argument for data.size() != k, parity.size() != m, a length mismatch
  /// or a zero length.
  status encode(std::span<const std::span<const std::byte>> data,
                std::span<const std::span<std::byte>> parity) const;

  /// Rebuilds data chunks from any k present chunks. `present` holds k distinct chunk
  /// indices in [0, k+m); chunks[i] holds the bytes of chunk present[i]. `missing` holds
  /// distinct data indices (< k) to rebuild (possibly ones that are also present, or none);
  /// out[j] receives data chunk missing[j]. All spans have one length >= 1; outputs must
  /// not overlap inputs. Deterministic; allocates the k x k decode matrix and tables.
  /// Errors: invalid_argument for wrong counts, lengths, an index out of range or a
  /// duplicate index.
  status reconstruct(std::span<const std::size_t> present,
                     std::span<const std::span<const std::byte>> chunks,
                     std::span<const std::size_t> missing,
                     std::span<const std::span<std::byte>> out) const;

  /// The (k+m) x k encoding matrix, row-major: identity on top, the Cauchy rows below.
  const std::vector<std::uint8_t>& matrix() const noexcept { return matrix_; }

 private:
  rs_code() = default;
  std::size_t k_ = 0;
  std::size_t m_ = 0;
  std::vector<std::uint8_t> matrix_;  // (k+m) x k
  std::vector<std::uint8_t> tables_;  // ec_init_tables(k, m, parity rows): 32·k·m
};

/// The plain reference for the parity tests: the same code as rs_code::encode, computed
/// byte by byte with GF(2^8) log/exp tables (generator 2, polynomial 0x11d) and its own
/// Cauchy matrix, without ISA-L. Slow (one table lookup pair per byte and coefficient).
/// Errors: as rs_code::create and rs_code::encode.
status rs_encode_reference(std::size_t k, std::size_t m,
                           std::span<const std::span<const std::byte>> data,
                           std::span<const std::span<std::byte>> parity);

}  // namespace dtrain::shard
