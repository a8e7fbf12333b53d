// Global kernel-path switch shared by every compute kernel (ops_*.cc, matmul*.cc).
//
// 'auto'   : use the SIMD paths this build was compiled with (AVX-512 / AVX2 / F16C).
// 'scalar' : use the portable scalar path of every kernel (tests compare the two; also a
//            fallback if a SIMD path is ever suspected of a bug).
// Kernels read the flag once per call: useScalarKernels(). Set from JS with
// setKernelPath('auto' | 'scalar') (registered in kernel_path.cc, typed in src/native/ops.ts).
// Created by helper H4b; H4a's matmul kernels should read the same flag.
#pragma once

#include <atomic>

namespace flexinfer {

inline std::atomic<bool>& scalarKernelsFlag() {
  static std::atomic<bool> flag{false};
  return flag;
}

// True when kernels must take their portable scalar path.
inline bool useScalarKernels() { return scalarKernelsFlag().load(std::memory_order_relaxed); }

inline void setScalarKernels(bool scalar) { scalarKernelsFlag().store(scalar, std::memory_order_relaxed); }

}  // namespace flexinfer
