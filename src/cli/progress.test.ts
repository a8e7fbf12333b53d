import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createProgress } from './progress.js';

function fakeStream(isTTY: boolean) {
  const out: string[] = [];
  const stream = { isTTY, columns: 120, write: (s: string) => (out.push(s), true) } as unknown as NodeJS.WriteStream;
  return { stream, out };
}

test('progress draws one line with bytes, rate and ETA on a TTY, and ends it with a newline', () => {
  const { stream, out } = fakeStream(true);
  const p = createProgress('synth x', 4 * 1024 * 1024, stream);
  p.update(1024 * 1024); // first update draws
  p.update(1024 * 1024 + 1); // within 100 ms: throttled
  p.update(4 * 1024 * 1024); // completion always draws
  p.done();
  p.done(); // idempotent
  assert.equal(out.length, 3 + 1);
  assert.match(out[0]!, /^\rsynth x \[#{6}\.{18}\] 1\.0 MiB \/ 4\.0 MiB {2}[\d.]+ MB\/s {2}ETA \S+\x1b\[K$/);
  assert.match(out[1]!, /\[#{24}\] 4\.0 MiB \/ 4\.0 MiB/);
  assert.equal(out[3], '\n');
});

test('progress prints nothing when the stream is not a TTY', () => {
  const { stream, out } = fakeStream(false);
  const p = createProgress('synth', 100, stream);
  p.update(50);
  p.done();
  assert.deepEqual(out, []);
});
