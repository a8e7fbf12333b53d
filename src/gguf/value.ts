/**
 * GGUF metadata values: the on-disk value types, a typed value that remembers its type (so a
 * file can be rewritten byte for byte), constructors (`gv.u32(5)`), and conversion to plain
 * JavaScript values.
 */

/** Metadata value type ids, as stored in the file (gguf.md, `gguf_metadata_value_type`). */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** Number types whose values are JS numbers. */
export type GgufNumberType =
  | GgufValueType.UINT8
  | GgufValueType.INT8
  | GgufValueType.UINT16
  | GgufValueType.INT16
  | GgufValueType.UINT32
  | GgufValueType.INT32
  | GgufValueType.FLOAT32
  | GgufValueType.FLOAT64;

/** Items of an array, by item type: typed arrays for numbers, JS arrays for the rest. */
export type GgufArrayItems =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | boolean[]
  | string[]
  | GgufArray[];

/** An array value: item type and items (nested arrays are `GgufArray[]`). */
export interface GgufArray {
  itemType: GgufValueType;
  items: GgufArrayItems;
}

/** A metadata value with its on-disk type. 64-bit integers are bigints. */
export type GgufValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufValueType.UINT64 | GgufValueType.INT64; value: bigint }
  | { type: GgufValueType.BOOL; value: boolean }
  | { type: GgufValueType.STRING; value: string }
  | { type: GgufValueType.ARRAY; value: GgufArray };

/** Bytes one scalar of each fixed-size type takes (strings and arrays: their minimum size). */
export const GGUF_VALUE_MIN_BYTES: Readonly<Record<GgufValueType, number>> = {
  [GgufValueType.UINT8]: 1,
  [GgufValueType.INT8]: 1,
  [GgufValueType.UINT16]: 2,
  [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4,
  [GgufValueType.INT32]: 4,
  [GgufValueType.FLOAT32]: 4,
  [GgufValueType.BOOL]: 1,
  [GgufValueType.STRING]: 8, // u64 length, empty string
  [GgufValueType.ARRAY]: 12, // u32 item type + u64 length, empty array
  [GgufValueType.UINT64]: 8,
  [GgufValueType.INT64]: 8,
  [GgufValueType.FLOAT64]: 8,
};

/** Whether `t` is a value type id the format defines. */
export function isGgufValueType(t: number): t is GgufValueType {
  return Number.isInteger(t) && t >= 0 && t <= 12;
}

/** Name of a value type ("UINT32"), or `type#N` for an unknown id. */
export function ggufValueTypeName(t: number): string {
  return GgufValueType[t] ?? `type#${t}`;
}

const TYPED_ARRAY_CTORS = {
  [GgufValueType.UINT8]: Uint8Array,
  [GgufValueType.INT8]: Int8Array,
  [GgufValueType.UINT16]: Uint16Array,
  [GgufValueType.INT16]: Int16Array,
  [GgufValueType.UINT32]: Uint32Array,
  [GgufValueType.INT32]: Int32Array,
  [GgufValueType.FLOAT32]: Float32Array,
  [GgufValueType.FLOAT64]: Float64Array,
  [GgufValueType.UINT64]: BigUint64Array,
  [GgufValueType.INT64]: BigInt64Array,
} as const;

/** Typed-array constructor holding items of a numeric value type, or undefined. @internal */
export function typedArrayFor(t: GgufValueType) {
  return (TYPED_ARRAY_CTORS as Record<number, (typeof TYPED_ARRAY_CTORS)[keyof typeof TYPED_ARRAY_CTORS] | undefined>)[t];
}

function checkInt(v: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${what} value ${v} is not an integer in [${min}, ${max}]`);
  return v;
}

function toBig(v: number | bigint, signed: boolean): bigint {
  const b = typeof v === 'bigint' ? v : Number.isSafeInteger(v) ? BigInt(v) : NaN;
  if (typeof b !== 'bigint') throw new RangeError(`64-bit value ${v} is not a safe integer (pass a bigint)`);
  const ok = signed ? BigInt.asIntN(64, b) === b : BigInt.asUintN(64, b) === b;
  if (!ok) throw new RangeError(`value ${v} does not fit ${signed ? 'INT64' : 'UINT64'}`);
  return b;
}

/**
 * Value constructors: `gv.u32(5)`, `gv.str('llama')`, `gv.strArr(tokens)`, `gv.f32Arr(scores)`,
 * `gv.arr(GgufValueType.INT32, [1, 2])`. Integers are range-checked here, so a bad value fails
 * where it is made.
 */
export const gv = {
  u8: (v: number): GgufValue => ({ type: GgufValueType.UINT8, value: checkInt(v, 0, 0xff, 'UINT8') }),
  i8: (v: number): GgufValue => ({ type: GgufValueType.INT8, value: checkInt(v, -0x80, 0x7f, 'INT8') }),
  u16: (v: number): GgufValue => ({ type: GgufValueType.UINT16, value: checkInt(v, 0, 0xffff, 'UINT16') }),
  i16: (v: number): GgufValue => ({ type: GgufValueType.INT16, value: checkInt(v, -0x8000, 0x7fff, 'INT16') }),
  u32: (v: number): GgufValue => ({ type: GgufValueType.UINT32, value: checkInt(v, 0, 0xffffffff, 'UINT32') }),
  i32: (v: number): GgufValue => ({ type: GgufValueType.INT32, value: checkInt(v, -0x80000000, 0x7fffffff, 'INT32') }),
  u64: (v: number | bigint): GgufValue => ({ type: GgufValueType.UINT64, value: toBig(v, false) }),
  i64: (v: number | bigint): GgufValue => ({ type: GgufValueType.INT64, value: toBig(v, true) }),
  f32: (v: number): GgufValue => ({ type: GgufValueType.FLOAT32, value: v }),
  f64: (v: number): GgufValue => ({ type: GgufValueType.FLOAT64, value: v }),
  bool: (v: boolean): GgufValue => ({ type: GgufValueType.BOOL, value: v }),
  str: (v: string): GgufValue => ({ type: GgufValueType.STRING, value: v }),
  /** Array of `itemType`; numbers become the matching typed array, nested arrays are GgufArray. */
  arr: (itemType: GgufValueType, items: ArrayLike<number | bigint | boolean | string | GgufArray>): GgufValue => ({
    type: GgufValueType.ARRAY,
    value: makeArray(itemType, items),
  }),
  strArr: (items: string[]): GgufValue => ({ type: GgufValueType.ARRAY, value: { itemType: GgufValueType.STRING, items } }),
  f32Arr: (items: Float32Array | number[]): GgufValue => ({
    type: GgufValueType.ARRAY,
    value: { itemType: GgufValueType.FLOAT32, items: Float32Array.from(items) },
  }),
  i32Arr: (items: Int32Array | number[]): GgufValue => ({
    type: GgufValueType.ARRAY,
    value: { itemType: GgufValueType.INT32, items: checkedTyped(GgufValueType.INT32, items) as Int32Array },
  }),
};

function checkedTyped(itemType: GgufValueType, items: ArrayLike<unknown>): GgufArrayItems {
  const Ctor = typedArrayFor(itemType)!;
  if (items instanceof Ctor) return items as GgufArrayItems;
  const n = items.length;
  const one = (gv as unknown as Record<string, (v: never) => GgufValue>)[SCALAR_CTOR[itemType]!]!;
  const out = new Ctor(n);
  for (let i = 0; i < n; i++) (out as unknown as unknown[])[i] = one(items[i] as never).value; // range-checks each item
  return out as GgufArrayItems;
}

const SCALAR_CTOR: Partial<Record<GgufValueType, string>> = {
  [GgufValueType.UINT8]: 'u8',
  [GgufValueType.INT8]: 'i8',
  [GgufValueType.UINT16]: 'u16',
  [GgufValueType.INT16]: 'i16',
  [GgufValueType.UINT32]: 'u32',
  [GgufValueType.INT32]: 'i32',
  [GgufValueType.UINT64]: 'u64',
  [GgufValueType.INT64]: 'i64',
  [GgufValueType.FLOAT32]: 'f32',
  [GgufValueType.FLOAT64]: 'f64',
};

function makeArray(itemType: GgufValueType, items: ArrayLike<unknown>): GgufArray {
  if (!isGgufValueType(itemType)) throw new RangeError(`unknown GGUF value type ${itemType}`);
  const list = Array.from(items);
  switch (itemType) {
    case GgufValueType.BOOL:
      if (!list.every((x) => typeof x === 'boolean')) throw new TypeError('BOOL array items must be booleans');
      return { itemType, items: list as boolean[] };
    case GgufValueType.STRING:
      if (!list.every((x) => typeof x === 'string')) throw new TypeError('STRING array items must be strings');
      return { itemType, items: list as string[] };
    case GgufValueType.ARRAY:
      if (!list.every((x) => typeof x === 'object' && x !== null && 'itemType' in x)) {
        throw new TypeError('ARRAY array items must be GgufArray objects ({ itemType, items })');
      }
      return { itemType, items: list as GgufArray[] };
    default:
      return { itemType, items: checkedTyped(itemType, items) };
  }
}

/** A JS number for a bigint that fits exactly, else the bigint. */
function plainBig(b: bigint): number | bigint {
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

/** Numeric arrays up to this length come out of plainValue as number[]; longer ones as typed arrays. */
export const GGUF_SMALL_ARRAY = 1024;

/**
 * Plain JS form of a value: numbers (64-bit integers as numbers when they fit exactly, else
 * bigint), booleans, strings; arrays: `string[]`, `boolean[]`, nested arrays as JS arrays, and
 * numeric arrays as `number[]` when short (<= GGUF_SMALL_ARRAY items: per-layer hyperparameters)
 * or as the matching typed array when long (Float32Array for FLOAT32, Int32Array for INT32,
 * BigInt64Array for INT64, ...: vocabulary scores and token types).
 */
export function plainValue(v: GgufValue): unknown {
  switch (v.type) {
    case GgufValueType.UINT64:
    case GgufValueType.INT64:
      return plainBig(v.value);
    case GgufValueType.ARRAY:
      return plainArray(v.value);
    default:
      return v.value;
  }
}

function plainArray(a: GgufArray): unknown {
  if (a.itemType === GgufValueType.ARRAY) return (a.items as GgufArray[]).map(plainArray);
  if (ArrayBuffer.isView(a.items) && a.items.length <= GGUF_SMALL_ARRAY) {
    return Array.from(a.items as ArrayLike<number | bigint>, (x) => (typeof x === 'bigint' ? plainBig(x) : x));
  }
  return a.items;
}
