/** serve sweep, MoE rows: one load's expert figures from two stats() snapshots, checked by hand. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expertRow, expertTableLines } from './serve-experts.js';

test('expertRow: differences of the expert counters per token, per pass and per layer step (hand-computed)', () => {
  const before = { bytesRead: 1000, lookups: 96, hits: 40, steps: 12, passes: 1, ioWaitSec: 0.5, ioInflightSec: 1 };
  // 4 passes of a 12-layer model: 48 layer steps needing 30 distinct experts each; 1200 of the
  // 1440 found; 6e9 bytes read with reads in flight for 2 s; 0.2 s waited on them; 32 tokens.
  const after = { bytesRead: 1000 + 6e9, lookups: 96 + 1440, hits: 40 + 1200, steps: 12 + 48, passes: 5, ioWaitSec: 0.7, ioInflightSec: 3 };
  assert.deepEqual(expertRow(before, after, 32), {
    hit_rate: 0.833,
    bytes_per_token: 187500000,
    passes: 4,
    experts_per_layer_step: 30,
    bytes_per_pass: 1500000000,
    io_wait_ms_per_pass: 50,
    inflight_ms_per_pass: 500,
    read_gbps_in_flight: 3,
  });
  // nothing ran: zeros, never NaN
  const none = expertRow(before, before, 0);
  assert.ok(Object.values(none).every((v) => v === 0), JSON.stringify(none));
  const lines = expertTableLines('elastic', [{ streams: 8, experts: expertRow(before, after, 32) }, { streams: 1 }]);
  assert.match(lines, /^experts elastic 8x: hit 83\.3%, 179 MiB\/token, 30\.0 experts\/layer step, 1431 MiB\/pass over 4 passes, I\/O wait 50\.0 ms\/pass, reads in flight 500\.0 ms\/pass at 3\.00 GB\/s\n$/);
  assert.equal(expertTableLines('static', [{ streams: 1 }]), '', 'a dense file has no expert lines');
});
