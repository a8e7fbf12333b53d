/**
 * `flexinfer convert --align 4096 IN OUT`: rewrites a GGUF file with every tensor at a
 * multiple of the alignment (general.alignment), so the streamer can read tensors with
 * O_DIRECT. Metadata and tensor bytes are copied unchanged; tensors are copied one at a time.
 */
import { parseArgs } from 'node:util';
import { existsSync, realpathSync } from 'node:fs';
import { InvalidOptionError } from '../errors.js';
import { readGgufSync } from '../gguf/reader.js';
import { gv, type GgufValue } from '../gguf/value.js';
import { writeGguf } from '../gguf/writer.js';
import { readInto } from '../native/index.js';
import { createProgress } from './progress.js';
import { basename, dirname, join } from 'node:path';
import { mergeSplitGguf, splitCount } from '../gguf/split.js';
import { splitPartNames } from '../hub/uri.js';

const HELP = `Usage: flexinfer convert [--align N] IN OUT

Rewrites the GGUF file IN as OUT with tensor data aligned to N bytes (default 4096), so
tensors can be streamed with direct I/O (O_DIRECT). Metadata and tensor bytes are unchanged.
When IN is the first part of a split model (NAME-00001-of-0000N.gguf), all parts are merged
into OUT.

Options:
  --align N   data alignment, a power of two from 32 to 1048576 (default 4096)
  --force     overwrite OUT if it exists
  -h, --help  show this help
`;

/** Copies `input` to `output` with tensor data aligned to `alignment`. */
export async function convertAlign(input: string, output: string, alignment: number, options: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal } = {}): Promise<void> {
  if (!(Number.isInteger(alignment) && alignment >= 32 && alignment <= 1 << 20 && (alignment & (alignment - 1)) === 0)) {
    throw new InvalidOptionError('--align', `must be a power of two from 32 to 1048576, got ${alignment}`);
  }
  const file = readGgufSync(input);
  if (splitCount(file) > 1) {
    const names = splitPartNames(basename(input));
    if (!names) throw new InvalidOptionError('convert', `${input} is part of a split model but not named NAME-00001-of-0000N.gguf; rename the parts as gguf-split wrote them`);
    await mergeSplitGguf(names.map((n) => join(dirname(input), n)), output, { alignment, ...options });
    return;
  }
  const metadata = new Map<string, GgufValue>(file.metadata);
  metadata.set('general.alignment', gv.u32(alignment));
  const tensors = file.tensors.map((t) => ({
    name: t.name,
    type: t.type,
    dims: t.dims,
    data: () => {
      const bytes = new Uint8Array(t.byteSize);
      readInto(input, t.fileOffset, bytes, 0, t.byteSize);
      return bytes;
    },
  }));
  await writeGguf(output, metadata, tensors, { alignment, ...options });
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { align: { type: 'string', default: '4096' }, force: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 2) throw new InvalidOptionError('convert', `expected IN and OUT files, got ${positionals.length} argument(s); see flexinfer convert --help`);
  const [input, output] = positionals as [string, string];
  if (!/^\d+$/.test(values.align!)) throw new InvalidOptionError('--align', `must be a number of bytes, got '${values.align}'`);
  if (existsSync(output)) {
    if (realpathSync(output) === realpathSync(input)) throw new InvalidOptionError('convert', 'OUT must be a different file from IN');
    if (!values.force) throw new InvalidOptionError('convert', `${output} exists; pass --force to overwrite it`);
  }
  const ac = new AbortController();
  const onSigint = () => ac.abort();
  process.once('SIGINT', onSigint);
  const progress = createProgress('convert', readGgufSync(input).fileSize);
  try {
    await convertAlign(input, output, Number(values.align), { onProgress: (d) => progress.update(d), signal: ac.signal });
  } finally {
    progress.done();
    process.off('SIGINT', onSigint);
  }
  const out = readGgufSync(output);
  const aligned = out.tensors.filter((t) => t.fileOffset % Number(values.align) === 0).length;
  process.stdout.write(`${output}: ${out.tensors.length} tensors, ${aligned} at ${values.align}-byte aligned file offsets, ${out.fileSize} bytes\n`);
  return 0;
}
