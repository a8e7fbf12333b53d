/**
 * What the elastic pool is expected to do with a budget (`flexinfer plan`): the KV floor, the
 * pool, and for N active sequences the split the pool settles on: KV above the floor, the
 * weights' ladder level that leaves (resident, ring), bytes streamed per token and the
 * planner's predicted speed. The same rule as MemoryPool (the highest level whose memory fits
 * what KV and the read cache leave), without the headroom it keeps for growth.
 */
import type { PlanLadder } from '../weights/plan.js';
import { levelFor } from '../weights/elastic-store.js';
import { appliedReserve } from '../weights/create.js';

/** The split at one load. */
export interface ExpectedSplit {
  sequences: number;
  tokensPerSequence: number;
  kvBytes: number;
  /** false: even the minimum resident set leaves too little KV (the scheduler would preempt). */
  fits: boolean;
  level: number;
  residentBytes: number;
  ringBytes: number;
  streamedBytesPerToken: number;
  predictedTokensPerSec: number;
}

/** The pool's figures and the split at each load. */
export interface PoolPlan {
  budget: number;
  scratchBytes: number;
  /** Kept for the process's own memory (engine/memory.ts runtimeReserveFor). */
  runtimeBytes: number;
  /** Page cache the weights leave free for buffered reads (weights/read-cache.ts); KV grows into it first. */
  readCacheBytes: number;
  floorBytes: number;
  poolBytes: number;
  /** Memory of the minimum resident set (norms, output matrix or its slice buffers, stream buffers). */
  minWeightBytes: number;
  /** Most sequences of `tokensPerSequence` the pool holds with the weights at their minimum. */
  maxSequences: number;
  rows: ExpectedSplit[];
}

export function planPool(
  ladder: PlanLadder,
  levels: { residentAt: readonly number[]; ringAt: readonly number[]; bytesAt: readonly number[] },
  o: { budget: number; scratchBytes: number; runtimeBytes?: number; readCacheBytes?: number; floorBytes: number; tokensPerSequence: number; kvBytesFor: (sequences: number) => number },
  sequences: readonly number[],
): PoolPlan {
  const top = ladder.steps.length;
  const minWeightBytes = Math.min(...levels.bytesAt);
  const poolBytes = o.budget - o.scratchBytes - o.floorBytes;
  const runtimeBytes = appliedReserve(poolBytes, levels.bytesAt, o.runtimeBytes ?? 0);
  const readCacheBytes = appliedReserve(poolBytes - runtimeBytes, levels.bytesAt.slice(ladder.cacheFloor), o.readCacheBytes ?? 0);
  const minLevel = levels.bytesAt.indexOf(minWeightBytes);
  // KV and the runtime reserve beyond the floor come out of the pool (MemoryPool).
  const kvRoom = (n: number) => Math.max(0, o.kvBytesFor(n) + runtimeBytes - o.floorBytes);
  let maxSequences = 0;
  while (maxSequences < 1 << 16 && kvRoom(maxSequences + 1) + minWeightBytes <= poolBytes) maxSequences++;
  const rows = sequences.map((n) => {
    const kvBytes = o.kvBytesFor(n);
    const fit = levelFor(levels.bytesAt, minLevel, top, poolBytes - Math.max(readCacheBytes, kvRoom(n)));
    const level = fit < 0 ? minLevel : fit;
    const plan = ladder.planAt(level);
    return {
      sequences: n,
      tokensPerSequence: o.tokensPerSequence,
      kvBytes,
      fits: fit >= 0,
      level,
      residentBytes: levels.residentAt[level]!,
      ringBytes: levels.ringAt[level]!,
      streamedBytesPerToken: plan.streamedBytesPerToken,
      predictedTokensPerSec: plan.predictedTokensPerSec,
    };
  });
  return { budget: o.budget, scratchBytes: o.scratchBytes, runtimeBytes, readCacheBytes, floorBytes: o.floorBytes, poolBytes, minWeightBytes, maxSequences, rows };
}
