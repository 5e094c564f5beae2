// CUDA bulk f32 <-> f16/bf16 conversion. Each thread applies the same scalar functions
// as the CPU reference (dtrain/core/dtype.h), so results match bit for bit.
#include <cuda_runtime.h>

#include <string>

#include "dtrain/core/convert_cuda.h"
#include "dtrain/core/dtype.h"

namespace dtrain::cuda {
namespace {

__global__ void f32_to_f16_kernel(const float* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    out[i] = f32_to_f16_bits(in[i]);
}
__global__ void f32_to_bf16_kernel(const float* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    out[i] = f32_to_bf16_bits(in[i]);
}
__global__ void f16_to_f32_kernel(const std::uint16_t* in, float* out, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    out[i] = f16_bits_to_f32(in[i]);
}
__global__ void bf16_to_f32_kernel(const std::uint16_t* in, float* out, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    out[i] = bf16_bits_to_f32(in[i]);
}

template <class Kernel, class In, class Out>
status launch(Kernel k, const In* in, Out* out, std::size_t n, void* stream) noexcept {
  if (n == 0) return {};
  constexpr unsigned threads = 256;
  const std::size_t want = (n + threads - 1) / threads;
  const unsigned blocks = static_cast<unsigned>(want < 65535 ? want : 65535);
  k<<<blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>(in, out, n);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return unavailable(std::string("CUDA launch failed: ") + cudaGetErrorString(e));
  return {};
}

}  // namespace

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky error: "no device" is not a failure here
    return 0;
  }
  return n;
}

status f32_to_f16(const float* d_in, std::uint16_t* d_out, std::size_t n, void* stream) noexcept {
  return launch(f32_to_f16_kernel, d_in, d_out, n, stream);
}
status f32_to_bf16(const float* d_in, std::uint16_t* d_out, std::size_t n, void* stream) noexcept {
  return launch(f32_to_bf16_kernel, d_in, d_out, n, stream);
}
status f16_to_f32(const std::uint16_t* d_in, float* d_out, std::size_t n, void* stream) noexcept {
  return launch(f16_to_f32_kernel, d_in, d_out, n, stream);
}
status bf16_to_f32(const std::uint16_t* d_in, float* d_out, std::size_t n, void* stream) noexcept {
  return launch(bf16_to_f32_kernel, d_in, d_out, n, stream);
}

}  // namespace dtrain::cuda
