/**
 * `pullModel` against a loopback hub emulator (redirect to another origin, Range, sha256 in
 * X-Linked-Etag, dropped connections, corrupt bytes, gated repositories), and an end-to-end
 * split model: synth -> split in three parts -> pull (merge) -> the same greedy tokens.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startHubEmulator, type HubEmulator } from './hub-emulator.js';
import { pullModel, chooseModelFile, ModelNotFoundError } from './pull.js';
import { DownloadError } from './download.js';
import { hubCacheDir } from './cache.js';
import { parseHubUri } from './uri.js';
import { synthesize } from '../synth/synth.js';
import { readGgufSync } from '../gguf/reader.js';
import { writeGguf } from '../gguf/writer.js';
import { gv } from '../gguf/value.js';
import { InvalidGgufError, InvalidOptionError } from '../errors.js';
import { loadModel } from '../index.js';

const dir = mkdtempSync(join(tmpdir(), 'flexinfer-pull-test-'));
const bin = fileURLToPath(new URL('../../bin/flexinfer.js', import.meta.url));
const sha256 = (d: Uint8Array): string => createHash('sha256').update(d).digest('hex');
const COMMIT = 'a'.repeat(40);

function pseudoRandom(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

// 3 MiB + 17: several chunks on the wire, not a round number.
const blobA = pseudoRandom(3 * 2 ** 20 + 17, 1);
const blobB = pseudoRandom(200_000, 2);
let modelFile = '';
let parts: Array<{ path: string; data: Uint8Array }> = [];
let hub: HubEmulator;
let n = 0;
const freshCache = (): string => join(dir, `cache-${n++}`);

/** Splits a GGUF file into `count` parts as gguf-split does (all metadata in part 1). */
async function splitFile(src: string, count: number, stem: string): Promise<Array<{ path: string; data: Uint8Array }>> {
  const f = readGgufSync(src);
  const bytes = readFileSync(src);
  const per = Math.ceil(f.tensors.length / count);
  const out: Array<{ path: string; data: Uint8Array }> = [];
  for (let i = 0; i < count; i++) {
    const ts = f.tensors.slice(i * per, (i + 1) * per);
    const meta = new Map(i === 0 ? f.metadata : []);
    meta.set('split.no', gv.u16(i));
    meta.set('split.count', gv.u16(count));
    meta.set('split.tensors.count', gv.i32(f.tensors.length));
    const name = `${stem}-${String(i + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.gguf`;
    const p = join(dir, name);
    await writeGguf(p, meta, ts.map((t) => ({ name: t.name, type: t.type, dims: t.dims, data: bytes.subarray(t.fileOffset, t.fileOffset + t.byteSize) })));
    out.push({ path: name, data: readFileSync(p) });
  }
  return out;
}

before(async () => {
  modelFile = join(dir, 'tiny.gguf');
  await synthesize(modelFile, 'tiny-15m', 'q8_0', { seed: 5 });
  parts = await splitFile(modelFile, 3, 'tiny-split');
  hub = await startHubEmulator([
    {
      repo: 'acme/tiny-GGUF',
      commit: COMMIT,
      files: [
        { path: 'tiny-Q4_K_M.gguf', data: blobA },
        { path: 'sub/tiny-Q8_0.gguf', data: blobB },
        { path: 'mmproj-tiny-f16.gguf', data: blobB.subarray(0, 1000) },
        ...parts.map((p) => ({ path: `split/${p.path}`, data: p.data })),
        { path: 'README.md', data: new TextEncoder().encode('# tiny') },
      ],
    },
    { repo: 'acme/gated', commit: 'b'.repeat(40), token: 'hf_secret', files: [{ path: 'g.gguf', data: blobB }] },
  ]);
});
after(async () => {
  await hub?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('hf: URIs in node-llama-cpp syntax, and errors that say what is expected', () => {
  assert.deepEqual(parseHubUri('hf:acme/m-GGUF/dir/m.Q4_K_M.gguf'), { repo: 'acme/m-GGUF', revision: 'main', file: 'dir/m.Q4_K_M.gguf' });
  assert.deepEqual(parseHubUri('hf:acme/m-GGUF:Q4_K_M#v1.0'), { repo: 'acme/m-GGUF', revision: 'v1.0', quant: 'Q4_K_M' });
  assert.deepEqual(parseHubUri('https://huggingface.co/acme/m/resolve/main/m.gguf'), { repo: 'acme/m', revision: 'main', file: 'm.gguf' });
  for (const bad of ['hf:acme', 'hf:acme/m/readme.md', 'hf:acme/m/../x.gguf', 'hf:acme/m#', 'hf:/m/x.gguf']) {
    assert.throws(() => parseHubUri(bad), InvalidOptionError, bad);
  }
  assert.equal(hubCacheDir(undefined, { HF_HOME: '/h' }), '/h/hub');
  assert.equal(hubCacheDir(undefined, { XDG_CACHE_HOME: '/x' }), '/x/huggingface/hub');
  assert.equal(hubCacheDir(undefined, { FLEXINFER_HUB_CACHE: '/f', HF_HUB_CACHE: '/c' }), '/f');
  assert.equal(hubCacheDir('/o', { FLEXINFER_HUB_CACHE: '/f' }), '/o');
});

test('QUANT picks the one file with that quantization; none or several is a clear error', () => {
  const files = ['m-Q4_K_M.gguf', 'm-Q4_K_S.gguf', 'm-q8_0.gguf', 'big-Q4_K_M-00001-of-00002.gguf', 'big-Q4_K_M-00002-of-00002.gguf'];
  assert.equal(chooseModelFile({ repo: 'a/b', revision: 'main', quant: 'Q8_0' }, files), 'm-q8_0.gguf');
  assert.equal(chooseModelFile({ repo: 'a/b', revision: 'main', quant: 'q4_k_s' }, files), 'm-Q4_K_S.gguf');
  assert.throws(() => chooseModelFile({ repo: 'a/b', revision: 'main', quant: 'Q4_K_M' }, files), /2 GGUF files match.*m-Q4_K_M\.gguf.*big-Q4_K_M-00001-of-00002\.gguf/);
  assert.throws(() => chooseModelFile({ repo: 'a/b', revision: 'main', quant: 'Q4_K' }, files), ModelNotFoundError);
  assert.throws(() => chooseModelFile({ repo: 'a/b', revision: 'main' }, files), /match/);
});

test('pull: redirect, verified sha256, hub cache layout; a second pull reads nothing', async () => {
  const cacheDir = freshCache();
  const before = hub.storage.requests;
  const r = await pullModel('hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf', { cacheDir, endpoint: hub.url });
  assert.equal(sha256(readFileSync(r.path)), sha256(blobA));
  assert.equal(r.commit, COMMIT);
  assert.ok(lstatSync(r.path).isSymbolicLink());
  const repoDir = join(cacheDir, 'models--acme--tiny-GGUF');
  assert.equal(r.path, join(repoDir, 'snapshots', COMMIT, 'tiny-Q4_K_M.gguf'));
  assert.equal(readlinkSync(r.path), join('..', '..', 'blobs', sha256(blobA)));
  assert.equal(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), COMMIT);
  assert.equal(hub.storage.requests, before + 1);
  assert.equal(r.files[0]!.downloaded, true);

  const again = await pullModel('hf:acme/tiny-GGUF:Q4_K_M', { cacheDir, endpoint: hub.url });
  assert.equal(again.path, r.path);
  assert.equal(again.files[0]!.downloaded, false);
  assert.equal(hub.storage.requests, before + 1, 'the cached blob is not downloaded again');
  // Nested paths; projector files are not model candidates.
  const q8 = await pullModel('hf:acme/tiny-GGUF:q8_0', { cacheDir, endpoint: hub.url });
  assert.equal(sha256(readFileSync(q8.path)), sha256(blobB));
  assert.ok(q8.path.endsWith(join(COMMIT, 'sub', 'tiny-Q8_0.gguf')));
});

test('a dropped connection is resumed with Range and gives the same sha256', async () => {
  const cacheDir = freshCache();
  const sent0 = hub.storage.bytesSent;
  const ranges0 = hub.storage.ranges.length;
  hub.dropNext(2, 1_000_000);
  const r = await pullModel('hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf', { cacheDir, endpoint: hub.url, retryDelayMs: 10 });
  assert.equal(sha256(readFileSync(r.path)), sha256(blobA));
  const ranges = hub.storage.ranges.slice(ranges0);
  assert.equal(ranges.length, 2, 'two resumed requests');
  // Each resume starts where the bytes on disk end: it keeps what arrived before the drop (more
  // than nothing, at most the 1,000,000 bytes the storage sent) and asks only for the rest. The
  // storage may send a little more than the file in total: bytes it wrote into the socket that
  // never reached the client before the cut (undici drops what it had not handed over yet, more
  // of it on a loaded machine) are asked for again; that is the only repetition allowed.
  const starts = ranges.map((s) => Number(/bytes=(\d+)-/.exec(s)![1]));
  const kept = [starts[0]!, starts[1]! - starts[0]!];
  assert.ok(kept.every((k) => k > 0 && k <= 1_000_000), `range starts ${starts}`);
  assert.equal(hub.storage.bytesSent - sent0, blobA.length + (1_000_000 - kept[0]!) + (1_000_000 - kept[1]!));
});

test('an interrupted pull keeps its partial file; the next pull resumes it', async () => {
  const cacheDir = freshCache();
  hub.dropNext(1, 1_500_000);
  await assert.rejects(pullModel('hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf', { cacheDir, endpoint: hub.url, retries: 0 }), (e: unknown) => {
    assert.ok(e instanceof DownloadError && e.code === 'NETWORK', String(e));
    assert.match((e as Error).message, /run the same pull again to resume/);
    return true;
  });
  const partial = join(cacheDir, 'models--acme--tiny-GGUF', 'blobs', `${sha256(blobA)}.incomplete`);
  const kept = statSync(partial).size;
  assert.ok(kept > 0 && kept < blobA.length, `partial ${kept}`);
  const sent0 = hub.storage.bytesSent;
  const r = await pullModel('hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf', { cacheDir, endpoint: hub.url });
  assert.equal(hub.storage.bytesSent - sent0, blobA.length - kept, 'only the missing bytes are fetched');
  assert.equal(sha256(readFileSync(r.path)), sha256(blobA));
  assert.equal(existsSync(partial), false);
});

test('a corrupt download is refused, set aside, and a later pull downloads it anew', async () => {
  const cacheDir = freshCache();
  hub.corrupt = true;
  try {
    await assert.rejects(pullModel('hf:acme/tiny-GGUF/sub/tiny-Q8_0.gguf', { cacheDir, endpoint: hub.url }), (e: unknown) => {
      assert.ok(e instanceof DownloadError && e.code === 'CHECKSUM', String(e));
      assert.match((e as Error).message, new RegExp(`the hub says ${sha256(blobB)}`));
      return true;
    });
  } finally {
    hub.corrupt = false;
  }
  const blobs = join(cacheDir, 'models--acme--tiny-GGUF', 'blobs');
  assert.equal(existsSync(join(blobs, sha256(blobB))), false, 'no corrupt blob under the real name');
  assert.ok(existsSync(join(blobs, `${sha256(blobB)}.corrupt`)));
  const r = await pullModel('hf:acme/tiny-GGUF/sub/tiny-Q8_0.gguf', { cacheDir, endpoint: hub.url });
  assert.equal(sha256(readFileSync(r.path)), sha256(blobB));
});

test('gated repositories need HF_TOKEN; the token never goes to the storage host', async () => {
  const cacheDir = freshCache();
  await assert.rejects(pullModel('hf:acme/gated/g.gguf', { cacheDir, endpoint: hub.url, token: '' }), (e: unknown) => e instanceof DownloadError && e.code === 'UNAUTHORIZED' && /HF_TOKEN/.test((e as Error).message));
  await assert.rejects(pullModel('hf:acme/gated/g.gguf', { cacheDir, endpoint: hub.url, token: 'wrong' }), /was refused/);
  hub.storage.sawAuthorization = false;
  const r = await pullModel('hf:acme/gated/g.gguf', { cacheDir, endpoint: hub.url, token: 'hf_secret' });
  assert.equal(sha256(readFileSync(r.path)), sha256(blobB));
  assert.equal(hub.storage.sawAuthorization, false);
  await assert.rejects(pullModel('hf:acme/nope/x.gguf', { cacheDir, endpoint: hub.url }), (e: unknown) => e instanceof DownloadError && e.code === 'NOT_FOUND');
  await assert.rejects(pullModel('hf:acme/tiny-GGUF/missing.gguf', { cacheDir, endpoint: hub.url }), /file does not exist/);
  await assert.rejects(pullModel('hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf#v9', { cacheDir, endpoint: hub.url }), /revision does not exist/);
});

test('an unreachable hub falls back to the cache; offline mode never asks the network', async () => {
  const cacheDir = freshCache();
  const r = await pullModel('hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf', { cacheDir, endpoint: hub.url });
  const dead = 'http://127.0.0.1:9'; // discard port: connection refused
  const cached = await pullModel('hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf', { cacheDir, endpoint: dead });
  assert.equal(cached.path, r.path);
  assert.equal(cached.fromCache, true);
  const off = await pullModel('hf:acme/tiny-GGUF:Q4_K_M', { cacheDir, endpoint: dead, offline: true });
  assert.equal(off.path, r.path);
  await assert.rejects(pullModel('hf:acme/tiny-GGUF/sub/tiny-Q8_0.gguf', { cacheDir, endpoint: dead }), (e: unknown) => e instanceof DownloadError && e.code === 'NETWORK');
  await assert.rejects(pullModel('hf:acme/tiny-GGUF/sub/tiny-Q8_0.gguf', { cacheDir, offline: true }), ModelNotFoundError);
});

test('a split model is pulled part by part, merged, and generates what the unsplit file does', async () => {
  const cacheDir = freshCache();
  // A part on its own is refused with the way out.
  const partPath = join(dir, parts[1]!.path);
  await assert.rejects(loadModel(partPath), (e: unknown) => e instanceof InvalidGgufError && /part 2 of 3.*flexinfer convert/.test((e as Error).message));

  const m = await loadModel('hf:acme/tiny-GGUF/split/tiny-split-00001-of-00003.gguf', { threads: 2, parallel: 1, pull: { cacheDir, endpoint: hub.url } });
  const ref = await loadModel(modelFile, { threads: 2, parallel: 1 });
  try {
    const opts = { temperature: 0, maxTokens: 8, repeatPenalty: 1 };
    assert.deepEqual((await m.complete('Once upon a time', opts)).tokens, (await ref.complete('Once upon a time', opts)).tokens);
  } finally {
    await m.dispose();
    await ref.dispose();
  }
  const merged = readGgufSync(join(cacheDir, 'models--acme--tiny-GGUF', 'merged', COMMIT, 'split', 'tiny-split.gguf'));
  const orig = readGgufSync(modelFile);
  assert.deepEqual(merged.tensors.map((t) => t.name), orig.tensors.map((t) => t.name));
  assert.equal([...merged.metadata.keys()].filter((k) => k.startsWith('split.')).length, 0);
  const a = readFileSync(modelFile);
  const b = readFileSync(merged.path);
  for (const t of orig.tensors) {
    const u = merged.tensor(t.name)!;
    assert.equal(sha256(b.subarray(u.fileOffset, u.fileOffset + u.byteSize)), sha256(a.subarray(t.fileOffset, t.fileOffset + t.byteSize)), t.name);
  }
});

/** Runs the CLI without blocking this process (the hub emulator answers from this event loop). */
function cliAsync(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

test('CLI: flexinfer pull prints the path; run takes hf: URIs; bad input is one line', async () => {
  const cacheDir = freshCache();
  const env = { ...process.env, HF_ENDPOINT: hub.url, FLEXINFER_HUB_CACHE: cacheDir, HF_TOKEN: '' };
  const cli = (...args: string[]) => cliAsync(env, ...args);
  const p = await cli('pull', 'hf:acme/tiny-GGUF/split/tiny-split-00001-of-00003.gguf');
  assert.equal(p.status, 0, p.stderr);
  const path = p.stdout.trim();
  assert.ok(existsSync(path) && path.startsWith(cacheDir), path);
  const r = await cli('run', 'hf:acme/tiny-GGUF/split/tiny-split-00001-of-00003.gguf', '-p', 'Hello', '-n', '3', '--temp', '0', '--json', '--threads', '1');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).tokens.length, 3);
  for (const [args, re] of [
    [['pull', 'hf:acme'], /expected hf:OWNER\/REPO/],
    [['pull', 'model.gguf'], /not a hub URI/],
    [['pull', 'hf:acme/gated/g.gguf'], /set \$HF_TOKEN/],
    [['pull', 'hf:acme/tiny-GGUF:Q5_K_M'], /no GGUF model file with 'Q5_K_M'.*tiny-Q4_K_M\.gguf/],
  ] as const) {
    const b = await cli(...args);
    assert.notEqual(b.status, 0);
    assert.match(b.stderr, re);
    assert.doesNotMatch(b.stderr, /internal error|\n\s+at /, 'no stack trace');
  }
});

test('flexinfer convert merges split parts given the first one', async () => {
  const { convertAlign } = await import('../cli/convert.js');
  const out = join(dir, 'converted.gguf');
  await convertAlign(join(dir, parts[0]!.path), out, 4096);
  const merged = readGgufSync(out);
  const orig = readGgufSync(modelFile);
  assert.equal(merged.alignment, 4096);
  assert.equal(merged.tensors.length, orig.tensors.length);
  const a = readFileSync(modelFile);
  const b = readFileSync(out);
  for (const t of orig.tensors) {
    const u = merged.tensor(t.name)!;
    assert.equal(u.fileOffset % 4096, 0);
    assert.ok(Buffer.compare(a.subarray(t.fileOffset, t.fileOffset + t.byteSize), b.subarray(u.fileOffset, u.fileOffset + u.byteSize)) === 0, t.name);
  }
});
