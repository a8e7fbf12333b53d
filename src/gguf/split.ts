/**
 * Split GGUF files, as llama.cpp's gguf-split writes them: `NAME-00001-of-0000N.gguf` ...
 * Every part is a GGUF file; the first holds all metadata; each part holds `split.no`
 * (0-based), `split.count` and `split.tensors.count` (all parts' tensors) and its own
 * tensors. flexinfer loads one file, so a split model is merged once (by `flexinfer pull`
 * or `flexinfer convert PART1 OUT`).
 */
import { open } from 'node:fs/promises';
import { InvalidGgufError } from '../errors.js';
import { readGgufSync, type GgufFile } from './reader.js';
import type { GgufValue } from './value.js';
import { writeGguf, type GgufWriteTensor } from './writer.js';

/** `split.count` of a file (1 when it is not split). */
export function splitCount(file: GgufFile): number {
  const n = file.getNumber('split.count');
  return n === undefined ? 1 : n;
}

/** Throws a typed error saying how to merge, when `file` is one part of a split model. */
export function assertNotSplit(file: GgufFile): void {
  const count = splitCount(file);
  if (count > 1) {
    const no = file.getNumber('split.no') ?? 0;
    throw new InvalidGgufError('BAD_VALUE', file.path, -1,
      `this is part ${no + 1} of ${count} of a split GGUF model; merge the parts into one file first: flexinfer convert ${file.path.replace(/-\d{5}-of-(\d{5})\.gguf$/i, '-00001-of-$1.gguf')} MERGED.gguf (hf: URIs are merged by flexinfer pull)`);
  }
}

/**
 * Merges the parts of a split model (in order) into one GGUF file at `out`: the first part's
 * metadata without the `split.*` keys, then every part's tensors in order, each tensor's bytes
 * copied unchanged. Checks that the parts belong together.
 */
export async function mergeSplitGguf(parts: string[], out: string, options: { alignment?: number; onProgress?: (done: number, total: number) => void; signal?: AbortSignal } = {}): Promise<void> {
  const files = parts.map((p) => readGgufSync(p));
  const first = files[0];
  if (!first) throw new InvalidGgufError('BAD_VALUE', out, -1, 'no parts to merge');
  const count = splitCount(first);
  if (count !== parts.length) {
    throw new InvalidGgufError('BAD_VALUE', first.path, -1, `split.count says ${count} parts, ${parts.length} given`);
  }
  files.forEach((f, i) => {
    const no = f.getNumber('split.no') ?? 0;
    if (no !== i || splitCount(f) !== count) {
      throw new InvalidGgufError('BAD_VALUE', f.path, -1, `expected part ${i + 1} of ${count}, the file says part ${no + 1} of ${splitCount(f)}`);
    }
  });
  const total = files.reduce((n, f) => n + f.tensors.length, 0);
  const declared = first.getNumber('split.tensors.count');
  if (declared !== undefined && declared !== total) {
    throw new InvalidGgufError('BAD_VALUE', first.path, -1, `split.tensors.count says ${declared} tensors, the parts hold ${total}`);
  }
  const metadata = new Map<string, GgufValue>();
  for (const [k, v] of first.metadata) if (!k.startsWith('split.')) metadata.set(k, v);
  const tensors: GgufWriteTensor[] = [];
  for (const f of files) {
    for (const t of f.tensors) {
      tensors.push({
        name: t.name,
        type: t.type,
        dims: t.dims,
        data: async () => {
          const bytes = new Uint8Array(t.byteSize);
          const fh = await open(f.path, 'r');
          try {
            let done = 0;
            while (done < t.byteSize) {
              const { bytesRead } = await fh.read(bytes, done, t.byteSize - done, t.fileOffset + done);
              if (bytesRead === 0) throw new InvalidGgufError('TRUNCATED', f.path, t.fileOffset + done, `tensor '${t.name}' ends past the end of the file`);
              done += bytesRead;
            }
          } finally {
            await fh.close();
          }
          return bytes;
        },
      });
    }
  }
  const writeOptions: Parameters<typeof writeGguf>[3] = {};
  const alignment = options.alignment ?? (first.metadata.has('general.alignment') ? first.alignment : undefined);
  if (alignment !== undefined) writeOptions.alignment = alignment;
  if (options.onProgress) writeOptions.onProgress = options.onProgress;
  if (options.signal) writeOptions.signal = options.signal;
  await writeGguf(out, metadata, tensors, writeOptions);
}
