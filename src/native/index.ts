/**
 * Typed surface of the native addon. One place that knows the addon's function names and
 * argument shapes; every other module imports from here.
 */
import { addon } from './addon.js';

/** SIMD paths this build of the addon was compiled with. */
export interface NativeBuildInfo {
  avx512f: boolean;
  avx512vnni: boolean;
  avx2: boolean;
  f16c: boolean;
  compiler: string;
}

/** Version string of the native addon. */
export function nativeVersion(): string {
  return addon.version() as string;
}

/** Which instruction-set paths the addon was compiled with. */
export function nativeBuildInfo(): NativeBuildInfo {
  return addon.buildInfo() as NativeBuildInfo;
}
export * from './memory.js';
export * from './memory-region.js';
export * from './io.js';
export * from './vmem.js';
export * from './ops.js';
export * from './matmul.js';
export * from './moe.js';
