/**
 * Where an elastic KV pool's room comes from. With a static split the KV layout owns a fixed
 * number of chunks; with the elastic memory pool (engine/memory-pool.ts) it holds a grant that
 * the pool raises when the layout asks (demoting resident weights if it must) and lowers when
 * the chunks are free again (promoting weights back).
 *
 * NOTE: the order when KV must grow (DESIGN.md, "One elastic pool"): the layout first takes memory
 * nobody uses (request with mayDemote false), then evicts cached prefixes it can spare, then
 * asks the grant for the rest (which may demote weights), and only when the grant says no does
 * the scheduler preempt a sequence. Running short stays a return value.
 */

/** A KV layout's share of the elastic pool, in chunks. */
export interface KvChunkGrant {
  /** Chunks the layout may hold now (mapped into sequences or kept by the prefix cache). */
  readonly limitChunks: number;
  /** Most chunks the grant could ever reach (the layout's capacity as routers see it). */
  readonly maxChunks: number;
  /**
   * Room for `numChunks` more chunks than the limit allows. Called between forward passes.
   * With `mayDemote` false only from memory nobody uses; else resident weights may be demoted
   * for it. Returns false (limit unchanged) when the pool cannot give it.
   */
  request(numChunks: number, mayDemote?: boolean): boolean;
}
