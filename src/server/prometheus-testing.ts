/**
 * A strict parser of the Prometheus text format for tests: every line is a HELP / TYPE comment
 * or `name{labels} value`, every sample's family has a TYPE line before it, histogram buckets
 * are cumulative and end with le="+Inf" equal to _count.
 * @internal
 */
import assert from 'node:assert/strict';

/** Samples by `name{labels}` exactly as written (labels in the server's order). */
export type Samples = Map<string, number>;

export function parsePrometheus(text: string): Samples {
  const out: Samples = new Map();
  const typed = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const t = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
    if (t) {
      assert.ok(!typed.has(t[1]!), `${t[1]} typed twice`);
      typed.set(t[1]!, t[2]!);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_]+="(?:[^"\\]|\\.)*"(,[a-zA-Z_]+="(?:[^"\\]|\\.)*")*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    const name = m[1]!;
    const family = typed.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    assert.ok(typed.has(family), `${name} has no # TYPE line before it`);
    if (family !== name) assert.equal(typed.get(family), 'histogram', `${name}: suffix on a ${typed.get(family)}`);
    const v = Number(m[4]);
    assert.ok(Number.isFinite(v), line);
    out.set(name + (m[2] ?? ''), v);
  }
  // Histograms: cumulative buckets, +Inf = count.
  for (const [family, type] of typed) {
    if (type !== 'histogram') continue;
    const buckets = [...out].filter(([k]) => k.startsWith(`${family}_bucket{`));
    let prev = 0;
    for (const [k, v] of buckets) {
      assert.ok(v >= prev, `${k}: buckets must be cumulative`);
      prev = v;
    }
    const inf = buckets.find(([k]) => k.includes('le="+Inf"'));
    assert.ok(inf, `${family}: no +Inf bucket`);
    const count = [...out].find(([k]) => k.startsWith(`${family}_count`));
    assert.ok(count && count[1] === inf[1], `${family}: +Inf bucket ${inf[1]} != count ${count?.[1]}`);
  }
  return out;
}

/** The value of a vllm:* series of model `model` (labels written as the server writes them). */
export function vllm(samples: Samples, name: string, model: string, extra = ''): number {
  const key = `vllm:${name}{model_name="${model}"${extra ? `,${extra}` : ''}}`;
  const v = samples.get(key);
  assert.ok(v !== undefined, `missing ${key}`);
  return v;
}
