import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTool } from '../../bench/startup/build.js';
import { buildEngine, starling } from '../../bench/startup/engine.js';

test('the benchmark snapshot of Starling, compiled outside the repository, runs (ESM, with its packages)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'starling-engine-'));
  try {
    const engine = await buildEngine(fileURLToPath(new URL('../..', import.meta.url)), join(dir, 'engine'));
    assert.match(engine.version, /^commit [0-9a-f]{12}$/);
    assert.match(await starling(engine, ['convert', '--help']), /estargz/);
    // The native addon (native/build/, not in git) loads from the snapshot as from the package.
    const probe = "const m = await import('./dist/format/native.js'); console.log(m.nativeAddon().zlibVersion)";
    assert.match(await runTool(process.execPath, ['--input-type=module', '-e', probe], { cwd: join(dir, 'engine') }), /^\d+\.\d+/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("the snapshot's snapshotter serves: it finds its .proto files (src/snapshotter/ beside dist/, as in the package)", { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'starling-engine-'));
  try {
    const engine = await buildEngine(fileURLToPath(new URL('../..', import.meta.url)), join(dir, 'engine'));
    const child = spawn(engine.argv[0]!, [...engine.argv.slice(1), 'snapshotter', '--address', join(dir, 'sn.sock'), '--root', join(dir, 'root')], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, STARLING_RUN_DIR: join(dir, 'run') },
    });
    let log = '';
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const exited = once(child, 'exit');
    try {
      await Promise.race([
        new Promise<void>((resolve) => child.stderr.on('data', () => log.includes('serving on') && resolve())),
        exited.then(([code]) => assert.fail(`the snapshotter exited (${code}): ${log}`)),
      ]);
    } finally {
      child.kill('SIGTERM');
    }
    const [code] = await exited;
    assert.equal(code, 0, log);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
