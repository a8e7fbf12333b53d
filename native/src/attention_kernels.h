// The per-head attention kernels shared by the dense (ops_attention.cc: one sequence's
// contiguous K/V, the vTensor and contiguous layouts) and the paged (ops_attention_paged.cc:
// K/V in 16-token blocks reached through a block table, vLLM's PagedAttention) entry points.
//
// A kernel never sees how K/V is stored: it asks a row accessor for key j's headDim f16
// values (`rows.row(j)`). Both layouts therefore run the same instructions in the same order
// for every score, every softmax sum and every output, so their results are bitwise equal;
// only the address of each row differs (dense: base + j * kvDim; paged: the block of j from
// the table, then the row inside it).
//
// Numerics (see the top of ops_attention.cc for why): the query is rounded to f16, each score
// is an f32 dot of f16 values, softmax takes exp(s - max) with the sum in double per 16 keys,
// probabilities are rounded to f16, and each output is a 16-lane fma sum over keys (lane = key
// mod 16) reduced at the end. The AVX-512 grouped path is bitwise llama.cpp's prompt-batch
// attention; the generic and scalar paths are not.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "ops_common.h"
#include "threadpool.h"

namespace flexinfer {
namespace ops {

struct AttnShape {
  int64_t numHeads, numKvHeads, headDim, kvDim, qDim;
  float scale;
  // Attention-logit soft-capping (gemma2): s = tanhf(s * (1/cap)) * cap before the scale; 0 = off.
  float softcap = 0.0f;
  // Sliding window (gemma local layers): a query at position p sees keys [p - window + 1, p]; 0 = all.
  int64_t window = 0;
};

// Soft-capping of one raw score as llama.cpp's three ops (scale by 1/cap, tanh, scale by cap).
static inline float softcapScore(float s, const AttnShape& a) {
  return a.softcap > 0 ? std::tanh(s * (1.0f / a.softcap)) * a.softcap : s;
}

// Per-thread scratch: f16-rounded queries, scores (one row of scoresStride per head of the
// group), output accumulators, one block of K/V rows as f32.
struct AttnScratch {
  std::vector<float> q, scores, acc, block, accT;
  int64_t scoresStride = 0;
};

// Up to this many query heads of one kv head are processed together (one work item): enough
// to amortize the K/V conversion, while leaving items for every thread at decode (m = 1).
static constexpr int64_t kMaxGroupHeads = 4;
// When a call has work items enough for every thread anyway (a batch of sequences, a prompt),
// up to this many: each K/V row is then converted once for up to 8 query heads.
static constexpr int64_t kMaxGroupHeadsBusy = 8;

// Keys per block of the grouped kernel: a block of K (then V) rows is converted to f32 once
// and reused by every query head of the group (block = 64 rows * 128 dims * 4 B = 32 KiB max).
static constexpr int64_t kKeyBlockRows = 64;

// Rows of one kv head of one sequence, contiguous layouts: key j at base + j * stride.
struct DenseRows {
  const uint16_t* base;  // K or V + kvHead * headDim
  int64_t stride;        // kvDim
  const uint16_t* row(int64_t j) const { return base + j * stride; }
  // Strided rows of one tensor: the hardware prefetcher follows them.
  static constexpr bool kPrefetch = true;
};

// Tokens per block of the paged layout (vLLM's default block size).
static constexpr int64_t kPagedBlockTokens = 16;

// Rows of one kv head of one sequence, paged layout: the pool holds blocks of
// [numKvHeads, 16, headDim] f16 (head-major inside a block, as vLLM's CPU cache), so one kv
// head's 16 rows of a block are one contiguous run; key j lives in block table[j / 16].
struct PagedRows {
  const uint16_t* pool;   // K or V pool + kvHead * 16 * headDim
  const int32_t* table;   // the sequence's block ids
  int64_t blockElems;     // numKvHeads * 16 * headDim
  int64_t headDim;
  const uint16_t* row(int64_t j) const {
    return pool + static_cast<int64_t>(table[j >> 4]) * blockElems + (j & (kPagedBlockTokens - 1)) * headDim;
  }
  // Every block is a new stream somewhere else in the pool: the kernel prefetches the rows of
  // the blocks it reads next (the table says where they are).
  static constexpr bool kPrefetch = true;
};

#if FLEXINFER_OPS_AVX512
// Prefetches key j's row (headDim f16) into L2 when the accessor asks for it.
template <class Rows>
static inline void prefetchRow(const Rows& rows, int64_t j, int64_t headDim) {
  if constexpr (Rows::kPrefetch) {
    const char* p = reinterpret_cast<const char*>(rows.row(j));
    for (int64_t off = 0; off < headDim * 2; off += 64) _mm_prefetch(p + off, _MM_HINT_T1);
  }
}
#endif

// ---- scalar path ----

template <class Rows>
static void attendScalar(float* out, const float* q, const Rows& k, const Rows& v, int64_t start, int64_t n,
                         const AttnShape& s, AttnScratch& t) {
  const int64_t hd = s.headDim;
  for (int64_t d = 0; d < hd; d++) t.q[d] = f16ToF32(f32ToF16(q[d]));
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t j = start; j < n; j++) {
    const uint16_t* kr = k.row(j);
    float dot = 0.0f;
    for (int64_t d = 0; d < hd; d++) dot += f16ToF32(kr[d]) * t.q[d];
    const float sc = softcapScore(dot, s) * s.scale;
    t.scores[j] = sc;
    max = std::fmax(max, sc);
  }
  double sum = 0.0;
  for (int64_t j = start; j < n; j++) {
    const float e = std::exp(t.scores[j] - max);
    t.scores[j] = e;
    sum += static_cast<double>(e);
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t d = 0; d < hd; d++) t.acc[d] = 0.0f;
  for (int64_t j = start; j < n; j++) {
    const float p = f16ToF32(f32ToF16(t.scores[j] * inv));
    const uint16_t* vr = v.row(j);
    for (int64_t d = 0; d < hd; d++) t.acc[d] += p * f16ToF32(vr[d]);
  }
  for (int64_t d = 0; d < hd; d++) out[d] = t.acc[d];
}

// ---- AVX-512 path ----

#if FLEXINFER_OPS_AVX512
static inline __m512 loadF16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
static inline __m512 loadF16Mask(const uint16_t* p, __mmask16 mask) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p));
}

// In place over n raw scores: * scale, softmax (max-subtracted, double sum) and rounding
// of the probabilities to f16 (ggml converts kq to V's vec_dot_type before kqv).
static inline void probsF16Avx512(float* scores, int64_t n, float scale, float softcap) {
  if (softcap > 0) {
    // (-inf keys of a window stay -inf: tanh(-inf) * cap = -cap would unmask them)
    const float inv = 1.0f / softcap;
    for (int64_t j = 0; j < n; j++)
      if (scores[j] != -std::numeric_limits<float>::infinity()) scores[j] = std::tanh(scores[j] * inv) * softcap;
  }
  __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512 vscale = _mm512_set1_ps(scale);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 sc = _mm512_mul_ps(_mm512_loadu_ps(scores + j), vscale);
    _mm512_storeu_ps(scores + j, sc);
    vmax = _mm512_max_ps(vmax, sc);
  }
  float max = _mm512_reduce_max_ps(vmax);
  for (; j < n; j++) {
    scores[j] *= scale;
    max = std::fmax(max, scores[j]);
  }
  double sum = 0.0;
  const __m512 mv = _mm512_set1_ps(max);
  j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 e = expPs(_mm512_sub_ps(_mm512_loadu_ps(scores + j), mv));
    _mm512_storeu_ps(scores + j, e);
    sum += static_cast<double>(_mm512_reduce_add_ps(e));
  }
  if (j < n) {
    // ggml's row is padded with masked (-inf) keys to a multiple of 16: exp gives 0 there.
    const __mmask16 mk = static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 x = _mm512_mask_loadu_ps(_mm512_set1_ps(-std::numeric_limits<float>::infinity()), mk, scores + j);
    const __m512 e = expPs(_mm512_sub_ps(x, mv));
    _mm512_mask_storeu_ps(scores + j, mk, e);
    sum += static_cast<double>(_mm512_reduce_add_ps(e));
  }
  const float invs = static_cast<float>(1.0 / sum);
  const __m512 inv = _mm512_set1_ps(invs);
  j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 p = _mm512_mul_ps(_mm512_loadu_ps(scores + j), inv);
    _mm512_storeu_ps(scores + j, _mm512_cvtph_ps(_mm512_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
  }
  for (; j < n; j++) scores[j] = f16ToF32(f32ToF16(scores[j] * invs));
}

// gs query heads (consecutive in q and out) sharing one kv head; headDim = 16 * NB.
// K/V rows are converted to f32 a block at a time and used by all gs heads, so each f16
// value is converted once per group instead of once per head.
// Measured (tinyllama layer: 32 heads, 4 kv heads, headDim 64, 2048 keys, 1 thread, busy
// machine): one head at a time with one reduce_add per key 0.72 CPU-ms per decode row;
// four keys per reduction + paired V accumulators ~0.6; grouped by kv head (this) ~0.45-0.5.
// Keys before `start` (a sliding window's) are never read (their memory may be unmapped, their
// paged blocks given back): from j0 = start rounded down to 16 they enter as -inf scores and
// zero rows, so every 16-key sum runs over the same lanes as llama.cpp's masked full row;
// blocks before j0 add exact zeros there and are skipped here.
template <int NB, class Rows>
static void attendGroupAvx512(float* out, const float* q, int64_t gs, const Rows& k, const Rows& v, int64_t start,
                              int64_t n, const AttnShape& s, AttnScratch& t) {
  const int64_t j0 = start / 16 * 16;
  constexpr int64_t HD = 16 * NB;
  const int64_t stride = t.scoresStride;
  float* qr = t.q.data();       // [gs, HD] query rounded to f16
  float* blk = t.block.data();  // [kKeyBlockRows, HD] f32 copy of K or V rows
  float* acc = t.acc.data();    // [gs, HD]
  for (int64_t g = 0; g < gs; g++)
    for (int b = 0; b < NB; b++)
      _mm512_storeu_ps(qr + g * HD + 16 * b,
                       _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(q + g * HD + 16 * b),
                                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
  // scores = q . k for every head and key
  for (int64_t jb = j0; jb < n; jb += kKeyBlockRows) {
    const int64_t nb = std::min(kKeyBlockRows, n - jb);
    for (int64_t r = 0; r < nb; r++) {
      if (jb + r < start) {
        for (int b = 0; b < NB; b++) _mm512_storeu_ps(blk + r * HD + 16 * b, _mm512_setzero_ps());
        continue;
      }
      const uint16_t* kr = k.row(jb + r);
      for (int b = 0; b < NB; b++) _mm512_storeu_ps(blk + r * HD + 16 * b, loadF16(kr + 16 * b));
      if (jb + kKeyBlockRows + r < n) prefetchRow(k, jb + kKeyBlockRows + r, HD);
    }
    for (int64_t g = 0; g < gs; g++) {
      __m512 qv[NB];
      for (int b = 0; b < NB; b++) qv[b] = _mm512_loadu_ps(qr + g * HD + 16 * b);
      float* sc = t.scores.data() + g * stride + jb;
      int64_t r = 0;
      // Four keys per step; the shared reduction is _mm512_reduce_add_ps's tree for each key
      // (lanes i + i^8, then ^4, ^2, ^1), as ggml reduces every score: bitwise the same.
      for (; r + 4 <= nb; r += 4) {
        __m512 a[4];
        for (int x = 0; x < 4; x++) {
          const float* kr = blk + (r + x) * HD;
          a[x] = _mm512_mul_ps(_mm512_loadu_ps(kr), qv[0]);
          for (int b = 1; b < NB; b++) a[x] = _mm512_fmadd_ps(_mm512_loadu_ps(kr + 16 * b), qv[b], a[x]);
        }
        // [a0 (i + i^8) | a1 (i + i^8)] and the same for a2, a3
        const __m512 u01 = _mm512_add_ps(_mm512_shuffle_f32x4(a[0], a[1], 0x44), _mm512_shuffle_f32x4(a[0], a[1], 0xEE));
        const __m512 u23 = _mm512_add_ps(_mm512_shuffle_f32x4(a[2], a[3], 0x44), _mm512_shuffle_f32x4(a[2], a[3], 0xEE));
        // one 128-bit lane per key: + i^4
        __m512 w = _mm512_add_ps(_mm512_shuffle_f32x4(u01, u23, 0x88), _mm512_shuffle_f32x4(u01, u23, 0xDD));
        w = _mm512_add_ps(w, _mm512_permute_ps(w, _MM_SHUFFLE(1, 0, 3, 2)));  // + i^2
        w = _mm512_add_ps(w, _mm512_permute_ps(w, _MM_SHUFFLE(2, 3, 0, 1)));  // + i^1
        const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        _mm_storeu_ps(sc + r, _mm512_castps512_ps128(_mm512_permutexvar_ps(pick, w)));
      }
      for (; r < nb; r++) {
        const float* kr = blk + r * HD;
        __m512 a = _mm512_mul_ps(_mm512_loadu_ps(kr), qv[0]);
        for (int b = 1; b < NB; b++) a = _mm512_fmadd_ps(_mm512_loadu_ps(kr + 16 * b), qv[b], a);
        sc[r] = _mm512_reduce_add_ps(a);
      }
      for (r = 0; jb + r < start && r < nb; r++) sc[r] = -std::numeric_limits<float>::infinity();
    }
  }
  for (int64_t g = 0; g < gs; g++)
    probsF16Avx512(t.scores.data() + g * stride + j0, n - j0, s.scale, s.softcap);
  // out[d] = sum_j p_j * v_j[d] with llama.cpp's steps (tinyBLAS f16 GEMM over V^T: per output,
  // 16 f32 lanes, lane c taking the keys j = c (mod 16) in order by fma, then _mm512_reduce_add_ps).
  // Here lane c of that GEMM is accumulator row c (a vector over d), so V is used row by row
  // as stored, and the final reduce_add tree (c + c^8, then ^4, ^2, ^1) runs across the rows.
  float* accT = t.accT.data();  // [gs, 16, HD]
  for (int64_t i = 0; i < gs * 16 * HD; i++) accT[i] = 0.0f;
  for (int64_t jb = j0; jb < n; jb += kKeyBlockRows) {
    const int64_t nb = std::min(kKeyBlockRows, n - jb);  // jb is a multiple of 16
    for (int64_t r = 0; r < nb; r++) {
      if (jb + r < start) {  // probability 0: a zero row adds exact zeros
        for (int b = 0; b < NB; b++) _mm512_storeu_ps(blk + r * HD + 16 * b, _mm512_setzero_ps());
        continue;
      }
      const uint16_t* vr = v.row(jb + r);
      for (int b = 0; b < NB; b++) _mm512_storeu_ps(blk + r * HD + 16 * b, loadF16(vr + 16 * b));
      if (jb + kKeyBlockRows + r < n) prefetchRow(v, jb + kKeyBlockRows + r, HD);
    }
    for (int64_t g = 0; g < gs; g++) {
      const float* p = t.scores.data() + g * stride + jb;
      float* ag = accT + g * 16 * HD;
      // 16 dims at a time, the 16 accumulator rows in registers across the block's keys
      for (int b = 0; b < NB; b++) {
        __m512 c[16];
        for (int x = 0; x < 16; x++) c[x] = _mm512_loadu_ps(ag + x * HD + 16 * b);
        int64_t r = 0;
        for (; r + 16 <= nb; r += 16)
          for (int x = 0; x < 16; x++)
            c[x] = _mm512_fmadd_ps(_mm512_loadu_ps(blk + (r + x) * HD + 16 * b), _mm512_set1_ps(p[r + x]), c[x]);
        for (int x = 0; r + x < nb; x++)
          c[x] = _mm512_fmadd_ps(_mm512_loadu_ps(blk + (r + x) * HD + 16 * b), _mm512_set1_ps(p[r + x]), c[x]);
        for (int x = 0; x < 16; x++) _mm512_storeu_ps(ag + x * HD + 16 * b, c[x]);
      }
    }
  }
  for (int64_t g = 0; g < gs; g++) {
    float* ag = accT + g * 16 * HD;
    for (int b = 0; b < NB; b++) {
      __m512 c[16];
      for (int x = 0; x < 16; x++) c[x] = _mm512_loadu_ps(ag + x * HD + 16 * b);
      for (int x = 0; x < 8; x++) c[x] = _mm512_add_ps(c[x], c[x + 8]);
      for (int x = 0; x < 4; x++) c[x] = _mm512_add_ps(c[x], c[x + 4]);
      for (int x = 0; x < 2; x++) c[x] = _mm512_add_ps(c[x], c[x + 2]);
      _mm512_storeu_ps(acc + g * HD + 16 * b, _mm512_add_ps(c[0], c[1]));
    }
  }
  for (int64_t i = 0; i < gs * HD; i++) out[i] = acc[i];
}

// Any headDim: masked loads for the tail of each row.
template <class Rows>
static void attendAvx512Generic(float* out, const float* q, const Rows& k, const Rows& v, int64_t start,
                                int64_t n, const AttnShape& s, AttnScratch& t) {
  const int64_t hd = s.headDim;
  const int64_t full = hd / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (hd - full)) - 1);
  for (int64_t d = 0; d < hd; d++) t.q[d] = f16ToF32(f32ToF16(q[d]));
  const float* qr = t.q.data();
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t j = start; j < n; j++) {
    const uint16_t* kr = k.row(j);
    __m512 acc = _mm512_setzero_ps();
    int64_t d = 0;
    for (; d < full; d += 16) acc = _mm512_fmadd_ps(loadF16(kr + d), _mm512_loadu_ps(qr + d), acc);
    if (tail) acc = _mm512_fmadd_ps(loadF16Mask(kr + d, tail), _mm512_maskz_loadu_ps(tail, qr + d), acc);
    const float sc = softcapScore(_mm512_reduce_add_ps(acc), s) * s.scale;
    t.scores[j] = sc;
    max = std::fmax(max, sc);
  }
  double sum = 0.0;
  for (int64_t j = start; j < n; j++) {
    const float e = std::exp(t.scores[j] - max);
    t.scores[j] = e;
    sum += static_cast<double>(e);
  }
  const float inv = static_cast<float>(1.0 / sum);
  float* acc = t.acc.data();
  for (int64_t d = 0; d < hd; d++) acc[d] = 0.0f;
  for (int64_t j = start; j < n; j++) {
    const __m512 p = _mm512_set1_ps(f16ToF32(f32ToF16(t.scores[j] * inv)));
    const uint16_t* vr = v.row(j);
    int64_t d = 0;
    for (; d < full; d += 16)
      _mm512_storeu_ps(acc + d, _mm512_fmadd_ps(p, loadF16(vr + d), _mm512_loadu_ps(acc + d)));
    if (tail)
      _mm512_mask_storeu_ps(acc + d, tail,
                            _mm512_fmadd_ps(p, loadF16Mask(vr + d, tail), _mm512_maskz_loadu_ps(tail, acc + d)));
  }
  for (int64_t d = 0; d < hd; d++) out[d] = acc[d];
}
#endif

// Attends gs consecutive query heads that share one kv head (whose rows k and v address),
// over keys [start, n).
template <class Rows>
using AttendGroupFn = void (*)(float*, const float*, int64_t, const Rows&, const Rows&, int64_t, int64_t,
                               const AttnShape&, AttnScratch&);

template <class Rows, void (*One)(float*, const float*, const Rows&, const Rows&, int64_t, int64_t, const AttnShape&,
                                  AttnScratch&)>
static void attendEachHead(float* out, const float* q, int64_t gs, const Rows& k, const Rows& v, int64_t start,
                           int64_t n, const AttnShape& s, AttnScratch& t) {
  for (int64_t g = 0; g < gs; g++) One(out + g * s.headDim, q + g * s.headDim, k, v, start, n, s, t);
}

template <class Rows>
static AttendGroupFn<Rows> pickAttend(int64_t headDim, bool scalar) {
  if (scalar) return attendEachHead<Rows, attendScalar<Rows>>;
#if FLEXINFER_OPS_AVX512
  switch (headDim) {
    case 16: return attendGroupAvx512<1, Rows>;
    case 32: return attendGroupAvx512<2, Rows>;
    case 48: return attendGroupAvx512<3, Rows>;
    case 64: return attendGroupAvx512<4, Rows>;
    case 80: return attendGroupAvx512<5, Rows>;
    case 96: return attendGroupAvx512<6, Rows>;
    case 128: return attendGroupAvx512<8, Rows>;
    default: return attendEachHead<Rows, attendAvx512Generic<Rows>>;
  }
#else
  (void)headDim;
  return attendEachHead<Rows, attendScalar<Rows>>;
#endif
}

// Runs causal attention for m query rows: row i attends keys [0, positions[i]] (with a sliding
// window, the last s.window of them) of the rows
// that rowsOf(i, kvHead, &k, &v) hands out. Work item = (query row, kv head, sub-group of at
// most kMaxGroupHeads of its query heads). q and out are [m, qDim].
template <class Rows, class RowsOf>
static void runAttention(float* out, const float* q, int64_t m, const int32_t* positions, int64_t maxPos,
                         const AttnShape& s, const RowsOf& rowsOf) {
  const AttendGroupFn<Rows> attend = pickAttend<Rows>(s.headDim, useScalarKernels());
  const int64_t group = s.numHeads / s.numKvHeads;
  const bool busy = m * s.numKvHeads >= 4 * static_cast<int64_t>(ThreadPool::instance().threads());
  const int64_t maxHeads = busy ? kMaxGroupHeadsBusy : kMaxGroupHeads;
  const int64_t numSub = (group + maxHeads - 1) / maxHeads;
  const size_t heads = static_cast<size_t>((group + numSub - 1) / numSub);  // most heads of an item
  const int64_t itemsPerRow = s.numKvHeads * numSub;
  // Grain 1: an item's cost grows with its position, dynamic chunks balance it. Small calls
  // (decode at short positions: m * numHeads * (maxPos + 1) * headDim below 2^17 multiply-adds
  // per QK and per V pass, e.g. tinyllama up to position 63) run on the calling thread only:
  // H7 measured ~790 us per call at position 10 with 2 threads vs 8 us with 1 on the loaded
  // machine, where waking a pool thread costs far more than the work.
  const int64_t items = m * itemsPerRow;
  const double macs = static_cast<double>(m) * static_cast<double>(s.numHeads) * static_cast<double>(maxPos + 1) *
                      static_cast<double>(s.headDim);
  const int64_t grain = macs < static_cast<double>(1 << 17) ? items : 1;
  parallelFor(items, grain, [&](int64_t b, int64_t e, int) {
    thread_local AttnScratch t;
    const int64_t stride = maxPos + 1;
    if (t.scores.size() < heads * stride) t.scores.resize(heads * stride);
    t.scoresStride = stride;
    if (t.q.size() < heads * s.headDim) {
      t.q.resize(heads * s.headDim);
      t.acc.resize(heads * s.headDim);
    }
    if (t.block.size() < static_cast<size_t>(kKeyBlockRows * s.headDim)) t.block.resize(kKeyBlockRows * s.headDim);
    if (t.accT.size() < heads * s.headDim * 16) t.accT.resize(heads * s.headDim * 16);
    for (int64_t item = b; item < e; item++) {
      const int64_t row = item / itemsPerRow, rest = item % itemsPerRow;
      const int64_t kvHead = rest / numSub, sub = rest % numSub;
      const int64_t h0 = kvHead * group + sub * group / numSub, h1 = kvHead * group + (sub + 1) * group / numSub;
      const int64_t n = static_cast<int64_t>(positions[row]) + 1;
      const int64_t start = s.window > 0 && n > s.window ? n - s.window : 0;
      const int64_t off = row * s.qDim + h0 * s.headDim;
      Rows k, v;
      rowsOf(row, kvHead, &k, &v);
      attend(out + off, q + off, h1 - h0, k, v, start, n, s, t);
    }
  });
}

// Checks and fills the shape of an attention call; throws RangeError naming what is wrong.
inline AttnShape attnShapeFrom(const Napi::Env& env, const char* fn, int64_t numHeads, int64_t numKvHeads,
                               int64_t headDim, double scale) {
  if (numHeads == 0 || numKvHeads == 0 || headDim == 0)
    throwRange(env, fn, "numHeads, numKvHeads and headDim must be at least 1");
  if (numHeads % numKvHeads != 0)
    throwRange(env, fn, "numHeads (" + std::to_string(numHeads) + ") must be a multiple of numKvHeads (" +
                            std::to_string(numKvHeads) + ")");
  AttnShape s;
  s.numHeads = numHeads;
  s.numKvHeads = numKvHeads;
  s.headDim = headDim;
  s.scale = static_cast<float>(scale);
  s.qDim = numHeads * headDim;
  s.kvDim = numKvHeads * headDim;
  return s;
}

// Reads the optional trailing (softcap, window) arguments at info[i], info[i + 1] into s
// (undefined or absent = off).
inline void attnOptionsFrom(const Napi::CallbackInfo& info, size_t i, const char* fn, AttnShape* s) {
  if (info.Length() > i && !info[i].IsUndefined()) s->softcap = static_cast<float>(argNumber(info, i, fn, "softcap"));
  if (info.Length() > i + 1 && !info[i + 1].IsUndefined()) s->window = argInt(info, i + 1, fn, "window");
  if (!(s->softcap >= 0) || !std::isfinite(s->softcap))
    throwRange(info.Env(), fn, "softcap must be a finite number >= 0 (0 = off)");
}

}  // namespace ops
}  // namespace flexinfer
