// The long, by-hand fuzz run (scripts/fuzz.sh): every target for SECONDS each (or only the named
// ones), violating inputs saved under test/fuzz/crashes/ to become regression inputs.
//   node --import tsx test/fuzz/run.ts [--seconds N] [--seed S] [--target NAME]...
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatStats, fuzzTarget } from './engine.js';
import { buildTargets } from './targets.js';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '60' }, seed: { type: 'string' }, target: { type: 'string', multiple: true } },
});
const seconds = Number(values.seconds);
const seed = values.seed !== undefined ? Number(values.seed) : Date.now() >>> 0;
const saveDir = join(dirname(fileURLToPath(import.meta.url)), 'crashes');
const targets = (await buildTargets()).filter((t) => !values.target || values.target.includes(t.name));
console.log(`fuzz: seed ${seed}, ${seconds} s per target, ${targets.length} targets`);
let total = 0;
let violations = 0;
for (const t of targets) {
  const s = await fuzzTarget(t, { seconds, seed, saveDir, maxViolations: 20 });
  total += s.executions;
  violations += s.violations.length;
  console.log(formatStats(s));
  for (const v of s.violations) console.log(`  ${v.kind}: ${v.detail}`);
}
console.log(`fuzz: ${total} executions, ${violations} violations (seed ${seed})`);
process.exitCode = violations > 0 ? 1 : 0;
