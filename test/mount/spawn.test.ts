// daemonProcess's `afterExit` (the spare `starling mount` leaves): the process is made at once, but
// the program starts in it only when the process that made it has exited, as the same process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const fixture = fileURLToPath(new URL('./after-exit-fixture.ts', import.meta.url));

test('a process made with afterExit waits in a shell while its maker lives, and runs the program once the maker has exited', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'starling-after-exit-'));
  try {
    const marker = join(dir, 'started');
    const maker = spawn(process.execPath, ['--import', 'tsx', fixture, marker, join(dir, 'log')], { stdio: ['pipe', 'pipe', 'inherit'] });
    const [line] = (await once(createInterface({ input: maker.stdout! }), 'line')) as [string];
    const pid = Number(line);
    assert.ok(pid > 0, line);
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(!existsSync(marker), 'the program did not start while its maker lives');
    assert.equal((await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')[0], '/bin/sh', 'a shell waits in its place');
    const exited = once(maker, 'exit');
    maker.stdin!.end();
    assert.deepEqual(await exited, [0, null]);
    for (const end = Date.now() + 30_000; !existsSync(marker) && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await readFile(marker, 'utf8').catch(() => 'never started'), String(pid), 'the program ran, in the process made before');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
