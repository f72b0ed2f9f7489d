// daemonProcess's `gated` (the spare a mount daemon leaves): the process is made at once, but the
// program starts in it only when its maker opens the gate or has exited, as the same process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const fixture = fileURLToPath(new URL('./gated-fixture.ts', import.meta.url));

/** Runs the fixture: a gated process waits in a shell; `open(maker)` opens its gate; its pid must end up in the marker. */
async function gatedRun(open: (maker: ChildProcess) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'starling-gated-'));
  try {
    const marker = join(dir, 'started');
    const maker = spawn(process.execPath, ['--import', 'tsx', fixture, marker, join(dir, 'log')], { stdio: ['pipe', 'pipe', 'inherit'] });
    const [line] = (await once(createInterface({ input: maker.stdout! }), 'line')) as [string];
    const pid = Number(line);
    assert.ok(pid > 0, line);
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(!existsSync(marker), 'the program did not start while the gate is closed');
    assert.equal((await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')[0], '/bin/sh', 'a shell waits in its place');
    await open(maker);
    for (const end = Date.now() + 30_000; !existsSync(marker) && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await readFile(marker, 'utf8').catch(() => 'never started'), String(pid), 'the program ran, in the process made before');
    if (maker.exitCode === null) {
      const exited = once(maker, 'exit');
      maker.stdin!.end();
      assert.deepEqual(await exited, [0, null]);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('a gated process waits in a shell while its maker lives, and runs the program once the maker has exited', { timeout: 60_000 }, async () => {
  await gatedRun(async (maker) => {
    const exited = once(maker, 'exit');
    maker.stdin!.end();
    assert.deepEqual(await exited, [0, null]);
  });
});

test('a gated process runs the program when its maker opens the gate, the maker still running', { timeout: 60_000 }, async () => {
  await gatedRun(async (maker) => {
    maker.stdin!.write('open\n');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(maker.exitCode, null, 'the maker still runs');
  });
});
