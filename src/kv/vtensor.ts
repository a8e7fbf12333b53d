/**
 * VTensor: one sequence's KV cache as virtually contiguous tensors over mapped chunks
 * (vTensor, arXiv 2407.15309). Layout decision: ONE reservation per sequence holding every
 * layer's K and V, each tensor at a chunk-aligned offset. One reservation (one ArrayBuffer,
 * one handle to release) per sequence keeps the native bookkeeping small; the views the model
 * gets are the same plain [maxContext, kvDim] f16 arrays either way.
 *
 *   reservation of one sequence (PROT_NONE until mapped), T = 2 * numLayers tensors,
 *   tensorBytes = maxContext * kvDim * 2 rounded up to whole chunks:
 *
 *   offset 0          tensorBytes       2*tensorBytes     3*tensorBytes
 *   +-----------------+-----------------+-----------------+-----------------+---
 *   | L0 K            | L0 V            | L1 K            | L1 V            | ...
 *   |c17|c18|c40|--|--|c19|c20|c41|--|--|c21|c22|c42|--|--|c23|c24|c43|--|--|
 *   +-----------------+-----------------+-----------------+-----------------+---
 *     slot 0 1  2  3 4
 *
 *   Slot j of every tensor holds tokens [j * tokensPerChunk, (j + 1) * tokensPerChunk).
 *   Slots [0, numSlots) are mapped in every tensor (the same count in all of them), the rest
 *   is unmapped: touching it faults. The one exception: a sliding-window (local) layer's K and
 *   V unmap the slots its window has left behind (VTensorKvManager, shape.layerWindows). Full slots may be shared with other sequences and the
 *   prefix cache (same chunk ids); the manager keeps the reference counts.
 *
 * Mechanism helper only: which chunk goes where is decided by VTensorKvManager.
 * @internal
 */
import type { KvShape } from './cache.js';
import { Reservation, type ChunkPool } from '../native/vmem.js';
import { rowBytes } from './shape.js';

/** Geometry shared by all VTensors of one manager. */
export interface VTensorGeometry {
  shape: KvShape;
  chunkBytes: number;
  /** Tokens of one tensor per chunk: chunkBytes / (kvDim * 2). */
  tokensPerChunk: number;
  /** 2 * numLayers: tensor t is layer t >> 1, K if t is even, V if odd. */
  numTensors: number;
  /** Chunk slots per tensor: ceil(maxContext / tokensPerChunk). */
  slotsPerTensor: number;
  /** Bytes of address space per tensor (slotsPerTensor * chunkBytes). */
  tensorBytes: number;
}

/** Geometry for a shape and chunk size; the chunk must hold a whole number of token rows. */
export function vtensorGeometry(shape: KvShape, chunkBytes: number): VTensorGeometry {
  const rb = rowBytes(shape);
  if (chunkBytes % rb !== 0) {
    throw new RangeError(
      `vTensor chunk size ${chunkBytes} B is not a multiple of one token row (kvDim ${shape.kvDim} * 2 = ${rb} B); ` +
        `pick a chunk size that is a multiple of both 4096 and ${rb}`,
    );
  }
  const tokensPerChunk = chunkBytes / rb;
  const slotsPerTensor = Math.ceil(shape.maxContext / tokensPerChunk);
  return {
    shape,
    chunkBytes,
    tokensPerChunk,
    numTensors: 2 * shape.numLayers,
    slotsPerTensor,
    tensorBytes: slotsPerTensor * chunkBytes,
  };
}

/** One sequence's K/V: a reservation and the chunk mapped in every slot. */
export class VTensor {
  readonly geometry: VTensorGeometry;
  private readonly reservation: Reservation;
  /** Per layer K view, [maxContext, kvDim] f16. */
  readonly keys: Uint16Array[] = [];
  /** Per layer V view, [maxContext, kvDim] f16. */
  readonly values: Uint16Array[] = [];
  /** Chunk id in [tensor * slotsPerTensor + slot], -1 if unmapped. */
  readonly chunks: Int32Array;
  /**
   * Slots [0, numSlots) are mapped in every tensor, except that a sliding-window layer's
   * tensors may have given back slots before their window (chunk -1; never touched).
   */
  numSlots = 0;

  constructor(pool: ChunkPool, geometry: VTensorGeometry) {
    this.geometry = geometry;
    const { numTensors, tensorBytes, slotsPerTensor, shape } = geometry;
    this.reservation = new Reservation(pool, numTensors * tensorBytes);
    this.chunks = new Int32Array(numTensors * slotsPerTensor).fill(-1);
    const elems = shape.maxContext * shape.kvDim;
    for (let l = 0; l < shape.numLayers; l++) {
      this.keys.push(new Uint16Array(this.reservation.buffer, 2 * l * tensorBytes, elems));
      this.values.push(new Uint16Array(this.reservation.buffer, (2 * l + 1) * tensorBytes, elems));
    }
  }

  /** Chunk at (tensor, slot), or -1. */
  chunkAt(tensor: number, slot: number): number {
    return this.chunks[tensor * this.geometry.slotsPerTensor + slot]!;
  }

  /** Maps `chunk` at (tensor, slot); the slot must be unmapped. */
  map(tensor: number, slot: number, chunk: number): void {
    const g = this.geometry;
    this.reservation.map(tensor * g.tensorBytes + slot * g.chunkBytes, chunk);
    this.chunks[tensor * g.slotsPerTensor + slot] = chunk;
  }

  /** Like map(), but mapped by the background thread: touch only after pool.drain(). */
  mapAsync(tensor: number, slot: number, chunk: number): void {
    const g = this.geometry;
    this.reservation.mapAsync(tensor * g.tensorBytes + slot * g.chunkBytes, chunk);
    this.chunks[tensor * g.slotsPerTensor + slot] = chunk;
  }

  /** Forgets a background map that failed (natively already undone); returns its chunk. */
  forget(offset: number): { tensor: number; slot: number; chunk: number } {
    const g = this.geometry;
    const tensor = Math.floor(offset / g.tensorBytes);
    const slot = (offset - tensor * g.tensorBytes) / g.chunkBytes;
    const i = tensor * g.slotsPerTensor + slot;
    const chunk = this.chunks[i]!;
    this.chunks[i] = -1;
    return { tensor, slot, chunk };
  }

  /** Native reservation handle (matches FailedMap.handle). */
  get handle(): number {
    return this.reservation.handle;
  }

  /** Unmaps (tensor, slot) and returns the chunk that was there. */
  unmap(tensor: number, slot: number): number {
    const g = this.geometry;
    const i = tensor * g.slotsPerTensor + slot;
    const chunk = this.chunks[i]!;
    this.reservation.unmap(tensor * g.tensorBytes + slot * g.chunkBytes);
    this.chunks[i] = -1;
    return chunk;
  }

  /** Frees the address range (every mapping goes; views become empty). Chunk refs are the caller's. */
  release(): void {
    this.reservation.release();
  }
}
