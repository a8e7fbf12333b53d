/**
 * Hand-assembles GGUF bytes field by field for tests, independent of the writer, so tests can
 * build both valid files and files with any field wrong. @internal (test support)
 */

/** Little-endian byte assembler. */
export class HandBytes {
  private parts: number[] = [];

  get length(): number {
    return this.parts.length;
  }
  raw(bytes: ArrayLike<number>): this {
    for (let i = 0; i < bytes.length; i++) this.parts.push(bytes[i]! & 0xff);
    return this;
  }
  private le(v: bigint, n: number): this {
    let x = BigInt.asUintN(n * 8, v);
    for (let i = 0; i < n; i++) {
      this.parts.push(Number(x & 0xffn));
      x >>= 8n;
    }
    return this;
  }
  u8(v: number): this { return this.le(BigInt(v), 1); }
  u16(v: number): this { return this.le(BigInt(v), 2); }
  u32(v: number): this { return this.le(BigInt(v), 4); }
  u64(v: number | bigint): this { return this.le(BigInt(v), 8); }
  f32(v: number): this {
    const dv = new DataView(new ArrayBuffer(4));
    dv.setFloat32(0, v, true);
    return this.raw(new Uint8Array(dv.buffer));
  }
  f64(v: number): this {
    const dv = new DataView(new ArrayBuffer(8));
    dv.setFloat64(0, v, true);
    return this.raw(new Uint8Array(dv.buffer));
  }
  /** GGUF string: u64 byte length + UTF-8 bytes. */
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.u64(b.length).raw(b);
  }
  /** Zero bytes up to a multiple of `a`. */
  pad(a: number): this {
    while (this.parts.length % a !== 0) this.parts.push(0);
    return this;
  }
  /** Appends `n` bytes of value `v`. */
  fill(n: number, v = 0): this {
    for (let i = 0; i < n; i++) this.parts.push(v);
    return this;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** The 4-byte magic "GGUF". */
export const MAGIC = [0x47, 0x47, 0x55, 0x46];

/** Tensor info as hand-written fields. */
export interface HandTensor {
  name: string;
  dims: Array<number | bigint>;
  type: number;
  offset: number | bigint;
  nDims?: number; // override the count written
}

/**
 * A whole file: header fields, `kv` callback writing the key/value pairs, tensor infos, then
 * padding to `alignment` and `data` bytes. Counts default to the real ones.
 */
export function handGguf(spec: {
  version?: number;
  nTensors?: number | bigint;
  nKv?: number | bigint;
  kvCount: number;
  kv: (b: HandBytes) => void;
  tensors?: HandTensor[];
  alignment?: number;
  data?: Uint8Array;
}): Uint8Array {
  const b = new HandBytes().raw(MAGIC).u32(spec.version ?? 3);
  const tensors = spec.tensors ?? [];
  b.u64(spec.nTensors ?? tensors.length).u64(spec.nKv ?? spec.kvCount);
  spec.kv(b);
  for (const t of tensors) {
    b.str(t.name).u32(t.nDims ?? t.dims.length);
    for (const d of t.dims) b.u64(d);
    b.u32(t.type).u64(t.offset);
  }
  b.pad(spec.alignment ?? 32);
  if (spec.data) b.raw(spec.data);
  return b.bytes();
}
