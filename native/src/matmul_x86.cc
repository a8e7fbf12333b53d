// SIMD path of matmul for x86: AVX2 + FMA + F16C kernels, using AVX512-VNNI (256-bit
// vpdpbusd / vpdpwssd, AVX512VL) where the build has it. Builds without AVX2 (portable builds,
// other CPUs) compile this file to an empty kernel table and matmul uses the scalar path.
//
// Row tiles: one weight row (float weights: two) against up to kTileRows activation rows (NX),
// so the unpacked weight block stays in registers for NX dots. Integer dot products per block
// are exact, as in ggml; the f32 steps are the canonical ones of matmul.h (row invariance) and
// differ from the scalar path only in summation order (Q4_0, Q8_0, Q5_K, Q6_K: not at all).
// (Repacked panels for several activation rows: matmul_x86_repack*.cc. m = 1 for Q4_0, Q4_K and
// Q6_K: 8 weight rows at a time, gemv8*, same f32 steps per row as the tiles.)
//
// 256-bit vectors rather than 512: on Zen 4 (this project's reference CPU) 512-bit integer ops
// are split into two 256-bit halves, and ggml's blocks (32 quants, 16 bytes of nibbles) map
// onto 256-bit registers without shuffles.
#include "matmul.h"

#include "matmul_x86.h"
#include "matmul_x86_nib.h"

#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "quants.h"

namespace flexinfer {

#ifdef FLEXINFER_MATMUL_AVX2

namespace {

using namespace x86;

#ifdef FLEXINFER_VNNI
constexpr const char* kPathName = "avx2+avx512vnni";
#else
constexpr const char* kPathName = "avx2";
#endif

// ---- float weights: f32 / f16 / bf16 against f32 activations ----

inline __m256 loadW(const float* w) { return _mm256_loadu_ps(w); }
inline __m256 loadW(const uint16_t* w, std::integral_constant<int, 0>) {  // f16
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
}
inline __m256 loadW(const uint16_t* w, std::integral_constant<int, 1>) {  // bf16: shift into the top half
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w))), 16));
}

template <int Kind>  // 0 f32, 1 f16, 2 bf16
inline __m256 load8(const uint8_t* w, int64_t e) {
  if constexpr (Kind == 0) return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + e);
  else if constexpr (Kind == 1) return loadW(reinterpret_cast<const uint16_t*>(w) + e, std::integral_constant<int, 0>());
  else return loadW(reinterpret_cast<const uint16_t*>(w) + e, std::integral_constant<int, 1>());
}
template <int Kind>
inline float load1(const uint8_t* w, int64_t e) {
  if constexpr (Kind == 0) return reinterpret_cast<const float*>(w)[e];
  else if constexpr (Kind == 1) return f16ToF32(reinterpret_cast<const uint16_t*>(w)[e]);
  else return bf16ToF32(reinterpret_cast<const uint16_t*>(w)[e]);
}

template <int Kind, int NX>
void tileFloat(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  __m256 acc0[NX], acc1[NX];
  for (int i = 0; i < NX; i++) acc0[i] = acc1[i] = _mm256_setzero_ps();
  int64_t e = 0;
  for (; e + 16 <= k; e += 16) {
    const __m256 w0 = load8<Kind>(w, e), w1 = load8<Kind>(w, e + 8);
    for (int i = 0; i < NX; i++) {
      acc0[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(a[i].f() + e), acc0[i]);
      acc1[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(a[i].f() + e + 8), acc1[i]);
    }
  }
  for (; e + 8 <= k; e += 8) {
    const __m256 w0 = load8<Kind>(w, e);
    for (int i = 0; i < NX; i++) acc0[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(a[i].f() + e), acc0[i]);
  }
  for (int i = 0; i < NX; i++) {
    float s = hsum(_mm256_add_ps(acc0[i], acc1[i]));
    for (int64_t t = e; t < k; t++) s += load1<Kind>(w, t) * a[i].f()[t];
    out[i * ldo] = s;
  }
}

// Two weight rows (w, w + wStride) against NX activation rows: 2 weight loads and NX
// activation loads feed 2 * NX FMAs (0.75 loads per FMA at NX = 4, against 1.25 for one row).
// Same f32 steps per (weight row, activation row) as tileFloat (even 8-chunks into one
// accumulator, odd into another, then hsum(a + b) and the scalar tail), so results do not depend
// on which of the two kernels ran (row invariance).
template <int Kind, int NX>
void tileFloat2(const uint8_t* w, size_t wStride, const Act* a, int64_t k, float* out, int64_t ldo) {
  const uint8_t* w1 = w + wStride;
  __m256 p0[NX], p1[NX], q0[NX], q1[NX];  // row 0: p0 (even chunks), p1 (odd); row 1: q0, q1
  for (int i = 0; i < NX; i++) p0[i] = p1[i] = q0[i] = q1[i] = _mm256_setzero_ps();
  int64_t e = 0;
  for (; e + 16 <= k; e += 16) {
    const __m256 v0 = load8<Kind>(w, e), v1 = load8<Kind>(w1, e);
    const __m256 u0 = load8<Kind>(w, e + 8), u1 = load8<Kind>(w1, e + 8);
    for (int i = 0; i < NX; i++) {
      const __m256 x0 = _mm256_loadu_ps(a[i].f() + e), x1 = _mm256_loadu_ps(a[i].f() + e + 8);
      p0[i] = _mm256_fmadd_ps(v0, x0, p0[i]);
      q0[i] = _mm256_fmadd_ps(v1, x0, q0[i]);
      p1[i] = _mm256_fmadd_ps(u0, x1, p1[i]);
      q1[i] = _mm256_fmadd_ps(u1, x1, q1[i]);
    }
  }
  for (; e + 8 <= k; e += 8) {
    const __m256 v0 = load8<Kind>(w, e), v1 = load8<Kind>(w1, e);
    for (int i = 0; i < NX; i++) {
      const __m256 x0 = _mm256_loadu_ps(a[i].f() + e);
      p0[i] = _mm256_fmadd_ps(v0, x0, p0[i]);
      q0[i] = _mm256_fmadd_ps(v1, x0, q0[i]);
    }
  }
  for (int i = 0; i < NX; i++) {
    float s0 = hsum(_mm256_add_ps(p0[i], p1[i])), s1 = hsum(_mm256_add_ps(q0[i], q1[i]));
    for (int64_t t = e; t < k; t++) {
      s0 += load1<Kind>(w, t) * a[i].f()[t];
      s1 += load1<Kind>(w1, t) * a[i].f()[t];
    }
    out[i * ldo] = s0;
    out[i * ldo + 1] = s1;
  }
}

template <int Kind>
void runFloat(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& rows, int64_t nx, int64_t k, float* out,
              int64_t ldo) {
  for (int64_t i = 0; i < nx; i += 4) {
    Act a[4];
    const int cnt = static_cast<int>(nx - i < 4 ? nx - i : 4);
    for (int t = 0; t < cnt; t++) a[t] = {rows.base + static_cast<size_t>(i + t) * rows.stride, &rows.layout};
    int64_t r = 0;
    for (; r + 2 <= nw; r += 2) {
      const uint8_t* wr = w + static_cast<size_t>(r) * wStride;
      float* o = out + i * ldo + r;
      switch (cnt) {
        case 4: tileFloat2<Kind, 4>(wr, wStride, a, k, o, ldo); break;
        case 3: tileFloat2<Kind, 3>(wr, wStride, a, k, o, ldo); break;
        case 2: tileFloat2<Kind, 2>(wr, wStride, a, k, o, ldo); break;
        default: tileFloat2<Kind, 1>(wr, wStride, a, k, o, ldo); break;
      }
    }
    if (r < nw) {
      const uint8_t* wr = w + static_cast<size_t>(r) * wStride;
      float* o = out + i * ldo + r;
      switch (cnt) {
        case 4: tileFloat<Kind, 4>(wr, a, k, o, ldo); break;
        case 3: tileFloat<Kind, 3>(wr, a, k, o, ldo); break;
        case 2: tileFloat<Kind, 2>(wr, a, k, o, ldo); break;
        default: tileFloat<Kind, 1>(wr, a, k, o, ldo); break;
      }
    }
  }
}

// ---- Q4_0 · Q8_0 and Q8_0 · Q8_0 ----
// Q8_0: llama.cpp's x86 backend has no repacked Q8_0 layout; both its prompt path (llamafile
// tinyBLAS_Q0_AVX) and its decode path (ggml_vec_dot_q8_0_q8_0) keep 8 f32 lanes, lane l taking
// the exact dot of bytes 4l..4l+3 of each block: acc_l = fma(d_w * d_x, float(dot_l), acc_l),
// then one horizontal sum ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). Same steps here.
// Serves m = 1 (and every m without AVX512-VNNI); batches take the 4 x 4 register tiles of
// matmul_x86_q8_0.cc, which do the same steps per output.
template <int NX>
void tileQ8_0(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  __m256 acc[NX];
  for (int i = 0; i < NX; i++) acc[i] = _mm256_setzero_ps();
  const int64_t nb = k / QK8_0;
  const BlockQ8_0* wb = reinterpret_cast<const BlockQ8_0*>(w);
  for (int64_t b = 0; b < nb; b++) {
    const __m256i q = loadu(wb[b].qs);
    const float dw = h2f(wb[b].d);
    // |q| unsigned against x with q's sign: exact per-lane dots (|q| <= 128, |x| <= 127).
    const __m256i qa = _mm256_sign_epi8(q, q);
    for (int i = 0; i < NX; i++) {
      const __m256i xs = _mm256_sign_epi8(loadu(a[i].qs() + b * QK8_0), q);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
      const __m256i lanes = _mm256_dpbusd_epi32(_mm256_setzero_si256(), qa, xs);
#else
      const __m256i lanes = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, xs), _mm256_set1_epi16(1));
#endif
      acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[i].d()[b]), _mm256_cvtepi32_ps(lanes), acc[i]);
    }
  }
  for (int i = 0; i < NX; i++) out[i * ldo] = hsum(acc[i]);
}

// ---- Q4_0, m = 1 and row tiles: matmul_x86_nib.h (shared with IQ4_NL) ----

// ---- Q4_K / Q5_K · Q8_K ----
// Per super-block: sumi = sum_j sc[j] * dot(q_j, x_j) over 8 sub-blocks of 32 (q unsigned),
// mins = sum_j m[j] * (bsums[2j] + bsums[2j+1]); result += d * sumi - dmin * mins.

// Scales and mins of a Q4_K/Q5_K block as int16 vectors: sc16[j] = broadcast sc[j];
// mins16 = [m0, m0, m1, m1, ..., m7, m7] to pair with the 16 bsums. The 12 packed bytes are
// rearranged with 32-bit masks into 8 scale bytes then 8 min bytes (the same bit moves as
// scaleMinK4, four sub-blocks at a time), then spread with byte shuffles: measured ~2x the m = 1
// throughput of a scalar unpack plus set1/setr.
inline void kScales(const uint8_t* packed, __m256i* sc16, __m256i* mins16) {
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  uint32_t u[3];
  std::memcpy(u, packed, 12);
  uint32_t r[4];
  r[0] = u[0] & kLow6;                                    // sc 0..3
  r[1] = (u[2] & kLow4) | (((u[0] >> 6) & kLow2) << 4);   // sc 4..7
  r[2] = u[1] & kLow6;                                    // m 0..3
  r[3] = ((u[2] >> 4) & kLow4) | (((u[1] >> 6) & kLow2) << 4);  // m 4..7
  const __m128i sm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r));  // [sc0..7, m0..7]
  // int16 scales in both 128-bit lanes, then broadcast each with a byte shuffle.
  const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
  for (int j = 0; j < 8; j++) {
    const __m256i pick = _mm256_set1_epi16(static_cast<short>((2 * j) | ((2 * j + 1) << 8)));
    sc16[j] = _mm256_shuffle_epi8(sc, pick);
  }
  const __m128i dup = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
  *mins16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm, dup));
}

// Q4_K: the canonical f32 steps of matmul.h (llama.cpp's q4_Kx8 GEMV): the super-block summed
// to one int32, acc = fma(float(sumi), d_w * d_x, acc), the min term in a second accumulator.
// Q5_K: llama.cpp's ggml_vec_dot_q5_K_q8_K (AVX2 path) steps instead: sumi kept as its 8 int32
// lanes (lane l = sum_j sc[j] * dot of quants 4l..4l+3 of sub-block j: what maddubs + dpwssd
// produce anyway), acc_l = fma(d_w * d_x, float(lane l), acc_l); the min term a scalar chain
// summs = fma(-(d_x * dmin_w), float(mins), summs) (libggml contracts it: measured); result
// hsum(acc) + summs. Bitwise llama.cpp's (src/native/matmul-llamacpp.test.ts).
template <bool Q5, int NX>
void tileQK45(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  const __m256i mask = _mm256_set1_epi8(0x0F);
  float acc[NX], accMin[NX];  // Q4_K: sums; Q5_K: accMin is summs
  __m256 accv[NX];            // Q5_K: the 8 f32 lanes
  for (int i = 0; i < NX; i++) {
    acc[i] = accMin[i] = 0.0f;
    accv[i] = _mm256_setzero_ps();
  }
  const int64_t nb = k / QK_K;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* scales;
    const uint8_t* qs;
    uint16_t dh, dminh;
    __m256i hbits = _mm256_setzero_si256();
    if constexpr (Q5) {
      const BlockQ5K& blk = reinterpret_cast<const BlockQ5K*>(w)[b];
      scales = blk.scales, qs = blk.qs, dh = blk.d, dminh = blk.dmin;
      hbits = loadu(blk.qh);
    } else {
      const BlockQ4K& blk = reinterpret_cast<const BlockQ4K*>(w)[b];
      scales = blk.scales, qs = blk.qs, dh = blk.d, dminh = blk.dmin;
    }
    __m256i sc16[8], mins16;
    kScales(scales, sc16, &mins16);
    // q[j]: the 32 quants of sub-block j, unsigned bytes.
    __m256i q[8];
    for (int c = 0; c < 4; c++) {
      const __m256i raw = loadu(qs + 32 * c);
      q[2 * c] = _mm256_and_si256(raw, mask);
      q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
    }
    if constexpr (Q5) {
      // Fifth bit of sub-block j is bit j of qh[l]: move it to bit 4 of each byte.
      const __m256i one = _mm256_set1_epi8(1);
      for (int j = 0; j < 8; j++) {
        const __m256i bit = _mm256_and_si256(_mm256_srli_epi16(hbits, j), one);
        q[j] = _mm256_or_si256(q[j], _mm256_slli_epi16(bit, 4));
      }
    }
    const float dw = h2f(dh), dminw = h2f(dminh);
    for (int i = 0; i < NX; i++) {
      const int8_t* x = a[i].qs() + b * QK_K;
      // Two chains of 4 (one of 8 dependent vpdpwssd bound m = 1 by latency); integer, exact.
      __m256i sa = _mm256_setzero_si256(), sb = _mm256_setzero_si256();
      for (int j = 0; j < 8; j += 2) {
        sa = dpwssd(sa, _mm256_maddubs_epi16(q[j], loadu(x + 32 * j)), sc16[j]);
        sb = dpwssd(sb, _mm256_maddubs_epi16(q[j + 1], loadu(x + 32 * j + 32)), sc16[j + 1]);
      }
      const __m256i sumi = _mm256_add_epi32(sa, sb);
      const __m256i mins = _mm256_madd_epi16(loadu(a[i].sums16() + b * 16), mins16);
      const float dx = a[i].d()[b];
      if constexpr (Q5) {
        accv[i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), _mm256_cvtepi32_ps(sumi), accv[i]);
        accMin[i] = std::fma(-(dx * dminw), static_cast<float>(hsumEpi32(mins)), accMin[i]);
      } else {
        acc[i] = std::fma(static_cast<float>(hsumEpi32(sumi)), dw * dx, acc[i]);
        accMin[i] = std::fma(static_cast<float>(hsumEpi32(mins)), dminw * dx, accMin[i]);
      }
    }
  }
  for (int i = 0; i < NX; i++) out[i * ldo] = Q5 ? hsum(accv[i]) + accMin[i] : acc[i] - accMin[i];
}

template <int NX>
void tileQ4_K(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  tileQK45<false, NX>(w, a, k, out, ldo);
}
template <int NX>
void tileQ5_K(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  tileQK45<true, NX>(w, a, k, out, ldo);
}

// The 16-byte heads of a Q4_K / Q5_K super-block (d, dmin, 12 packed scale bytes) of 8 rows
// (`blk` row 0, rows wStride apart), unpacked at once: rows r and r + 4 go in the two 128-bit
// halves, then a 4 x 4 dword transpose per half gives dword lane r = row r: dd = d | dmin,
// s03 / s47 = scale bytes of sub-blocks 0-3 / 4-7, m03 / m47 = the mins (kScales' bit moves,
// 32-bit shifts; the masks keep bytes apart).
struct KHeads8 {
  __m256i dd, s03, s47, m03, m47;
};

inline KHeads8 kHeads8(const uint8_t* blk, size_t wStride) {
  const __m256i low6 = _mm256_set1_epi8(0x3F), low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
  __m256i h[4];
  for (int r = 0; r < 4; r++)
    h[r] = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(blk + (r + 4) * wStride),
                               reinterpret_cast<const __m128i*>(blk + r * wStride));
  const __m256i t0 = _mm256_unpacklo_epi32(h[0], h[1]), t1 = _mm256_unpacklo_epi32(h[2], h[3]);
  const __m256i t2 = _mm256_unpackhi_epi32(h[0], h[1]), t3 = _mm256_unpackhi_epi32(h[2], h[3]);
  const __m256i u0 = _mm256_unpackhi_epi64(t0, t1);
  const __m256i u1 = _mm256_unpacklo_epi64(t2, t3), u2 = _mm256_unpackhi_epi64(t2, t3);
  KHeads8 o;
  o.dd = _mm256_unpacklo_epi64(t0, t1);
  o.s03 = _mm256_and_si256(u0, low6);
  o.s47 = _mm256_or_si256(_mm256_and_si256(u2, low4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u0, 6), low2), 4));
  o.m03 = _mm256_and_si256(u1, low6);
  o.m47 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), low4),
                          _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u1, 6), low2), 4));
  return o;
}

// ---- Q4_K, m = 1: eight weight rows at a time, one f32 lane per row ----
// tileQK45<false, 1> spends per super-block a scalar unpack of the 12 scale bytes (stored and
// reloaded as a vector), two horizontal int32 sums and two scalar FMAs on one row. Here 8
// consecutive weight rows share the activation loads and the per-super-block work is done for
// all 8 at once: the rows' 16-byte block heads (d, dmin, 12 scale bytes) are transposed so lane
// r = row r, the 6-bit scales and mins unpacked with the same bit moves as kScales in 8 lanes,
// the scales spread to dwords (sc, sc) that vpdpwssd takes as a broadcast memory operand, the
// mins term done as 4 vpdpwssd for all 8 rows, and the 8 rows' sumi lane vectors reduced by one
// transpose-add. Integer sums are exact, so each lane holds row r's sumi and mins as
// tileQK45 computes them, and the 8-lane FMAs do its f32 steps in super-block order:
// acc = fma(float(sumi), d_w * d_x, acc), accMin = fma(float(mins), dmin_w * d_x, accMin),
// out = acc - accMin: bitwise the same as tileQK45<false, 1> (and llama.cpp, matmul.h).
// Measured (1 thread, process CPU time, shared machine (load ~1-2 from outside): medians over
// runs of scripts/bench-matmul.js --threads 1 --types q4_k --cpu --seconds 2, each the best of
// ~5 ms trials; L2: n = 512, k = 2048 repeated):
//   from DRAM: tileQK45<false, 1> 15.3-16.0 GB/s (median 15.4); this kernel 21.3 with one
//   dpwssd chain per row, 22.1 with two, ~23.8 with kQ4KPfLines = 21 (runs 22.4-24.4).
//   weights in L2: tileQK45 16.4 (compute-bound), this kernel 24.8 (one chain) -> 25-27 (two).
//   bench-matmul.js --token --types q4_k (whole tinyllama pass, m = 1, 3 runs each): tileQK45
//   38.8-50.0 ms / 11.6-15.0 GB/s (median 12.0), this kernel 29.2-32.0 ms / 18.2-19.9 (18.8).
//   (Tried: the scale as a vpdpwssd {1to8} memory operand via inline asm, L2 +3%, DRAM within
//   noise: not kept.)
// Cache lines of the next 8 rows prefetched per super-block: they hold 18 lines per super-block;
// 21 runs ~1/6 ahead (into the group after, for the last sixth), measured ~23.8 vs ~22.9 GB/s
// for 18 from DRAM (24: unclear, 27: 20-22; T0 instead of T1 hint: 11-14; none: 10.9).
constexpr int kQ4KPfLines = 21;
void gemv8Q4_K(const uint8_t* w, size_t wStride, const Act& a, int64_t k, float* out, const uint8_t* next) {
  const __m256i mask = _mm256_set1_epi8(0x0F);
  // d | dmin per dword -> [d r0..3, dmin r0..3] per 128-bit half
  const __m256i pickD = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,  //
                                         0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  __m256 acc = _mm256_setzero_ps(), accMin = _mm256_setzero_ps();  // lane r = weight row r
  const int64_t nb = k / QK_K;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = w + static_cast<size_t>(b) * sizeof(BlockQ4K);
    // The next 8 rows into L2 while this group is computed, as gemv8Q4_0 (see kQ4KPfLines).
    const char* pf = reinterpret_cast<const char*>(next) + b * (64 * kQ4KPfLines);
    for (int l = 0; l < kQ4KPfLines; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);

    // Heads of rows r and r + 4 in the two halves (see kHeads8): lane r = row r.
    const KHeads8 hd = kHeads8(blk, wStride);
    const __m256i dd = hd.dd, s03 = hd.s03, s47 = hd.s47, m03 = hd.m03, m47 = hd.m47;
    // scl[j][r]: dword with both int16 halves = scale j of row r (a vpdpwssd broadcast operand).
    // (pshufb indexes within a 128-bit half: byte j of dword p is byte 4p + j.)
    const __m256i pos = _mm256_setr_epi32(0, 0x00040004, 0x00080008, 0x000C000C, 0, 0x00040004, 0x00080008, 0x000C000C);
    alignas(32) int32_t scl[8][8];
    for (int j = 0; j < 4; j++) {
      const __m256i pick = _mm256_add_epi32(pos, _mm256_set1_epi32(j | (0x80 << 8) | (j << 16) | (0x80 << 24)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(scl[j]), _mm256_shuffle_epi8(s03, pick));
      _mm256_store_si256(reinterpret_cast<__m256i*>(scl[j + 4]), _mm256_shuffle_epi8(s47, pick));
    }
    // mins of all 8 rows: sum_j m[j] * (bsums[2j] + bsums[2j + 1]); the pair sums fit int16
    // (|.| <= 2 * 16 * 127), hadd gives [bs0 bs1 bs2 bs3 ..| bs4 bs5 bs6 bs7 ..].
    const __m256i bsv = loadu(a.sums16() + b * 16);
    const __m256i bs = _mm256_hadd_epi16(bsv, bsv);
    const __m256i bs01 = _mm256_permutevar8x32_epi32(bs, _mm256_set1_epi32(0));
    const __m256i bs23 = _mm256_permutevar8x32_epi32(bs, _mm256_set1_epi32(1));
    const __m256i bs45 = _mm256_permutevar8x32_epi32(bs, _mm256_set1_epi32(4));
    const __m256i bs67 = _mm256_permutevar8x32_epi32(bs, _mm256_set1_epi32(5));
    // mins bytes j, j + 1 of each lane zero-extended to two int16
    const __m256i pick01 = _mm256_add_epi32(pos, _mm256_set1_epi32(0 | (0x80 << 8) | (1 << 16) | (0x80 << 24)));
    const __m256i pick23 = _mm256_add_epi32(pos, _mm256_set1_epi32(2 | (0x80 << 8) | (3 << 16) | (0x80 << 24)));
    __m256i mins = _mm256_madd_epi16(_mm256_shuffle_epi8(m03, pick01), bs01);
    mins = dpwssd(mins, _mm256_shuffle_epi8(m03, pick23), bs23);
    mins = dpwssd(mins, _mm256_shuffle_epi8(m47, pick01), bs45);
    mins = dpwssd(mins, _mm256_shuffle_epi8(m47, pick23), bs67);

    const int8_t* x = a.qs() + b * QK_K;
    __m256i xv[8];
    for (int j = 0; j < 8; j++) xv[j] = loadu(x + 32 * j);
    __m256i s[8];  // row r: 8 int32 lanes summing to its exact sumi
    for (int r = 0; r < 8; r++) {
      const uint8_t* qs = blk + r * wStride + offsetof(BlockQ4K, qs);
      __m256i sa = _mm256_setzero_si256(), sb = _mm256_setzero_si256();  // two chains (latency)
      for (int c = 0; c < 4; c++) {
        const __m256i raw = loadu(qs + 32 * c);
        const __m256i lo = _mm256_and_si256(raw, mask), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
        sa = dpwssd(sa, _mm256_maddubs_epi16(lo, xv[2 * c]), _mm256_set1_epi32(scl[2 * c][r]));
        sb = dpwssd(sb, _mm256_maddubs_epi16(hi, xv[2 * c + 1]), _mm256_set1_epi32(scl[2 * c + 1][r]));
      }
      s[r] = _mm256_add_epi32(sa, sb);
    }
    const __m256 sumi = _mm256_cvtepi32_ps(hsum8Epi32(s));
    // f16 d, dmin of the 8 rows -> f32 lanes
    const __m256i dm = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(dd, pickD), 0xD8);
    const __m256 dw = _mm256_cvtph_ps(_mm256_castsi256_si128(dm));
    const __m256 dminw = _mm256_cvtph_ps(_mm256_extracti128_si256(dm, 1));
    const __m256 dx = _mm256_set1_ps(a.d()[b]);
    acc = _mm256_fmadd_ps(sumi, _mm256_mul_ps(dw, dx), acc);
    accMin = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_mul_ps(dminw, dx), accMin);
  }
  _mm256_storeu_ps(out, _mm256_sub_ps(acc, accMin));
}

// ---- Q5_K, m = 1: eight weight rows at a time ----
// Q5_K's f32 steps are llama.cpp's (see tileQK45): per row 8 f32 lanes and a scalar summs
// chain. Here each row keeps those steps exactly: its 8 int32 lanes are the tile's (exact
// integer sums, the scale applied as a (sc, sc) dword as in gemv8Q4_K), its lanes get the same
// fma per super-block and the same hsum at the end; the summs chains of the 8 rows run in the 8
// lanes of one vector (lane r = row r, the same fma(-(d_x * dmin_w), float(mins), summs) per
// lane, mins the same exact integer). So results are bitwise tileQK45<true, 1>'s. Shared by the
// 8 rows: the activation loads, the head transpose + scale/min unpack and mins of gemv8Q4_K
// (Q5_K's 16-byte head has Q4_K's layout), and an L2 prefetch of the next 8 rows.
// Measured (1 thread, CPU time, shared machine, 3 runs each, medians):
//   bench-matmul.js --threads 1 --types q5_k --cpu --seconds 2 (DRAM): tileQK45<true, 1>
//   17.1 GB/s (16.6-17.4); 8 rows each with the tile's own scale unpack and scalar chain 18.2
//   (13.3 with the row loop unrolled); this kernel 21.6 (21.5-22.8).
//   bench-matmul.js --token --threads 1 --types q5_k (whole tinyllama pass, m = 1):
//   42.3 ms / 16.8 GB/s -> 34.5 ms / 20.6 GB/s.
constexpr int kQ5KPfLines = 25;  // the next 8 rows hold 22 lines per super-block
void gemv8Q5_K(const uint8_t* w, size_t wStride, const Act& a, int64_t k, float* out, const uint8_t* next) {
  const __m256i mask = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  const __m256i pickD = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,  //
                                         0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  const __m256i pos = _mm256_setr_epi32(0, 0x00040004, 0x00080008, 0x000C000C, 0, 0x00040004, 0x00080008, 0x000C000C);
  __m256 accv[8];                       // row r: its 8 f32 lanes
  __m256 summs = _mm256_setzero_ps();   // lane r: row r's scalar summs chain
  for (int r = 0; r < 8; r++) accv[r] = _mm256_setzero_ps();
  const int64_t nb = k / QK_K;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = w + static_cast<size_t>(b) * sizeof(BlockQ5K);
    const char* pf = reinterpret_cast<const char*>(next) + b * (64 * kQ5KPfLines);
    for (int l = 0; l < kQ5KPfLines; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
    // The 16-byte heads (d, dmin, 12 scale bytes: Q4_K's layout) for the 8 rows: lane r = row r.
    const KHeads8 hd = kHeads8(blk, wStride);
    const __m256i dd = hd.dd, s03 = hd.s03, s47 = hd.s47, m03 = hd.m03, m47 = hd.m47;
    alignas(32) int32_t scl[8][8];  // scl[j][r]: dword (sc, sc) of scale j of row r
    for (int j = 0; j < 4; j++) {
      const __m256i pick = _mm256_add_epi32(pos, _mm256_set1_epi32(j | (0x80 << 8) | (j << 16) | (0x80 << 24)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(scl[j]), _mm256_shuffle_epi8(s03, pick));
      _mm256_store_si256(reinterpret_cast<__m256i*>(scl[j + 4]), _mm256_shuffle_epi8(s47, pick));
    }
    // Exact integer mins of the 8 rows (the value hsumEpi32(madd(bsums, mins16)) gives).
    const __m256i bsv = loadu(a.sums16() + b * 16);
    const __m256i bs = _mm256_hadd_epi16(bsv, bsv);
    const __m256i bs01 = _mm256_permutevar8x32_epi32(bs, _mm256_set1_epi32(0));
    const __m256i bs23 = _mm256_permutevar8x32_epi32(bs, _mm256_set1_epi32(1));
    const __m256i bs45 = _mm256_permutevar8x32_epi32(bs, _mm256_set1_epi32(4));
    const __m256i bs67 = _mm256_permutevar8x32_epi32(bs, _mm256_set1_epi32(5));
    const __m256i pick01 = _mm256_add_epi32(pos, _mm256_set1_epi32(0 | (0x80 << 8) | (1 << 16) | (0x80 << 24)));
    const __m256i pick23 = _mm256_add_epi32(pos, _mm256_set1_epi32(2 | (0x80 << 8) | (3 << 16) | (0x80 << 24)));
    __m256i mins = _mm256_madd_epi16(_mm256_shuffle_epi8(m03, pick01), bs01);
    mins = dpwssd(mins, _mm256_shuffle_epi8(m03, pick23), bs23);
    mins = dpwssd(mins, _mm256_shuffle_epi8(m47, pick01), bs45);
    mins = dpwssd(mins, _mm256_shuffle_epi8(m47, pick23), bs67);
    const __m256i dm = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(dd, pickD), 0xD8);
    const __m256 dw = _mm256_cvtph_ps(_mm256_castsi256_si128(dm));
    const __m256 dminw = _mm256_cvtph_ps(_mm256_extracti128_si256(dm, 1));
    const __m256 dx = _mm256_set1_ps(a.d()[b]);
    // summs = fma(-(d_x * dmin_w), float(mins), summs) per lane: the tile's scalar step.
    summs = _mm256_fmadd_ps(_mm256_xor_ps(_mm256_mul_ps(dx, dminw), _mm256_set1_ps(-0.0f)), _mm256_cvtepi32_ps(mins), summs);
    alignas(32) float dwdx[8];
    _mm256_store_ps(dwdx, _mm256_mul_ps(dw, dx));

    const int8_t* x = a.qs() + b * QK_K;
    __m256i xv[8];
    for (int j = 0; j < 8; j++) xv[j] = loadu(x + 32 * j);
    for (int r = 0; r < 8; r++) {
      const BlockQ5K& q5 = reinterpret_cast<const BlockQ5K*>(w + r * wStride)[b];
      const __m256i hbits = loadu(q5.qh);
      __m256i sa = _mm256_setzero_si256(), sb = _mm256_setzero_si256();
      for (int c = 0; c < 4; c++) {
        const __m256i raw = loadu(q5.qs + 32 * c);
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(raw, mask),
                                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c), one), 4));
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), mask),
                                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c + 1), one), 4));
        sa = dpwssd(sa, _mm256_maddubs_epi16(lo, xv[2 * c]), _mm256_set1_epi32(scl[2 * c][r]));
        sb = dpwssd(sb, _mm256_maddubs_epi16(hi, xv[2 * c + 1]), _mm256_set1_epi32(scl[2 * c + 1][r]));
      }
      accv[r] = _mm256_fmadd_ps(_mm256_set1_ps(dwdx[r]), _mm256_cvtepi32_ps(_mm256_add_epi32(sa, sb)), accv[r]);
    }
  }
  alignas(32) float sm[8];
  _mm256_store_ps(sm, summs);
  for (int r = 0; r < 8; r++) out[r] = hsum(accv[r]) + sm[r];
}

// ---- Q6_K · Q8_K ----
// llama.cpp's ggml_vec_dot_q6_K_q8_K steps (AVX2 path, current form), bit for bit: quants used
// unsigned (0..63) into 8 int32 lanes (lane l = sum over sub-blocks of sc * dot of quants
// 4l..4l+3), the -32 offset taken off per lane with the bsums, lane l losing
// 32 * (sc[2l] * bsums[2l] + sc[2l+1] * bsums[2l+1]) (one madd of the 16 bsums with the 16
// scales); then acc_l = fma(d_w * d_x, float(lane l), acc_l) and one hsum at the end.
// Quants and scales of one Q6_K block. q[4h + g]: elements [128h + 32g, +32), sub-blocks
// 8h + 2g and 8h + 2g + 1, unsigned 0..63; sc16[t]: int16 scale 2t in the low 8 lanes, 2t + 1
// in the high 8 (the two sub-blocks of q[t]); *scAll: the 16 scales as int16.
inline void q6Unpack(const BlockQ6K& blk, __m256i* q, __m256i* sc16, __m256i* scAll) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
  for (int h = 0; h < 2; h++) {
    const __m256i l0 = loadu(blk.ql + 64 * h), l1 = loadu(blk.ql + 64 * h + 32);
    const __m256i hb = loadu(blk.qh + 32 * h);
    q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
    q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
    q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
    q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
  }
  const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales));
  for (int t = 0; t < 8; t++) {
    const __m128i pick = _mm_unpacklo_epi64(_mm_set1_epi8(static_cast<char>(2 * t)), _mm_set1_epi8(static_cast<char>(2 * t + 1)));
    sc16[t] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick));
  }
  *scAll = _mm256_cvtepi8_epi16(sc8);
}

// The 8 exact int32 lanes of one Q6_K block against activation row a, block b.
inline __m256i q6Lanes(const __m256i* q, const __m256i* sc16, __m256i scAll, const Act& a, int64_t b) {
  const int8_t* x = a.qs() + b * QK_K;
  __m256i sa = _mm256_setzero_si256(), sb = _mm256_setzero_si256();  // two chains (latency)
  for (int t = 0; t < 8; t += 2) {
    sa = dpwssd(sa, _mm256_maddubs_epi16(q[t], loadu(x + 32 * t)), sc16[t]);
    sb = dpwssd(sb, _mm256_maddubs_epi16(q[t + 1], loadu(x + 32 * t + 32)), sc16[t + 1]);
  }
  const __m256i sumi = _mm256_add_epi32(sa, sb);
  const __m256i corr = _mm256_madd_epi16(loadu(a.sums16() + b * 16), scAll);
  return _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 5));
}

template <int NX>
void tileQ6_K(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  const BlockQ6K* wb = reinterpret_cast<const BlockQ6K*>(w);
  __m256 acc[NX];
  for (int i = 0; i < NX; i++) acc[i] = _mm256_setzero_ps();
  const int64_t nb = k / QK_K;
  for (int64_t b = 0; b < nb; b++) {
    __m256i q[8], sc16[8], scAll;
    q6Unpack(wb[b], q, sc16, &scAll);
    const float dw = h2f(wb[b].d);
    for (int i = 0; i < NX; i++) {
      const __m256i lanes = q6Lanes(q, sc16, scAll, a[i], b);
      acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[i].d()[b]), _mm256_cvtepi32_ps(lanes), acc[i]);
    }
  }
  for (int i = 0; i < NX; i++) out[i * ldo] = hsum(acc[i]);
}

// Q6_K, m = 1, 8 weight rows at a time: each row keeps its own 8 f32 lanes and the steps of
// tileQ6_K<1> (same lanes, same fma per block, same hsum), so results are bitwise equal; the 8
// rows share the activation loads and the next 8 rows are prefetched into L2 (as gemv8Q4_0).
// Measured (1 thread, process CPU time, shared machine, alternating builds):
//   bench-matmul.js --types q6_k (DRAM, 4 runs x 2 each, medians): tileQ6_K<1> 18.5 GB/s; this
//   kernel with the row loop not unrolled 16 (L2: 21 vs the tile's 24), unrolled 19.3 with 30
//   prefetch lines, 21.4 with 27 (runs 18.9-22.4);
//   bench-matmul.js --token --types q6_k (whole tinyllama pass, m = 1, 3 runs each):
//   tileQ6_K<1> 49.0 ms / 17.3 GB/s, this kernel 41.0 ms / 20.7 GB/s.
//   (Software prefetch of the next row for the one-row tile instead: 16-17 GB/s, worse.)
constexpr int kQ6KPfLines = 27;  // the next 8 rows hold 26.25 lines per super-block
void gemv8Q6_K(const uint8_t* w, size_t wStride, const Act& a, int64_t k, float* out, const uint8_t* next) {
  __m256 acc[8];
  for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
  const int64_t nb = k / QK_K;
  for (int64_t b = 0; b < nb; b++) {
    const char* pf = reinterpret_cast<const char*>(next) + b * (64 * kQ6KPfLines);
    for (int l = 0; l < kQ6KPfLines; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
    const float dx = a.d()[b];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
      const BlockQ6K& blk = reinterpret_cast<const BlockQ6K*>(w + r * wStride)[b];
      __m256i q[8], sc16[8], scAll;
      q6Unpack(blk, q, sc16, &scAll);
      const __m256i lanes = q6Lanes(q, sc16, scAll, a, b);
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(blk.d) * dx), _mm256_cvtepi32_ps(lanes), acc[r]);
    }
  }
  for (int r = 0; r < 8; r++) out[r] = hsum(acc[r]);
}


template <int NX>
void tileQ4_0(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  tileNib<NibQ4_0, NX>(w, a, k, out, ldo);
}

template <int NX>
void tileF32(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  tileFloat<0, NX>(w, a, k, out, ldo);
}
template <int NX>
void tileF16(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  tileFloat<1, NX>(w, a, k, out, ldo);
}
template <int NX>
void tileBF16(const uint8_t* w, const Act* a, int64_t k, float* out, int64_t ldo) {
  tileFloat<2, NX>(w, a, k, out, ldo);
}

// F32 rows whose length is not a multiple of 16: llama.cpp's CPU backend leaves its tinyBLAS
// kernel (the 16-lane steps tileFloat follows) for ggml_vec_dot_f32, and so do we, for every m
// (row invariance holds: one dot per (weight row, activation row)). Its AVX-512 steps, emulated
// with 256-bit halves: four 16-lane accumulators over each 64 elements (acc_j += x * y for
// elements 16j..16j+15), then acc0 + acc2, acc1 + acc3, their sum, _mm512_reduce_add_ps's tree
// (the same as hsum of the two halves' sum), and the leftover elements one by one, s += x * y.
// Measured bitwise equal to the libggml node-llama-cpp ships
// (matmul-llamacpp.test.ts); a tiny F32 file with 168-wide FFN rows differed by 3e-4 before.
inline float dotF32Ggml(const float* x, const float* y, int64_t n) {
  const int64_t np = n & ~int64_t(63);
  __m256 lo[4], hi[4];
  for (int j = 0; j < 4; j++) lo[j] = hi[j] = _mm256_setzero_ps();
  for (int64_t i = 0; i < np; i += 64) {
    for (int j = 0; j < 4; j++) {
      lo[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16 * j), _mm256_loadu_ps(y + i + 16 * j), lo[j]);
      hi[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16 * j + 8), _mm256_loadu_ps(y + i + 16 * j + 8), hi[j]);
    }
  }
  lo[0] = _mm256_add_ps(lo[0], lo[2]);
  hi[0] = _mm256_add_ps(hi[0], hi[2]);
  lo[1] = _mm256_add_ps(lo[1], lo[3]);
  hi[1] = _mm256_add_ps(hi[1], hi[3]);
  lo[0] = _mm256_add_ps(lo[0], lo[1]);
  hi[0] = _mm256_add_ps(hi[0], hi[1]);
  float s = hsum(_mm256_add_ps(lo[0], hi[0]));
  // Unfused (-std=c++17 keeps GCC at -ffp-contract=off), as libggml: measured, an fma differs.
  for (int64_t i = np; i < n; i++) s += x[i] * y[i];
  return s;
}

void f32RowsGgml(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& rows, int64_t nx, int64_t k, float* out,
                 int64_t ldo) {
  for (int64_t i = 0; i < nx; i++) {
    const Act a{rows.base + static_cast<size_t>(i) * rows.stride, &rows.layout};
    for (int64_t r = 0; r < nw; r++)
      out[i * ldo + r] = dotF32Ggml(reinterpret_cast<const float*>(w + static_cast<size_t>(r) * wStride), a.f(), k);
  }
}

// Float weights: one weight row per tile for m = 1 (measured 20 vs 12 GB/s for f16 from DRAM),
// pairs of rows for m > 1 (f32 / f16 / bf16 at m = 128: 41 / 57 / 60 -> 59 / 69 / 70 GFLOP/s).
template <int Kind>
void floatKernel(const uint8_t* w, size_t wStride, int64_t nw, const ActRows& rows, int64_t nx, int64_t k, float* out,
                 int64_t ldo) {
  if (Kind == 0 && k % 16 != 0) {
    f32RowsGgml(w, wStride, nw, rows, nx, k, out, ldo);
  } else if (nx == 1) {
    const Act a[1] = {{rows.base, &rows.layout}};
    for (int64_t r = 0; r < nw; r++) tileFloat<Kind, 1>(w + static_cast<size_t>(r) * wStride, a, k, out + r, ldo);
  } else {
    runFloat<Kind>(w, wStride, nw, rows, nx, k, out, ldo);
  }
}


}  // namespace

MatmulKernel simdKernel(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return floatKernel<0>;
    case GgmlType::F16: return floatKernel<1>;
    case GgmlType::BF16: return floatKernel<2>;
    case GgmlType::Q4_0: return FLEXINFER_GEMV8(gemv8Nib<NibQ4_0>, tileQ4_0);
    case GgmlType::Q8_0: return FLEXINFER_TILES(tileQ8_0);
    case GgmlType::Q4_K: return FLEXINFER_GEMV8(gemv8Q4_K, tileQ4_K);
    case GgmlType::Q5_K: return FLEXINFER_GEMV8(gemv8Q5_K, tileQ5_K);
    case GgmlType::Q6_K: return FLEXINFER_GEMV8(gemv8Q6_K, tileQ6_K);
    default: return nullptr;
  }
}

const char* simdPathName() { return kPathName; }

#else  // no AVX2: scalar only

MatmulKernel simdKernel(GgmlType) { return nullptr; }
const char* simdPathName() { return "none"; }

#endif

}  // namespace flexinfer
