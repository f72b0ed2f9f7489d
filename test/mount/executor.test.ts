import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { access, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { unmountSyscall } from '../../src/format/native.js';
import { PlanMounts } from '../../src/mount/executor.js';
import { isMountpoint, listMounts } from '../../src/mount/stale.js';
import { image, setup } from '../fs/helpers/fixture.js';
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

test("a plan's FUSE mounts go up together; when one fails the others are recorded and unmount() takes them off", { timeout: 30_000 }, async () => {
  const dir = await tempDir('executor-');
  const fixture = await setup(image());
  const targets = ['0', '1', 'merged'].map((n) => join(dir, 'mnt', n));
  const notADir = join(dir, 'file');
  await writeFile(notADir, 'x');
  const ours = async () => (await listMounts()).filter((m) => m.mountpoint.startsWith(`${dir}/`)).map((m) => m.mountpoint).sort();
  const mounts = new PlanMounts();
  try {
    const fuse = [{ target: notADir, layer: 'merged' as const }, ...targets.map((target) => ({ target, layer: 'merged' as const }))];
    await assert.rejects(mounts.apply({ dirs: targets, fuse }, { fsFor: () => fixture.fs, fsname: 'test', timeoutMs: 1000, log: () => {} }), /not a directory/);
    assert.deepEqual(await ours(), targets.sort(), 'the three good mounts are up');
    assert.deepEqual(await mounts.unmount(), []);
    assert.deepEqual(await ours(), []);
    await assert.rejects(access(join(dir, 'mnt')), { code: 'ENOENT' }, 'the directories it made are gone');
  } finally {
    for (const m of await ours()) await unmountSyscall(m, true);
    await fixture.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
});

test("a FUSE mount's filesystem is made at the mount's first request, once, and only for the mount asked", { timeout: 30_000 }, async () => {
  const dir = await tempDir('executor-');
  const fixture = await setup(image());
  const targets = ['0', '1'].map((n) => join(dir, 'mnt', n));
  const made: Array<number | 'merged'> = [];
  const mounts = new PlanMounts();
  try {
    const fuse = [{ target: targets[0]!, layer: 0 }, { target: targets[1]!, layer: 1 }];
    await mounts.apply({ dirs: targets, fuse }, { fsFor: (layer) => (made.push(layer), fixture.fs), fsname: 'test', timeoutMs: 5000, log: () => {} });
    assert.deepEqual(made, [], 'nothing made while mounting');
    // Read from a child process: the kernel's requests are answered on this process's thread.
    const read = (path: string) =>
      new Promise<string>((resolve, reject) => {
        const child = spawn('cat', [path], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.once('error', reject);
        child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`cat ${path}: exit ${code}`))));
      });
    assert.equal(await read(join(targets[1]!, 'etc/hosts')), '127.0.0.1 upper\n');
    assert.equal(await read(join(targets[1]!, 'etc/motd')), 'x'.repeat(100_000));
    assert.deepEqual(made, [1], 'made once, for the mount read');
    assert.deepEqual(await mounts.unmount(), []);
  } finally {
    for (const m of (await listMounts()).filter((m) => m.mountpoint.startsWith(`${dir}/`))) await unmountSyscall(m.mountpoint, true);
    await fixture.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
});
