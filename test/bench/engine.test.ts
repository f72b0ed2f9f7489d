import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildEngine, starling } from '../../bench/startup/engine.js';

test('the benchmark snapshot of Starling, compiled outside the repository, runs (ESM, with its packages)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'starling-engine-'));
  try {
    const engine = await buildEngine(fileURLToPath(new URL('../..', import.meta.url)), join(dir, 'engine'));
    assert.match(engine.version, /^commit [0-9a-f]{12}$/);
    assert.match(await starling(engine, ['convert', '--help']), /estargz/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
