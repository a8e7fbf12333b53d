// One table of ggml weight types (the anchor is ggml's type_traits / type_traits_cpu): per type
// its block, the type its activations are converted to for dot products (vec_dot_type), the
// row dequantizer, and its matmul kernels. Code that needs a type asks the table
// (type_traits.cc); nothing else switches over types.
//
// Kernel families live one file per family, each with its scalar reference beside the SIMD
// paths:
//   float and the first legacy / K-quant types   matmul_scalar.cc + matmul_x86*.cc
//   Q4_1, Q5_0, Q5_1 (32-element legacy blocks)   matmul_legacy.cc
//   Q2_K, Q3_K (256-element K-quants)              matmul_k23.cc
//   IQ4_NL, IQ4_XS (non-linear 4-bit)              matmul_iq4.cc
#pragma once

#include <cstddef>
#include <cstdint>

#include "matmul.h"

namespace flexinfer {

// Packed activation formats (matmul.h: "Packed activation rows").
enum class ActKind { F32, F16, BF16, Q8_0, Q8_1, Q8_K };

// Dequantizes `nb` whole blocks at src into y (ggml's dequantize_row_*, same f32 steps).
using DequantFn = void (*)(float* y, const uint8_t* src, int64_t nb);
// The kernel for m activation rows from the type's break-even on, else nullptr.
using BatchKernelFn = MatmulKernel (*)(int64_t m);

// What a family file provides for one type.
struct TypeKernels {
  MatmulKernel scalar;  // portable reference: the SIMD paths are tested against it
  MatmulKernel simd;    // row tiles and 8-row m = 1 kernels; nullptr where the build has none
  BatchKernelFn batch;  // repacked panels / register tiles for m rows; nullptr if none
};

struct TypeTraits {
  GgmlType type;
  const char* name;
  int blockSize;
  size_t typeSize;
  ActKind act;
  // Q8_0 activations: the per-block lane correction packQ8_0 stores is actCorr * sum(q)
  // (the unsigned offset of weights fed to vpdpbusd, spread over 8 lanes); 0 if unused.
  int actCorr;
  DequantFn dequant;  // ggml's dequantize_row_* (ops_dequant.cc); nullptr for F32 / F16 / BF16
  TypeKernels k;
};

// Traits of ggml type id `type`, or nullptr when flexinfer does not compute with it.
const TypeTraits* typeTraits(int type);
// "F32, F16, ..." for error messages.
const char* supportedTypeNames();

// Family providers (one per file; see above). Each returns the kernels of its types.
TypeKernels legacyKernels(GgmlType type);  // matmul_legacy.cc
TypeKernels k23Kernels(GgmlType type);     // matmul_k23.cc
TypeKernels iq4Kernels(GgmlType type);     // matmul_iq4.cc
// The row dequantizer of a block type (ops_dequant.cc).
DequantFn dequantRow(GgmlType type);

}  // namespace flexinfer
