// ggml block layouts and scalar conversions shared by the compute kernels.
//
// Layouts follow ggml-common.h byte for byte (GGUF files store these blocks as-is). Weights
// come in the legacy 32-element types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), the 256-element K-quants
// (Q2_K .. Q6_K) and the non-linear IQ4_NL / IQ4_XS; activations are quantized to the weight
// type's vec_dot_type, Q8_0, Q8_1 or Q8_K, as llama.cpp's CPU backend does (type_traits.h).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace flexinfer {

constexpr int QK4_0 = 32;
constexpr int QK8_0 = 32;
constexpr int QK_K = 256;
constexpr int K_SCALE_SIZE = 12;

#pragma pack(push, 1)
// 32 weights: w = d * (q - 8), q in [0, 15]; qs[j] holds element j (low nibble) and j+16.
struct BlockQ4_0 {
  uint16_t d;  // f16
  uint8_t qs[QK4_0 / 2];
};
// 32 values: v = d * q.
struct BlockQ8_0 {
  uint16_t d;  // f16
  int8_t qs[QK8_0];
};
// 256 weights in 8 sub-blocks of 32: w = d * sc[j] * q - dmin * m[j], 6-bit sc/m packed in
// `scales`; qs: 4 chunks of 64 elements, each 32 bytes (low nibbles = first 32, high = next 32).
struct BlockQ4K {
  uint16_t d;     // f16, super-block scale for the scales
  uint16_t dmin;  // f16, super-block scale for the mins
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qs[QK_K / 2];
};
// As Q4_K plus a fifth bit per weight in qh (bit 2c of qh[l] for the low half of chunk c,
// bit 2c+1 for the high half).
struct BlockQ5K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
// 256 weights in 16 sub-blocks of 16: w = d * scales[j] * (q - 32), q 6 bits = 4 in ql, 2 in qh.
struct BlockQ6K {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  uint16_t d;  // f16
};
// 32 weights: w = d * q + m, q in [0, 15] (nibbles as Q4_0).
struct BlockQ4_1 {
  uint16_t d;  // f16
  uint16_t m;  // f16
  uint8_t qs[16];
};
// 32 weights: w = d * (q - 16), q in [0, 31]: low 4 bits as Q4_0, bit 4 of element j in bit j of qh.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
// 32 weights: w = d * q + m, q in [0, 31] (bits as Q5_0).
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[16];
};
// Activation block for Q4_1 / Q5_1: v = d * q; s = d * sum(q) (f16).
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[32];
};
// 256 weights in 16 sub-blocks of 16: w = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4),
// q in [0, 3]; element 128h + 32g + l in bits 2g.. of qs[32h + l].
struct BlockQ2K {
  uint8_t scales[QK_K / 16];
  uint8_t qs[QK_K / 4];
  uint16_t d;
  uint16_t dmin;
};
// 256 weights in 16 sub-blocks of 16: w = d * (sc[j] - 32) * (q - 4), q in [0, 7]: 2 bits as
// Q2_K, the third in bit (e / 32) of hmask[e % 32] (the same 32 bytes for both halves); sc 6 bits
// packed in `scales` (see q3Scales).
struct BlockQ3K {
  uint8_t hmask[QK_K / 8];
  uint8_t qs[QK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};
// 32 weights: w = d * kIQ4Values[q] (nibbles as Q4_0).
struct BlockIQ4NL {
  uint16_t d;
  uint8_t qs[16];
};
// 256 weights in 8 blocks of 32: w = d * (ls - 32) * kIQ4Values[q], ls 6 bits: low 4 in
// scales_l[ib / 2] >> 4 (ib % 2), high 2 in scales_h >> 2 ib; nibbles per block of 32 as Q4_0.
struct BlockIQ4XS {
  uint16_t d;
  uint16_t scalesH;
  uint8_t scalesL[QK_K / 64];
  uint8_t qs[QK_K / 2];
};
// Activation block for the K-quants: v = d * q, bsums[j] = sum of qs[16j .. 16j+15].
struct BlockQ8K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];
};
#pragma pack(pop)

static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 size");
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 size");
static_assert(sizeof(BlockQ4K) == 144, "block_q4_K size");
static_assert(sizeof(BlockQ5K) == 176, "block_q5_K size");
static_assert(sizeof(BlockQ6K) == 210, "block_q6_K size");
static_assert(sizeof(BlockQ8K) == 292, "block_q8_K size");
static_assert(sizeof(BlockQ4_1) == 20, "block_q4_1 size");
static_assert(sizeof(BlockQ5_0) == 22, "block_q5_0 size");
static_assert(sizeof(BlockQ5_1) == 24, "block_q5_1 size");
static_assert(sizeof(BlockQ8_1) == 36, "block_q8_1 size");
static_assert(sizeof(BlockQ2K) == 84, "block_q2_K size");
static_assert(sizeof(BlockQ3K) == 110, "block_q3_K size");
static_assert(sizeof(BlockIQ4NL) == 18, "block_iq4_nl size");
static_assert(sizeof(BlockIQ4XS) == 136, "block_iq4_xs size");

// kvalues_iq4nl: the 16 levels of IQ4_NL / IQ4_XS.
alignas(16) inline constexpr int8_t kIQ4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                       1,    13,   25,  38,  53,  69,  89,  113};

// ---- f16 / bf16 <-> f32 (scalar; round to nearest even, as ggml) ----

inline float fp32FromBits(uint32_t w) {
  float f;
  std::memcpy(&f, &w, 4);
  return f;
}
inline uint32_t fp32Bits(float f) {
  uint32_t w;
  std::memcpy(&w, &f, 4);
  return w;
}

inline float f16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  if (exp == 0) {
    if (man == 0) return fp32FromBits(sign);
    // Subnormal: man * 2^-24, exact in f32.
    float v = static_cast<float>(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) return fp32FromBits(sign | 0x7f800000u | (man << 13));
  return fp32FromBits(sign | ((exp + 112) << 23) | (man << 13));
}

inline uint16_t f32ToF16(float f) {
  const uint32_t x = fp32Bits(f);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00);  // NaN
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00);  // rounds to inf
  if (ax < 0x38800000u) {
    // Result is subnormal (or zero): value / 2^-24 rounded to nearest even integer.
    float v = fp32FromBits(ax) * 16777216.0f;  // exact scaling by 2^24
    uint32_t m = static_cast<uint32_t>(std::nearbyint(v));
    return static_cast<uint16_t>(sign | m);  // m == 0x400 rolls into the smallest normal
  }
  // Normal: drop 13 mantissa bits with round to nearest even.
  uint32_t r = ax + 0xfffu + ((ax >> 13) & 1);
  return static_cast<uint16_t>(sign | ((r >> 13) - (112u << 10)));
}

inline float bf16ToF32(uint16_t h) { return fp32FromBits(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32ToBf16(float f) {
  const uint32_t u = fp32Bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64);  // quiet NaN
  return static_cast<uint16_t>((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

// Scale and min of sub-block j (0..7) of a Q4_K / Q5_K block: 6 bits each, packed in 12 bytes.
inline void scaleMinK4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// The 16 scales of a Q3_K block (6 bits each, minus 32), as ggml's dequantize_row_q3_K unpacks them.
inline void q3Scales(const uint8_t* packed, int8_t* sc) {
  constexpr uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
  uint32_t aux[4];
  std::memcpy(aux, packed, 12);
  const uint32_t tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  std::memcpy(sc, aux, 16);
  for (int j = 0; j < 16; j++) sc[j] = static_cast<int8_t>(sc[j] - 32);
}

// 6-bit scale of block ib of an IQ4_XS super-block, minus 32.
inline int iq4xsScale(const BlockIQ4XS& b, int ib) {
  return (((b.scalesL[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b.scalesH >> (2 * ib)) & 3) << 4)) - 32;
}

// The 32 quants of a Q4_1 / Q5_0 / Q5_1 block in element order (low nibbles = elements 0..15,
// high = 16..31), with the fifth bit of element j from bit j of qh (Q5_*; qh null for Q4_1).
inline void legacyQuants32(const uint8_t* qs, const uint8_t* qh, int* q) {
  uint32_t h = 0;
  if (qh) std::memcpy(&h, qh, 4);
  for (int j = 0; j < 16; j++) {
    q[j] = (qs[j] & 0xF) | static_cast<int>(((h >> j) & 1) << 4);
    q[j + 16] = (qs[j] >> 4) | static_cast<int>(((h >> (j + 16)) & 1) << 4);
  }
}

// Quant of element e (0..255) of a Q2_K / Q3_K block's 2-bit field: element 128h + 32g + l sits
// in bits 2g.. of qs[32h + l].
inline int q2At(const uint8_t* qs, int e) { return (qs[32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3; }

// Q3_K quant of element e, -4..3: the high bit of element e is bit e / 32 of hmask[e % 32];
// without it the quant is q - 4.
inline int q3At(const BlockQ3K& b, int e) { return q2At(b.qs, e) - ((b.hmask[e & 31] >> (e >> 5)) & 1 ? 0 : 4); }

// Table value of element j (0..31) of an IQ4 block of 32 (16 nibble bytes, as Q4_0).
inline int iq4At(const uint8_t* qs, int j) { return kIQ4Values[j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4]; }

}  // namespace flexinfer
