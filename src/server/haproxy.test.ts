/**
 * Session affinity measured with a real HAProxy (deploy/haproxy/haproxy.cfg) in front of 3 real
 * `flexinfer serve` replicas of a tiny synthetic model, all on loopback.
 *
 * - 30 conversations of 5 turns go through HAProxy hashing X-Session-Id (consistent hashing),
 *   then 30 other conversations through the same config with `balance roundrobin` (and its
 *   stick table removed). For turns
 *   2-5 the share of prompt tokens served from the prefix cache (usage.prompt_tokens_details.
 *   cached_tokens) is reported, with the median time to first token; affinity must reach 80%.
 * - 30 more conversations with affinity; halfway through, one replica gets SIGTERM. No request
 *   may fail (HAProxy retries the 503s of the draining replica elsewhere), the replica exits 0,
 *   only its conversations move, and each moved conversation recomputes its first turn on the
 *   new replica and hits the cache again on the next ones.
 * Runs when `haproxy` is on PATH (.ci/run installs it); otherwise the test reports it skipped.
 * Figures go to $FLEXINFER_HAPROXY_OUT when set (JSON), and to the test's diagnostics.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { synthesize } from '../synth/synth.js';
import { startServe, type ServeProcess } from './serve-testing.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONFIG = join(ROOT, 'deploy', 'haproxy', 'haproxy.cfg');
const MODEL_ID = 'tiny';
const NUM_CONVERSATIONS = 30;
const NUM_TURNS = 5;
const haproxyMissing = spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).error !== undefined;
const SKIP = haproxyMissing ? 'haproxy is not on PATH: the HAProxy session-affinity test did NOT run (apt-get install haproxy; .ci/run does)' : false;

interface Replica extends ServeProcess {
  name: string;
}

let dir: string;
let modelPath: string;
const replicas: Replica[] = [];
let haproxy: { proc: ChildProcess; base: string; stats: string } | null = null;

async function freePort(): Promise<number> {
  const srv = netServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function startReplica(name: string): Promise<Replica> {
  return { name, ...(await startServe(modelPath, ['--alias', MODEL_ID, '--threads', '1', '--ctx-size', '8192', '--parallel', '4', '--drain-timeout', '30'])) };
}

/** Starts HAProxy on the deploy config (balance line swapped for round robin when asked). */
async function startHaproxy(balance: 'affinity' | 'roundrobin'): Promise<{ proc: ChildProcess; base: string; stats: string }> {
  let cfg = readFileSync(CONFIG, 'utf8');
  if (balance === 'roundrobin') {
    // Same config without affinity: round robin, and no stick table.
    const swapped = cfg.replace(/^(\s*)balance hash .*$/m, '$1balance roundrobin').replace(/^\s*stick(-table)? .*\n/gm, '');
    assert.ok(/balance roundrobin/.test(swapped) && !/^\s*stick/m.test(swapped), 'the config has balance hash and stick lines');
    cfg = swapped;
  }
  const cfgPath = join(dir, `haproxy-${balance}.cfg`);
  writeFileSync(cfgPath, cfg);
  const [port, statsPort] = [await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = { ...process.env, HAPROXY_BIND: `127.0.0.1:${port}`, HAPROXY_STATS_BIND: `127.0.0.1:${statsPort}` };
  replicas.forEach((r, i) => (env[`FLEXINFER_REPLICA_${i + 1}`] = r.addr));
  const proc = spawn('haproxy', ['-db', '-f', cfgPath], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const base = `http://127.0.0.1:${port}`;
  // Up when the frontend answers and every server passed its health checks (rise 2).
  for (let i = 0; ; i++) {
    assert.ok(i < 200 && proc.exitCode === null, `haproxy did not come up:\n${err}`);
    await new Promise((r) => setTimeout(r, 50));
    const up = await serverStates(`http://127.0.0.1:${statsPort}`).catch(() => null);
    if (up && Object.values(up).filter((s) => s === 'UP').length === replicas.length) break;
  }
  return { proc, base, stats: `http://127.0.0.1:${statsPort}` };
}

async function stopHaproxy(): Promise<void> {
  if (!haproxy) return;
  const done = new Promise((r) => haproxy!.proc.on('exit', r));
  haproxy.proc.kill('SIGTERM');
  await done;
  haproxy = null;
}

/** HAProxy's CSV stats rows of backend `flexinfer`, by server name (pxname,svname,...). */
async function statsRows(stats: string): Promise<Array<Record<string, string>>> {
  const text = await (await fetch(`${stats}/stats;csv`)).text();
  const [head, ...lines] = text.trim().split('\n');
  const cols = head!.replace(/^# /, '').split(',');
  return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [cols[i]!, v]))).filter((r) => r.pxname === 'flexinfer');
}

async function serverStates(stats: string): Promise<Record<string, string>> {
  return Object.fromEntries((await statsRows(stats)).filter((r) => r.svname !== 'BACKEND').map((r) => [r.svname!, r.status!]));
}

const STYLE_GUIDE =
  'Answer in plain words, one or two short sentences. Be kind and direct. If you do not know, say so. ' +
  'Never invent facts, names or numbers. Prefer concrete examples over abstract talk. Keep the tone warm but brief, ' +
  'and do not repeat the question back to the user.';

interface Turn {
  conv: number;
  turn: number;
  prompt: number;
  cached: number;
  ttftMs: number;
  server: string;
}

/**
 * Runs `NUM_CONVERSATIONS` conversations of `NUM_TURNS` turns, all conversations at once, each
 * turn after the previous one. `onProgress(done)` runs after each completed request.
 */
async function converse(base: string, tag: string, onProgress: (done: number) => Promise<void> | void = () => {}): Promise<Turn[]> {
  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
  const turns: Turn[] = [];
  let done = 0;
  await Promise.all(
    Array.from({ length: NUM_CONVERSATIONS }, async (_, conv) => {
      // Each conversation opens differently, so only its own history can be cached.
      // A system prompt of ~100 tokens, questions of ~15, answers of up to 24.
      const system = `Session ${tag}-${conv}. You are assistant number ${conv * 7919 + tag.length} of a small team. ${STYLE_GUIDE}`;
      const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'system', content: system }];
      for (let turn = 1; turn <= NUM_TURNS; turn++) {
        messages.push({ role: 'user', content: `Turn ${turn}: what about the number ${conv + turn}?` });
        const t0 = performance.now();
        const { data: stream, response } = await client.chat.completions
          .create({ model: MODEL_ID, messages, max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true } }, { headers: { 'X-Session-Id': `${tag}-${conv}` } })
          .withResponse();
        let text = '';
        let ttft = -1;
        let usage: OpenAI.CompletionUsage | undefined;
        for await (const c of stream) {
          const piece = c.choices[0]?.delta?.content;
          if (piece) {
            if (ttft < 0) ttft = performance.now() - t0;
            text += piece;
          }
          if (c.usage) usage = c.usage;
        }
        assert.ok(usage, 'usage chunk');
        turns.push({ conv, turn, prompt: usage.prompt_tokens, cached: usage.prompt_tokens_details?.cached_tokens ?? 0, ttftMs: ttft < 0 ? performance.now() - t0 : ttft, server: response.headers.get('x-served-by') ?? '?' });
        messages.push({ role: 'assistant', content: text });
        await onProgress(++done);
      }
    }),
  );
  return turns;
}

function summarize(turns: Turn[]): { cachedShare: number; medianTtftMs: number; requests: number } {
  const later = turns.filter((t) => t.turn >= 2);
  const cached = later.reduce((a, t) => a + t.cached, 0);
  const prompt = later.reduce((a, t) => a + t.prompt, 0);
  const ttfts = later.map((t) => t.ttftMs).sort((a, b) => a - b);
  return { cachedShare: cached / prompt, medianTtftMs: ttfts[Math.floor(ttfts.length / 2)]!, requests: turns.length };
}

before(async () => {
  if (SKIP) return;
  dir = mkdtempSync(join(tmpdir(), 'flexinfer-haproxy-'));
  modelPath = join(dir, 'tiny.gguf');
  await synthesize(modelPath, 'tiny-15m', 'q8_0', { seed: 14 });
  replicas.push(...(await Promise.all(['r1', 'r2', 'r3'].map(startReplica))));
});

after(async () => {
  await stopHaproxy();
  for (const r of replicas) if (r.proc.exitCode === null) r.proc.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const figures: Record<string, unknown> = {};

test('HAProxy affinity vs round robin: cached share of turns 2-5 and median TTFT', { skip: SKIP }, async (t) => {
  haproxy = await startHaproxy('affinity');
  const affinity = await converse(haproxy.base, 'aff');
  await stopHaproxy();
  haproxy = await startHaproxy('roundrobin');
  const rr = await converse(haproxy.base, 'rr');
  await stopHaproxy();
  // Every conversation stayed on one replica with affinity; round robin spread them.
  for (let c = 0; c < NUM_CONVERSATIONS; c++) assert.equal(new Set(affinity.filter((x) => x.conv === c).map((x) => x.server)).size, 1, `conversation ${c} moved`);
  const a = summarize(affinity);
  const r = summarize(rr);
  figures.affinity = a;
  figures.roundRobin = r;
  t.diagnostic(`affinity: ${(a.cachedShare * 100).toFixed(1)}% of turn 2-5 prompt tokens cached, median TTFT ${a.medianTtftMs.toFixed(1)} ms`);
  t.diagnostic(`round robin: ${(r.cachedShare * 100).toFixed(1)}% cached, median TTFT ${r.medianTtftMs.toFixed(1)} ms`);
  assert.ok(a.cachedShare >= 0.8, `affinity cached share ${a.cachedShare}`);
  assert.ok(r.cachedShare < a.cachedShare - 0.2, `round robin ${r.cachedShare} vs affinity ${a.cachedShare}`);
});

test('HAProxy: a replica drained (SIGTERM) halfway through: no request fails, its conversations move and hit the cache again', { skip: SKIP }, async (t) => {
  haproxy = await startHaproxy('affinity');
  const victim = replicas[1]!;
  let drainedAt = -1;
  const turns = await converse(haproxy.base, 'drain', (done) => {
    if (done === (NUM_CONVERSATIONS * NUM_TURNS) / 2) {
      drainedAt = done;
      victim.proc.kill('SIGTERM');
    }
  });
  assert.ok(drainedAt > 0);
  assert.equal(turns.length, NUM_CONVERSATIONS * NUM_TURNS, 'every request answered');
  assert.equal(await victim.exit, 0, victim.stderr());
  const rows = await statsRows(haproxy.stats);
  const backend = rows.find((r) => r.svname === 'BACKEND')!;
  figures.drain = { retries: Number(backend.wretr), redispatches: Number(backend.wredis) };
  t.diagnostic(`drain: HAProxy retried ${backend.wretr} and redispatched ${backend.wredis} requests`);
  let moved = 0;
  for (let c = 0; c < NUM_CONVERSATIONS; c++) {
    const conv = turns.filter((x) => x.conv === c).sort((x, y) => x.turn - y.turn);
    const servers = conv.map((x) => x.server);
    const trace = conv.map((x) => `${x.server}:${x.cached}/${x.prompt}`).join(' ');
    if (servers[0] !== victim.name) {
      assert.ok(servers.every((s) => s === servers[0]), `conversation ${c} moved though its replica stayed: ${trace}`);
      continue;
    }
    const k = servers.findIndex((s) => s !== victim.name);
    if (k < 0) continue; // finished before the drain
    moved++;
    assert.ok(servers.slice(k).every((s) => s === servers[k]), `conversation ${c}: ${trace}`);
    // First turn on the new replica: its history is not there (only a shared template prefix may be).
    assert.ok(conv[k]!.cached < conv[k - 1]!.prompt, `conversation ${c} turn ${k + 1} recomputes: ${trace}`);
    // Later turns there: the previous turn's prompt is cached again.
    for (let j = k + 1; j < conv.length; j++) assert.ok(conv[j]!.cached >= conv[j - 1]!.prompt, `conversation ${c} turn ${j + 1} hits again: ${trace}`);
  }
  assert.ok(moved > 0, 'some conversations were on the drained replica');
  figures.moved = moved;
  t.diagnostic(`drain: ${moved} conversations moved off ${victim.name}`);
  if (process.env.FLEXINFER_HAPROXY_OUT) writeFileSync(process.env.FLEXINFER_HAPROXY_OUT, JSON.stringify(figures, null, 2));
});
