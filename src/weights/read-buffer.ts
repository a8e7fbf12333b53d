/**
 * Memory that streamed reads land in (the ring of layer slots, the storage probes' buffer):
 * 2 MiB-aligned, with 2 MiB pages advised before the first touch (adviseHugePages).
 *
 * Why: an O_DIRECT read is one device segment per physically contiguous run of its buffer, and
 * this machine's virtio disk takes at most 254 segments per request (/sys/block/vda/queue/
 * max_segments; max_sectors_kb 4096). Into 4 KiB pages a 1 MiB piece (256 pages) became two
 * requests and larger pieces did not help: O_DIRECT read 1.6-1.8 GB/s whatever the piece size
 * and depth (1, 2, 4, 8 MiB pieces at depths 8-32), below buffered reads, whose read-ahead fills
 * large folios (3.8-4.0 GB/s). Into 2 MiB pages the same reads took 3.0-7.8 GB/s (quiet
 * 2026-12-06 06:02, 3 interleaved rounds of 256 MiB cold reads, threads x pread O_DIRECT:
 * 1 MiB x 8 threads 1.56-1.78 GB/s on 4 KiB pages vs 3.00-7.79 on 2 MiB pages; 4 MiB x 4
 * threads 1.57-1.72 vs 5.42-6.99; issue-9 notes). FLEXINFER_HUGE_PAGES=0 turns it off, for
 * comparisons.
 */
import { switchFromEnv } from './env-switch.js';
import { adviseHugePages, allocAligned, reserveRegion } from '../native/index.js';

/** Size and alignment of a transparent huge page on x86-64. */
export const HUGE_PAGE_BYTES = 2 * 1024 * 1024;

/** Whether read buffers ask for 2 MiB pages: FLEXINFER_HUGE_PAGES=1 (default) or 0. */
export function hugeReadBuffers(value = process.env.FLEXINFER_HUGE_PAGES): boolean {
  return switchFromEnv('FLEXINFER_HUGE_PAGES', value, true, ' (1: 2 MiB pages for read buffers, the default; 0: 4 KiB pages)');
}

/**
 * A buffer for streamed reads of `bytes`: from 2 MiB up (and unless FLEXINFER_HUGE_PAGES=0)
 * 2 MiB-aligned with 2 MiB pages advised, else `align`-aligned.
 */
export function allocReadBuffer(bytes: number, align = 4096): ArrayBuffer {
  if (bytes < HUGE_PAGE_BYTES || !hugeReadBuffers()) return allocAligned(bytes, align);
  const buf = allocAligned(bytes, Math.max(align, HUGE_PAGE_BYTES));
  adviseHugePages(buf);
  return buf;
}

/**
 * Address space to reserve for a read region of `bytes` (reserveRegion): a whole number of
 * 2 MiB pages, which the kernel places 2 MiB-aligned (observed on 6.18: other lengths are
 * often not), so adviseHugePages covers all of it.
 */
export function readRegionBytes(bytes: number): number {
  return hugeReadBuffers() && bytes >= HUGE_PAGE_BYTES ? Math.ceil(bytes / HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES : bytes;
}

/**
 * Address space for streamed reads of `bytes` (reserveRegion, pages mapped on first touch):
 * readRegionBytes of it, with 2 MiB pages advised before the first touch (as allocReadBuffer).
 */
export function reserveReadRegion(bytes: number): ArrayBuffer {
  const region = reserveRegion(readRegionBytes(bytes));
  if (hugeReadBuffers()) adviseHugePages(region);
  return region;
}
