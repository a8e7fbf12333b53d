// Row dequantization for embeddings: getRows (token ids -> f32 rows of a ggml tensor) and
// dequantizeRow (one contiguous run of bytes, for tables streamed row by row); the row
// dequantizer of every type (the `dequant` of type_traits.h).
//
// Each type's formula and operation order follow ggml's dequantize_row_* (ggml-quants.c), so
// values match llama.cpp's get_rows: Q4_K/Q5_K compute d1 = d * sc and m1 = dmin * m first,
// then d1 * q - m1; Q6_K computes d * sc * q left to right; Q2_K dl * q - ml; Q4_1 / Q5_1
// q * d + m.
#include <algorithm>
#include <type_traits>
#include <string>

#include "ops_common.h"
#include "registry.h"
#include "threadpool.h"
#include "type_traits.h"

// One rounding per operation, as ggml-base's dequantize_row_* (compiled without FMA
// contraction): without this, g++ -march=native fuses d1 * q - m1 into an FMA and the
// results move by an ulp.
#pragma GCC optimize("fp-contract=off")

namespace flexinfer {
namespace ops {

void dequantQ4_0(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    BlockQ4_0 b;
    std::memcpy(&b, src + i * sizeof(BlockQ4_0), sizeof b);
    const float d = f16ToF32(b.d);
    for (int j = 0; j < QK4_0 / 2; j++) {
      y[j] = static_cast<float>((b.qs[j] & 0x0F) - 8) * d;
      y[j + QK4_0 / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
    y += QK4_0;
  }
}

void dequantQ8_0(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    BlockQ8_0 b;
    std::memcpy(&b, src + i * sizeof(BlockQ8_0), sizeof b);
    const float d = f16ToF32(b.d);
    for (int j = 0; j < QK8_0; j++) y[j] = static_cast<float>(b.qs[j]) * d;
    y += QK8_0;
  }
}

void dequantQ4K(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    BlockQ4K b;
    std::memcpy(&b, src + i * sizeof(BlockQ4K), sizeof b);
    const float d = f16ToF32(b.d), dmin = f16ToF32(b.dmin);
    const uint8_t* q = b.qs;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
      uint8_t sc, m;
      scaleMinK4(is, b.scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      scaleMinK4(is + 1, b.scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; l++) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; l++) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void dequantQ5K(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    BlockQ5K b;
    std::memcpy(&b, src + i * sizeof(BlockQ5K), sizeof b);
    const float d = f16ToF32(b.d), dmin = f16ToF32(b.dmin);
    const uint8_t* ql = b.qs;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
      uint8_t sc, m;
      scaleMinK4(is, b.scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      scaleMinK4(is + 1, b.scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; l++) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (b.qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; l++) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (b.qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

void dequantQ6K(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    BlockQ6K b;
    std::memcpy(&b, src + i * sizeof(BlockQ6K), sizeof b);
    const float d = f16ToF32(b.d);
    const uint8_t* ql = b.ql;
    const uint8_t* qh = b.qh;
    const int8_t* sc = b.scales;
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; l++) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

// Q4_1 / Q5_0 / Q5_1: x = q * d + m (two roundings) or (q - 16) * d.
template <GgmlType T>
void dequantLegacy(float* y, const uint8_t* src, int64_t nb) {
  using B = std::conditional_t<T == GgmlType::Q4_1, BlockQ4_1, std::conditional_t<T == GgmlType::Q5_0, BlockQ5_0, BlockQ5_1>>;
  for (int64_t i = 0; i < nb; i++, y += 32) {
    B b;
    std::memcpy(&b, src + i * sizeof(B), sizeof b);
    int q[32];
    if constexpr (T == GgmlType::Q4_1) legacyQuants32(b.qs, nullptr, q);
    else legacyQuants32(b.qs, b.qh, q);
    const float d = f16ToF32(b.d);
    if constexpr (T == GgmlType::Q5_0) {
      for (int j = 0; j < 32; j++) y[j] = static_cast<float>(q[j] - 16) * d;
    } else {
      const float m = f16ToF32(b.m);
      for (int j = 0; j < 32; j++) y[j] = static_cast<float>(q[j]) * d + m;
    }
  }
}


void dequantQ2K(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    BlockQ2K b;
    std::memcpy(&b, src + i * sizeof b, sizeof b);
    const float d = f16ToF32(b.d), min = f16ToF32(b.dmin);
    for (int e = 0; e < QK_K; e += 16) {
      const uint8_t sc = b.scales[e >> 4];  // ggml walks the sub-blocks in element order
      const float dl = d * static_cast<float>(sc & 0xF), ml = min * static_cast<float>(sc >> 4);
      for (int l = 0; l < 16; l++) *y++ = dl * static_cast<float>(q2At(b.qs, e + l)) - ml;
    }
  }
}

void dequantQ3K(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    BlockQ3K b;
    std::memcpy(&b, src + i * sizeof b, sizeof b);
    int8_t sc[16];
    q3Scales(b.scales, sc);
    const float d = f16ToF32(b.d);
    for (int e = 0; e < QK_K; e += 16) {
      // ggml walks the sub-blocks in element order: is = e / 16
      const float dl = d * static_cast<float>(sc[e >> 4]);
      for (int l = 0; l < 16; l++) *y++ = dl * static_cast<float>(q3At(b, e + l));
    }
  }
}


void dequantIQ4NL(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, y += 32) {
    BlockIQ4NL b;
    std::memcpy(&b, src + i * sizeof b, sizeof b);
    const float d = f16ToF32(b.d);
    for (int j = 0; j < 32; j++) y[j] = d * static_cast<float>(iq4At(b.qs, j));
  }
}

void dequantIQ4XS(float* y, const uint8_t* src, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    BlockIQ4XS b;
    std::memcpy(&b, src + i * sizeof b, sizeof b);
    const float d = f16ToF32(b.d);
    for (int ib = 0; ib < 8; ib++, y += 32) {
      const float dl = d * static_cast<float>(iq4xsScale(b, ib));
      for (int j = 0; j < 32; j++) y[j] = dl * static_cast<float>(iq4At(b.qs + 16 * ib, j));
    }
  }
}

// Dequantizes n elements (whole blocks) of `type` at src into y.
static void dequantize(float* y, const uint8_t* src, const TypeTraits& t, int64_t n, bool scalar) {
  switch (t.type) {
    case GgmlType::F32: std::memcpy(y, src, n * 4); break;
    case GgmlType::F16: {
      // src may be unaligned for uint16_t inside a byte table: copy through a small buffer.
      uint16_t buf[256];
      for (int64_t i = 0; i < n; i += 256) {
        const int64_t c = std::min<int64_t>(256, n - i);
        std::memcpy(buf, src + 2 * i, c * 2);
        f16ToF32Row(y + i, buf, c, scalar);
      }
      break;
    }
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        y[i] = bf16ToF32(h);
      }
      break;
    default: t.dequant(y, src, n / t.blockSize); break;
  }
}

static const TypeTraits& checkType(const Napi::Env& env, const char* fn, int64_t type, int64_t n) {
  const TypeTraits* t = typeTraits(static_cast<int>(type));
  if (!t)
    throwRange(env, fn, "ggml type " + std::to_string(type) + " cannot be dequantized (supported: " +
                            supportedTypeNames() + ")");
  if (n % t->blockSize != 0)
    throwRange(env, fn, "row length " + std::to_string(n) + " is not a multiple of " + t->name + "'s block size " +
                            std::to_string(t->blockSize));
  return *t;
}

// getRows(out, table, type, rowLen, numRows, rows)
static Napi::Value GetRows(const Napi::CallbackInfo& info) {
  const char* fn = "getRows";
  Napi::Env env = info.Env();
  auto out = argArray<float>(info, 0, fn, "out");
  auto table = argArray<uint8_t>(info, 1, fn, "table");
  int64_t type = argInt(info, 2, fn, "type", 1000);
  int64_t rowLen = argInt(info, 3, fn, "rowLen");
  int64_t numRows = argInt(info, 4, fn, "numRows");
  auto rows = argArray<int32_t>(info, 5, fn, "rows");
  const TypeTraits& f = checkType(env, fn, type, rowLen);
  const int64_t rowBytes = rowLen / f.blockSize * static_cast<int64_t>(f.typeSize);
  requireLength(env, fn, "table", table, uint64_t(numRows) * rowBytes, "numRows * row bytes");
  requireLength(env, fn, "out", out, uint64_t(rows.length) * rowLen, "rows.length * rowLen");
  for (size_t i = 0; i < rows.length; i++)
    if (rows.data[i] < 0 || rows.data[i] >= numRows)
      throwRange(env, fn, "rows[" + std::to_string(i) + "] = " + std::to_string(rows.data[i]) + " is outside [0, " +
                              std::to_string(numRows) + ")");
  const bool scalar = useScalarKernels();
  auto work = [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; i++)
      dequantize(out.data + i * rowLen, table.data + int64_t(rows.data[i]) * rowBytes, f, rowLen, scalar);
  };
  const int64_t nr = static_cast<int64_t>(rows.length);
  if (nr > 1 && nr * rowLen >= (1 << 16)) parallelFor(nr, 1, work);
  else work(0, nr, 0);
  return env.Undefined();
}

// dequantizeRow(out, src, type, n)
static Napi::Value DequantizeRow(const Napi::CallbackInfo& info) {
  const char* fn = "dequantizeRow";
  Napi::Env env = info.Env();
  auto out = argArray<float>(info, 0, fn, "out");
  auto src = argArray<uint8_t>(info, 1, fn, "src");
  int64_t type = argInt(info, 2, fn, "type", 1000);
  int64_t n = argInt(info, 3, fn, "n");
  const TypeTraits& f = checkType(env, fn, type, n);
  requireLength(env, fn, "src", src, uint64_t(n / f.blockSize * f.typeSize), "bytes of n elements");
  requireLength(env, fn, "out", out, uint64_t(n), "n");
  dequantize(out.data, src.data, f, n, useScalarKernels());
  return env.Undefined();
}

}  // namespace ops

DequantFn dequantRow(GgmlType type) {
  using G = GgmlType;
  switch (type) {
    case G::Q4_0: return ops::dequantQ4_0;
    case G::Q4_1: return ops::dequantLegacy<G::Q4_1>;
    case G::Q5_0: return ops::dequantLegacy<G::Q5_0>;
    case G::Q5_1: return ops::dequantLegacy<G::Q5_1>;
    case G::Q8_0: return ops::dequantQ8_0;
    case G::Q2_K: return ops::dequantQ2K;
    case G::Q3_K: return ops::dequantQ3K;
    case G::Q4_K: return ops::dequantQ4K;
    case G::Q5_K: return ops::dequantQ5K;
    case G::Q6_K: return ops::dequantQ6K;
    case G::IQ4_NL: return ops::dequantIQ4NL;
    case G::IQ4_XS: return ops::dequantIQ4XS;
    default: return nullptr;  // F32 / F16 / BF16: converted in place (dequantize above)
  }
}

}  // namespace flexinfer

FLEXINFER_MODULE(ops_dequant) {
  exports.Set("opsGetRows", Napi::Function::New(env, flexinfer::ops::GetRows, "opsGetRows"));
  exports.Set("opsDequantizeRow", Napi::Function::New(env, flexinfer::ops::DequantizeRow, "opsDequantizeRow"));
}
