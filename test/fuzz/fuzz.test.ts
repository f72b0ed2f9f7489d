// The CI fuzz run: every parser of untrusted bytes (footers, TOC decoders of both formats, tar-split,
// both tar readers and both writers, references, OCI documents) under a seeded mutation loop for a
// bounded time (FUZZ_SECONDS in total, default 45; FUZZ_SEED to vary the run). The longer run is
// scripts/fuzz.sh. Every input must parse or be refused with the target's own error class.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatStats, fuzzTarget } from './engine.js';
import { buildTargets } from './targets.js';

const totalSeconds = Number(process.env.FUZZ_SECONDS ?? 45);
const seed = Number(process.env.FUZZ_SEED ?? 20261122);
const targets = await buildTargets();

let executions = 0;
for (const target of targets) {
  test(`fuzz ${target.name}`, async (t) => {
    const stats = await fuzzTarget(target, { seconds: totalSeconds / targets.length, seed, minExecutions: 200 });
    executions += stats.executions;
    t.diagnostic(formatStats(stats));
    const report = stats.violations.map((v) => `${v.kind}: ${v.detail}\ninput (base64): ${v.input.toString('base64').slice(0, 2000)}`);
    assert.equal(stats.violations.length, 0, `seed ${seed}:\n${report.join('\n\n')}`);
    // The run must get past the first checks: some inputs accepted or refused in more than one way.
    assert.ok(stats.accepted > 0 || stats.refusals.size > 0);
  });
}

test('fuzz executions in total', (t) => {
  t.diagnostic(`${executions} executions over ${targets.length} targets, seed ${seed}`);
  assert.ok(executions >= targets.length * 200);
});
