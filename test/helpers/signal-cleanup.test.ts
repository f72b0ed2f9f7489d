// signal-cleanup.ts: a mounting test file stopped by ^C (SIGINT to its process group, test runner
// included) leaves no mount, no mount daemon, no spare, no registry and no work directory behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { listMounts } from '../../src/mount/stale.js';
import { running as alive } from '../../src/mount/stop.js';

const FIXTURE = fileURLToPath(new URL('./signal-fixture.ts', import.meta.url));


/** Pids of processes whose command line names `text`. */
async function processesNaming(text: string): Promise<number[]> {
  const pids: number[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(text)) pids.push(Number(pid));
  }
  return pids;
}

test('^C on a test run that mounted: its cleanup runs before the runner exits', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'starling-signal-test-'));
  const out = join(dir, 'started.json');
  // A test run of its own: not a child of this one's runner (NODE_TEST_CONTEXT).
  const env: NodeJS.ProcessEnv = { ...process.env, SIGNAL_FIXTURE_OUT: out };
  delete env.NODE_TEST_CONTEXT;
  const runner = spawn(process.execPath, ['--import', 'tsx', '--test', FIXTURE], { env, stdio: 'ignore', detached: true });
  const exited = new Promise((r) => runner.once('exit', r));
  try {
    for (let i = 0; !existsSync(out); i++) {
      assert.ok(i < 900 && runner.exitCode === null, 'the fixture mounted');
      await new Promise((r) => setTimeout(r, 100));
    }
    const started = JSON.parse(await readFile(out, 'utf8')) as { work: string; daemon: number; registry: number };
    assert.ok((await listMounts()).some((m) => m.mountpoint === join(started.work, 'mnt')));
    assert.ok(alive(started.daemon) && alive(started.registry));
    process.kill(-runner.pid!, 'SIGINT');
    await exited;
    for (let i = 0; alive(started.daemon) || alive(started.registry) || (await processesNaming(`${started.work}/`)).length > 0; i++) {
      assert.ok(i < 100, `still running: daemon ${alive(started.daemon)}, registry ${alive(started.registry)}, others ${await processesNaming(`${started.work}/`)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual((await listMounts()).filter((m) => m.mountpoint.startsWith(started.work)), []);
    assert.equal(existsSync(started.work), false);
  } finally {
    if (runner.exitCode === null) process.kill(-runner.pid!, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});
