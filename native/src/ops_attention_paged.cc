// Paged attention (vLLM's PagedAttention, CPU flavour) and its K/V store.
//
// The paged KV layout keeps every sequence's K/V of one layer in fixed blocks of 16 tokens
// taken from one pool; a sequence's block table lists its blocks in order. One layer's pool:
//
//   pool (K or V) = [numBlocks][numKvHeads][16][headDim] f16
//   block b, kv head h, token t:  pool + ((b * numKvHeads + h) * 16 + t) * headDim
//
//   sequence A's table: [7, 2, 9]    keys 0..15 in block 7, 16..31 in block 2, 32..47 in 9
//
// Head-major inside a block, as vLLM's CPU cache (key/value_cache [num_blocks, num_kv_heads,
// block_size, head_size]): one kv head's 16 rows of a block are one 2 KiB run (headDim 64),
// so a kernel working on one kv head reads whole runs instead of a 128-byte piece of every
// kvDim-wide row.
//
// pagedAttention takes the whole batch in one call, as vLLM's kernel does (block tables
// [numSeqs, maxBlocksPerSeq], one table per query row's sequence), and runs the kernels of
// attention_kernels.h through a block-table row accessor: the scores, softmax and outputs are
// the same instructions in the same order as the dense kernel's, so logits are bitwise equal
// to the vTensor and contiguous layouts'.
//
// pagedStoreKv is vLLM's reshape_and_cache: row i goes to slot slots[i] = block * 16 + offset.
#include "attention_kernels.h"
#include "registry.h"

namespace flexinfer {
namespace ops {

// Elements of one block of one layer's K (or V) pool.
static int64_t blockElems(int64_t numKvHeads, int64_t headDim) { return numKvHeads * kPagedBlockTokens * headDim; }

// Number of whole blocks in a pool; throws unless the pool is made of whole blocks.
static int64_t poolBlocks(const Napi::Env& env, const char* fn, const char* name, const Span<uint16_t>& pool,
                          int64_t elemsPerBlock) {
  if (pool.length % static_cast<uint64_t>(elemsPerBlock) != 0)
    throwRange(env, fn, std::string(name) + " holds " + std::to_string(pool.length) +
                            " elements, not a whole number of blocks of " + std::to_string(elemsPerBlock) +
                            " (numKvHeads * 16 * headDim)");
  return static_cast<int64_t>(pool.length / elemsPerBlock);
}

// pagedAttention(out, q, kPool, vPool, m, positions, rowTables, tables, tableStride,
//                numHeads, numKvHeads, headDim, scale[, softcap[, window]])
// Row i attends keys [0, positions[i]] (with a window > 0, the last `window` of them) of the
// sequence whose block table is tables[rowTables[i] * tableStride, (rowTables[i] + 1) * tableStride).
// With a window, the blocks wholly before a row's window are never read: their table entries
// may be -1 (blocks given back to the pool).
static Napi::Value PagedAttention(const Napi::CallbackInfo& info) {
  const char* fn = "pagedAttention";
  Napi::Env env = info.Env();
  auto out = argArray<float>(info, 0, fn, "out");
  auto q = argArray<float>(info, 1, fn, "q");
  auto kPool = argArray<uint16_t>(info, 2, fn, "kPool");
  auto vPool = argArray<uint16_t>(info, 3, fn, "vPool");
  const int64_t m = argInt(info, 4, fn, "m");
  auto positions = argArray<int32_t>(info, 5, fn, "positions");
  auto rowTables = argArray<int32_t>(info, 6, fn, "rowTables");
  auto tables = argArray<int32_t>(info, 7, fn, "tables");
  const int64_t tableStride = argInt(info, 8, fn, "tableStride", int64_t{1} << 31);
  const int64_t numHeads = argInt(info, 9, fn, "numHeads", 1 << 16);
  const int64_t numKvHeads = argInt(info, 10, fn, "numKvHeads", 1 << 16);
  const int64_t headDim = argInt(info, 11, fn, "headDim", 1 << 16);
  AttnShape s = attnShapeFrom(env, fn, numHeads, numKvHeads, headDim, argNumber(info, 12, fn, "scale"));
  attnOptionsFrom(info, 13, fn, &s);
  requireLength(env, fn, "q", q, uint64_t(m) * s.qDim, "m * numHeads * headDim");
  requireLength(env, fn, "out", out, uint64_t(m) * s.qDim, "m * numHeads * headDim");
  requireLength(env, fn, "positions", positions, m, "m");
  requireLength(env, fn, "rowTables", rowTables, m, "m");
  if (out.data == q.data) throwRange(env, fn, "out must not alias q");
  const int64_t be = blockElems(s.numKvHeads, s.headDim);
  const int64_t numBlocks = poolBlocks(env, fn, "kPool", kPool, be);
  if (vPool.length != kPool.length)
    throwRange(env, fn, "vPool holds " + std::to_string(vPool.length) + " elements, kPool " +
                            std::to_string(kPool.length) + "; the pools must be the same size");
  if (m == 0) return env.Undefined();
  if (tableStride == 0) throwRange(env, fn, "tableStride must be at least 1");
  if (tables.length % static_cast<uint64_t>(tableStride) != 0)
    throwRange(env, fn, "tables holds " + std::to_string(tables.length) + " elements, not a multiple of tableStride " +
                            std::to_string(tableStride));
  const int64_t numTables = static_cast<int64_t>(tables.length) / tableStride;
  // Every row's position fits its table; then every block a row reads (blocks [start / 16,
  // pos / 16] of its table, start = 0 without a window) is checked once per table, from the
  // earliest first block to the furthest last block of the rows that use the table.
  std::vector<int64_t> tableReach(static_cast<size_t>(numTables), -1);
  std::vector<int64_t> tableFirst(static_cast<size_t>(numTables), tableStride);
  int64_t maxPos = -1;
  for (int64_t i = 0; i < m; i++) {
    const int64_t p = positions.data[i], t = rowTables.data[i];
    if (p < 0) throwRange(env, fn, "positions[" + std::to_string(i) + "] is negative");
    if (t < 0 || t >= numTables)
      throwRange(env, fn, "rowTables[" + std::to_string(i) + "] = " + std::to_string(t) + " is not a table (there are " +
                              std::to_string(numTables) + ")");
    if (p / kPagedBlockTokens >= tableStride)
      throwRange(env, fn, "positions[" + std::to_string(i) + "] = " + std::to_string(p) + " is past the " +
                              std::to_string(tableStride * kPagedBlockTokens) + " tokens a table of " +
                              std::to_string(tableStride) + " blocks holds");
    tableReach[t] = std::max(tableReach[t], p / kPagedBlockTokens);
    const int64_t start = s.window > 0 && p + 1 > s.window ? p + 1 - s.window : 0;
    tableFirst[t] = std::min(tableFirst[t], start / kPagedBlockTokens);
    maxPos = std::max(maxPos, p);
  }
  for (int64_t t = 0; t < numTables; t++) {
    for (int64_t b = tableFirst[t]; b <= tableReach[t]; b++) {
      const int32_t id = tables.data[t * tableStride + b];
      if (id < 0 || id >= numBlocks)
        throwRange(env, fn, "tables[" + std::to_string(t * tableStride + b) + "] = " + std::to_string(id) +
                                " (table " + std::to_string(t) + ", block " + std::to_string(b) +
                                ") is not a block of the pool (" + std::to_string(numBlocks) + " blocks)");
    }
  }

  runAttention<PagedRows>(out.data, q.data, m, positions.data, maxPos, s,
                          [&](int64_t row, int64_t kvHead, PagedRows* kr, PagedRows* vr) {
                            const int32_t* table = tables.data + int64_t(rowTables.data[row]) * tableStride;
                            const int64_t headOff = kvHead * kPagedBlockTokens * s.headDim;
                            *kr = PagedRows{kPool.data + headOff, table, be, s.headDim};
                            *vr = PagedRows{vPool.data + headOff, table, be, s.headDim};
                          });
  return env.Undefined();
}

// pagedStoreKv(pool, src, m, numKvHeads, headDim, slots): row i of src [m, numKvHeads * headDim]
// goes to block slots[i] / 16, token slots[i] % 16 (every kv head's part to its run).
static Napi::Value PagedStoreKv(const Napi::CallbackInfo& info) {
  const char* fn = "pagedStoreKv";
  Napi::Env env = info.Env();
  auto pool = argArray<uint16_t>(info, 0, fn, "pool");
  auto src = argArray<float>(info, 1, fn, "src");
  const int64_t m = argInt(info, 2, fn, "m");
  const int64_t numKvHeads = argInt(info, 3, fn, "numKvHeads", 1 << 16);
  const int64_t headDim = argInt(info, 4, fn, "headDim", 1 << 16);
  auto slots = argArray<int32_t>(info, 5, fn, "slots");
  if (numKvHeads == 0 || headDim == 0) throwRange(env, fn, "numKvHeads and headDim must be at least 1");
  const int64_t kvDim = numKvHeads * headDim;
  const int64_t be = blockElems(numKvHeads, headDim);
  const int64_t numBlocks = poolBlocks(env, fn, "pool", pool, be);
  requireLength(env, fn, "src", src, uint64_t(m) * kvDim, "m * numKvHeads * headDim");
  requireLength(env, fn, "slots", slots, m, "m");
  for (int64_t i = 0; i < m; i++) {
    const int64_t slot = slots.data[i];
    if (slot < 0 || slot >= numBlocks * kPagedBlockTokens)
      throwRange(env, fn, "slots[" + std::to_string(i) + "] = " + std::to_string(slot) + " is outside the pool (" +
                              std::to_string(numBlocks) + " blocks of 16 tokens)");
  }
  const bool scalar = useScalarKernels();
  for (int64_t i = 0; i < m; i++) {
    const int64_t slot = slots.data[i];
    uint16_t* dst = pool.data + (slot / kPagedBlockTokens) * be + (slot % kPagedBlockTokens) * headDim;
    for (int64_t h = 0; h < numKvHeads; h++)
      f32ToF16Row(dst + h * kPagedBlockTokens * headDim, src.data + i * kvDim + h * headDim, headDim, scalar);
  }
  return env.Undefined();
}

}  // namespace ops
}  // namespace flexinfer

FLEXINFER_MODULE(ops_attention_paged) {
  exports.Set("opsPagedAttention", Napi::Function::New(env, flexinfer::ops::PagedAttention, "opsPagedAttention"));
  exports.Set("opsPagedStoreKv", Napi::Function::New(env, flexinfer::ops::PagedStoreKv, "opsPagedStoreKv"));
}
