import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { access, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { unmountSyscall } from '../../src/format/native.js';
import { PlanMounts } from '../../src/mount/executor.js';
import { isMountpoint } from '../../src/mount/stale.js';
import { tempDir } from '../helpers/temp-dir.js';


test('an overlay kept busy by a process inside it is still taken off (detached), and the mountpoint it made removed', { timeout: 30_000 }, async () => {
  const dir = await tempDir('executor-');
  const lower = join(dir, 'lower');
  const target = join(dir, 'merged');
  const upper = { upperdir: join(dir, 'u/upper'), workdir: join(dir, 'u/work') };
  await mkdir(lower);
  await writeFile(join(lower, 'file'), 'x');
  const mounts = new PlanMounts();
  let busy;
  try {
    await mounts.apply({ dirs: [target, upper.upperdir, upper.workdir], fuse: [], overlay: { target, lowers: [lower], upper } }, { fsFor: () => assert.fail('no FUSE mount in this plan'), fsname: 'test', timeoutMs: 1000, log: () => {} });
    assert.equal(await isMountpoint(target), true);
    // A shell whose working directory is in the overlay: umount2 without MNT_DETACH fails with EBUSY.
    busy = spawn('sh', ['-c', 'sleep 60'], { cwd: target, stdio: 'ignore' });
    await new Promise((r) => busy!.once('spawn', r));
    await assert.rejects(unmountSyscall(target, false), /EBUSY|busy/i);
    assert.deepEqual(await mounts.unmount(), []);
    assert.equal(await isMountpoint(target), false);
    // The mountpoint it made is removed (the work dir, which overlayfs filled, stays: only empty directories go).
    await assert.rejects(access(target), { code: 'ENOENT' });
  } finally {
    busy?.kill('SIGKILL');
    if (await isMountpoint(target)) await unmountSyscall(target, true);
    await rm(dir, { recursive: true, force: true });
  }
});
