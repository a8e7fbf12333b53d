/** serve sweep, MoE rows: one load's expert figures from two stats() snapshots, checked by hand. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expertRow, expertTableLines } from './serve-experts.js';

const stats = (experts: Record<string, number>, streamed = 0) => ({ weights: { experts, streaming: { bytesRead: streamed } } });

test('expertRow: differences of the expert counters per token, per pass and per layer step (hand-computed)', () => {
  const before = stats({ bytesRead: 1000, lookups: 96, hits: 40, prefetchUsed: 10, steps: 12, passes: 1, ioWaitSec: 0.5, ioBusySec: 1, ioInflightSec: 20 });
  // 4 passes of a 12-layer model: 48 layer steps needing 30 distinct experts each; 1200 of the
  // 1440 found, 240 of those prefetched for the step; 6e9 bytes read with reads in flight for
  // 2 s (24 deep on average: 48 read-seconds); 0.2 s waited on them; 32 tokens generated.
  const after = stats({ bytesRead: 1000 + 6e9, lookups: 96 + 1440, hits: 40 + 1200, prefetchUsed: 10 + 240, steps: 12 + 48, passes: 5, ioWaitSec: 0.7, ioBusySec: 3, ioInflightSec: 68 });
  const row = expertRow(before, after, 32);
  assert.deepEqual(row, {
    hit_rate: 0.833,
    cached_hit_rate: 0.667,
    bytes_per_token: 187500000,
    passes: 4,
    experts_per_layer_step: 30,
    bytes_per_pass: 1500000000,
    io_wait_ms_per_pass: 50,
    busy_ms_per_pass: 500,
    reads_in_flight: 24,
    read_gbps_in_flight: 3,
  });
  assert.equal(expertRow(before, before, 0), undefined, 'no pass: no row');
  assert.equal(expertRow({ weights: { streaming: { bytesRead: 0 } } }, { weights: { streaming: { bytesRead: 5 } } }, 4), undefined, 'a dense model has no expert row');
  const lines = expertTableLines('elastic', [{ streams: 8, experts: row! }, { streams: 1 }]);
  assert.match(lines, /^experts elastic 8x: hit 83\.3% \(cached 66\.7%\), 179 MiB\/token, 30\.0 experts\/layer step, 1431 MiB\/pass over 4 passes, I\/O wait 50\.0 ms\/pass, reads in flight 500\.0 ms\/pass \(24\.0 deep\) at 3\.00 GB\/s\n$/);
  assert.equal(expertTableLines('static', [{ streams: 1 }]), '', 'a dense file has no expert lines');
});
