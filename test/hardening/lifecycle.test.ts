// Lifecycle of the `starling mount` daemon under stress: SIGINT, SIGTERM and SIGKILL while reader
// processes are busy (readers never hang; no mount is left behind, or the stale one is recovered by
// `umount --force` and by the next mount), `umount` while a file is held open, and two mounts of one
// image sharing one cache directory (every byte verified; damaged cache entries are never served).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StatsReport } from '../../src/mount/image-mount.js';
import { isMountpoint } from '../../src/mount/stale.js';
import { running as alive } from '../../src/mount/stop.js';
import { childDigest, run, spawnChild, startMountEnv, testFiles, type MountEnv } from './mount-env.js';
import { sha256 } from '../../src/oci/digest.js';

const reader = join(dirname(fileURLToPath(import.meta.url)), 'load-reader.mjs');
let env: MountEnv;
let n = 0;

before(async () => {
  env = await startMountEnv({ files: testFiles(16, 200_000), images: { img: 'estargz' } });
});

after(async () => {
  await env?.cleanup();
});

function newMountpoint(): string {
  return join(env.work, `mnt-${n++}`);
}

async function mountImage(mnt: string, cache = join(env.work, `cache-${mnt.split('-').at(-1)}`)): Promise<void> {
  await env.mount(env.ref('img'), mnt, '--cache-dir', cache, '--no-prefetch', '--no-background-fetch', '--fuse-timeout', '20');
}


async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts `count` reader processes on `mnt` for `ms`; resolves with their results. */
function readers(mnt: string, count: number, ms: number) {
  return Promise.all(Array.from({ length: count }, (_, i) => spawnChild(process.execPath, [reader, mnt, env.srcTree, String(ms), String(7 + i)]).done));
}

async function verifyAll(mnt: string): Promise<void> {
  for (const [p, content] of env.files) if (p.startsWith('data/f00')) assert.equal(await childDigest(join(mnt, p)), sha256(content), p);
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal} while readers are active: the daemon unmounts and exits, readers end, nothing is left`, async () => {
    const mnt = newMountpoint();
    await mountImage(mnt);
    const pid = await env.daemonPid(mnt);
    const busy = readers(mnt, 8, 20_000);
    await new Promise((r) => setTimeout(r, 1500));
    process.kill(pid, signal);
    await waitFor('daemon exit', () => !alive(pid));
    // Every reader ends (with errors once the mount is gone), none hangs.
    const results = await busy;
    assert.equal(results.length, 8);
    assert.equal(await isMountpoint(mnt), false, 'no mount left behind');
    assert.match(await env.daemonLog(mnt), new RegExp(`stopping \\(${signal}\\)`));
  });
}

test('SIGKILL while readers are active: readers fail instead of hanging; umount --force recovers the stale mount', async () => {
  const mnt = newMountpoint();
  await mountImage(mnt);
  const pid = await env.daemonPid(mnt);
  const busy = readers(mnt, 8, 20_000);
  await new Promise((r) => setTimeout(r, 1500));
  process.kill(pid, 'SIGKILL');
  const t0 = Date.now();
  const results = await busy;
  assert.ok(Date.now() - t0 < 40_000);
  const errors = results.flatMap((r) => (JSON.parse(r.stdout) as { errors: string[] }).errors);
  assert.ok(errors.some((e) => /ENOTCONN|ECONNABORTED|EIO/.test(e)), `readers saw the dead mount: ${errors.slice(0, 3).join('; ')}`);
  assert.equal(await isMountpoint(mnt), true, 'SIGKILL leaves a stale mount');
  await assert.rejects(run('ls', [mnt]), /Transport endpoint is not connected/);
  await env.umount(mnt, '--force');
  assert.equal(await isMountpoint(mnt), false);
  await mountImage(mnt);
  await verifyAll(mnt);
  await env.umount(mnt);
});

test('mounting over a stale mount (daemon SIGKILLed) recovers it and serves correct bytes', async () => {
  const mnt = newMountpoint();
  await mountImage(mnt);
  const pid = await env.daemonPid(mnt);
  process.kill(pid, 'SIGKILL');
  await waitFor('daemon exit', () => !alive(pid));
  assert.equal(await isMountpoint(mnt), true);
  await mountImage(mnt);
  assert.match(await env.daemonLog(mnt), /recovered stale mounts/);
  await verifyAll(mnt);
  await env.umount(mnt);
  assert.equal(await isMountpoint(mnt), false);
});

test('umount while a file is held open: detaches within its bound, the holder gets an error (no hang, no dead mount)', async (t) => {
  const mnt = newMountpoint();
  await mountImage(mnt);
  const pid = await env.daemonPid(mnt);
  const file = join(mnt, 'data/f001.bin');
  // Holds the file open across the umount, then tries to read from the open descriptor.
  const holder = spawnChild('bash', ['-c', `exec 3<"${file}"; echo open; sleep 4; head -c 100 <&3 | wc -c`]);
  await new Promise((r) => setTimeout(r, 1000));
  const t0 = Date.now();
  const res = await env.starling('umount', mnt).then(
    () => 'ok',
    (err: Error) => err.message,
  );
  const took = Date.now() - t0;
  const held = await holder.done;
  t.diagnostic(`umount with an open file: ${res === 'ok' ? 'unmounted' : res.split('\n')[0]} after ${took} ms; holder printed ${JSON.stringify(held.stdout)}, stderr ${JSON.stringify(held.stderr.trim())}`);
  assert.ok(took < 70_000, `umount took ${took} ms`);
  // umount detaches the mount even though a file is open; the holder's later read fails cleanly.
  assert.equal(res, 'ok');
  assert.equal(await isMountpoint(mnt), false);
  await waitFor('daemon exit', () => !alive(pid));
  assert.match(held.stderr, /Transport endpoint is not connected|Input\/output error/);
  assert.match(held.stdout, /^open\n/);
  assert.equal(await isMountpoint(mnt), false);
});

test('two mounts share one cache directory: both verified under concurrent readers; damaged cache entries are never served', async () => {
  const cache = join(env.work, 'shared-cache');
  const a = newMountpoint();
  const b = newMountpoint();
  await mountImage(a, cache);
  await mountImage(b, cache);
  const both = await Promise.all([readers(a, 4, 4000), readers(b, 4, 4000)]);
  for (const r of both.flat()) {
    const o = JSON.parse(r.stdout) as { mismatches: string[]; errors: string[]; bytesVerified: number };
    assert.deepEqual([o.mismatches, o.errors], [[], []]);
    assert.ok(o.bytesVerified > 0);
  }
  await env.umount(a);
  await env.umount(b);
  // No temp files left half-written, every entry intact.
  const chunkFiles: string[] = [];
  for (const sub of await readdir(join(cache, 'chunks'))) for (const f of await readdir(join(cache, 'chunks', sub))) chunkFiles.push(join(cache, 'chunks', sub, f));
  assert.ok(chunkFiles.length > 10);
  assert.deepEqual(await readdir(join(cache, 'tmp')), []);
  for (const f of chunkFiles.slice(0, 40)) assert.equal(sha256(await readFile(f)), `sha256:${f.split('/').at(-1)}`);
  // Damage entries the way a torn write or a bad disk would: truncated, overwritten, emptied.
  await truncate(chunkFiles[0]!, 100);
  await writeFile(chunkFiles[1]!, Buffer.alloc((await readFile(chunkFiles[1]!)).length, 0x41));
  await truncate(chunkFiles[2]!, 0);
  const c = newMountpoint();
  await mountImage(c, cache);
  const again = await readers(c, 4, 3000);
  for (const r of again) assert.deepEqual((JSON.parse(r.stdout) as { mismatches: string[] }).mismatches, []);
  for (const [p, content] of env.files) assert.equal(await childDigest(join(c, p)), sha256(content), p);
  const s = JSON.parse((await env.starling('stats', c, '--json')).stdout) as StatsReport;
  assert.ok(s.totals.cache.diskHits > 0, 'the intact entries were used');
  await env.umount(c);
});
