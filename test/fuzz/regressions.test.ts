// Every input the fuzzer (or a hostile-layer test) once broke a parser with, checked in under
// regressions/<target>/, replayed through its target: it must now parse or be refused cleanly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkOne } from './engine.js';
import { buildTargets } from './targets.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), 'regressions');
const targets = new Map((await buildTargets()).map((t) => [t.name, t]));

test('every regression directory names a fuzz target', () => {
  for (const name of readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory())) {
    assert.ok(targets.has(name.name), `regressions/${name.name} is not a target`);
  }
});

for (const [name, target] of targets) {
  const files = existsSync(join(dir, name)) ? readdirSync(join(dir, name)).filter((f) => f.endsWith('.bin')) : [];
  for (const file of files) {
    test(`regression ${name}/${file}`, async () => {
      const r = await checkOne(target, readFileSync(join(dir, name, file)));
      assert.ok(!('kind' in r), 'kind' in r ? `${r.kind}: ${r.detail}` : '');
    });
  }
}
