// Parity of cuda/core/convert.cu against lib/core/convert.cpp: bit-identical outputs on
// random bit patterns (NaN, Inf, subnormals included). Exits 77 (skip) without a GPU.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <catch2/catch.hpp>

#include "dtrain/core/convert.h"
#include "dtrain/core/convert_cuda.h"
#include "dtrain/core/rng.h"

namespace {
struct skip_without_gpu {
  skip_without_gpu() {
    if (dtrain::cuda::device_count() == 0) {
      std::puts("no CUDA device: skipping CUDA parity tests");
      std::exit(77);
    }
  }
} skip_guard;
}  // namespace

TEST_CASE("cuda conversions match the CPU reference bit for bit", "[cuda][convert]") {
  const std::size_t n = GENERATE(1u, 1000u, 1u << 20);
  dtrain::counter_rng rng(5, n);
  std::vector<float> x(n);
  for (auto& v : x) v = std::bit_cast<float>(rng.next_u32());
  std::vector<std::uint16_t> h_ref(n), b_ref(n), h_gpu(n), b_gpu(n);
  dtrain::f32_to_f16(x, h_ref);
  dtrain::f32_to_bf16(x, b_ref);
  float* d_x = nullptr;
  std::uint16_t* d_h = nullptr;
  float* d_back = nullptr;
  REQUIRE(cudaMalloc(&d_x, n * 4) == cudaSuccess);
  REQUIRE(cudaMalloc(&d_h, n * 2) == cudaSuccess);
  REQUIRE(cudaMalloc(&d_back, n * 4) == cudaSuccess);
  REQUIRE(cudaMemcpy(d_x, x.data(), n * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(dtrain::cuda::f32_to_f16(d_x, d_h, n).ok());
  REQUIRE(cudaMemcpy(h_gpu.data(), d_h, n * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(h_gpu == h_ref);
  REQUIRE(dtrain::cuda::f16_to_f32(d_h, d_back, n).ok());
  std::vector<float> back_gpu(n), back_ref(n);
  REQUIRE(cudaMemcpy(back_gpu.data(), d_back, n * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  dtrain::f16_to_f32(h_ref, back_ref);
  REQUIRE(std::memcmp(back_gpu.data(), back_ref.data(), n * 4) == 0);
  REQUIRE(dtrain::cuda::f32_to_bf16(d_x, d_h, n).ok());
  REQUIRE(cudaMemcpy(b_gpu.data(), d_h, n * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(b_gpu == b_ref);
  REQUIRE(dtrain::cuda::bf16_to_f32(d_h, d_back, n).ok());
  REQUIRE(cudaMemcpy(back_gpu.data(), d_back, n * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  dtrain::bf16_to_f32(b_ref, back_ref);
  REQUIRE(std::memcmp(back_gpu.data(), back_ref.data(), n * 4) == 0);
  cudaFree(d_x);
  cudaFree(d_h);
  cudaFree(d_back);
}
