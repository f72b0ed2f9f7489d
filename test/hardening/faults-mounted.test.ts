// Faults while mounted: a real Distribution behind the fault proxy, an eStargz image mounted by the
// `starling mount` daemon through the proxy (no prefetch, no background fill, so every read goes to
// the network), files read by child processes. Each fault either is ridden out by bounded retries
// (the bytes are right), or the read fails with EIO — never wrong bytes — and the same file reads
// correctly once the registry behaves again. The mount survives every case.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { StatsReport } from '../../src/mount/image-mount.js';
import { childDigest, run, startMountEnv, testFiles, type MountEnv } from './mount-env.js';
import { sha256 } from '../../src/oci/digest.js';

let env: MountEnv;
let mnt: string;
let next = 0;
const BLOB_GET = { method: 'GET', path: '/blobs/sha256:', range: true };

/**
 * A data file no earlier case has read, and nothing of it cached: an earlier read may have brought
 * it as a neighbour to the disk cache, so the disk cache's chunk files go first. Every other file:
 * the neighbourhood window of a read (kept in the daemon's memory) may hold the start of the next
 * file in the blob, never the one after (the files are ~200 KB, the windows stay at 256 KiB while
 * their neighbours go unused).
 */
async function freshFile(): Promise<{ path: string; digest: string }> {
  await run('find', [join(env.work, 'cache', 'chunks'), '-type', 'f', '-delete']);
  const name = `data/f${String(next).padStart(3, '0')}.bin`;
  next += 2;
  return { path: join(mnt, name), digest: sha256(env.files.get(name)!) };
}

async function expectEio(path: string): Promise<void> {
  await assert.rejects(run('cat', [path], { encoding: 'buffer', maxBuffer: 8 << 20 }), /Input\/output error/);
}

async function mountAlive(): Promise<void> {
  const { stdout } = await run('cat', [join(mnt, 'etc/conf3.txt')]);
  assert.equal(stdout, env.files.get('etc/conf3.txt')!.toString());
}

before(async () => {
  env = await startMountEnv({ files: testFiles(24, 200_000), images: { img: 'estargz' }, proxy: true });
  mnt = join(env.work, 'mnt');
  await env.mount(env.ref('img'), mnt, '--cache-dir', join(env.work, 'cache'), '--no-prefetch', '--no-background-fetch', '--fuse-timeout', '60');
});

after(async () => {
  await env?.cleanup();
});

test('connection resets mid-body are retried: right bytes', async () => {
  const f = await freshFile();
  env.proxy!.inject({ kind: 'reset-mid-body', times: 2, match: BLOB_GET });
  assert.equal(await childDigest(f.path), f.digest);
  assert.ok(env.proxy!.log.some((r) => r.fault === 'reset-mid-body'));
  await mountAlive();
});

test('a short 503 storm is retried: right bytes', async () => {
  const f = await freshFile();
  env.proxy!.inject({ kind: 'status', status: 503, times: 3, match: BLOB_GET });
  assert.equal(await childDigest(f.path), f.digest);
  assert.equal(env.proxy!.pending(), 0);
});

test('429 with Retry-After is waited for: right bytes', async () => {
  const f = await freshFile();
  env.proxy!.inject({ kind: 'retry-after', seconds: 1, match: BLOB_GET });
  const t0 = Date.now();
  assert.equal(await childDigest(f.path), f.digest);
  assert.ok(Date.now() - t0 >= 1000, 'waited for Retry-After');
});

test('a 500 storm past the retry budget is EIO; once it ends the same file reads right', async () => {
  const f = await freshFile();
  env.proxy!.inject({ kind: 'status', status: 500, times: Infinity, match: BLOB_GET });
  const t0 = Date.now();
  await expectEio(f.path);
  const waited = Date.now() - t0;
  env.proxy!.clear();
  assert.ok(waited < 30_000, `EIO after ${waited} ms: bounded retries, well inside the FUSE timeout`);
  assert.equal(await childDigest(f.path), f.digest);
  await mountAlive();
});

test('registry stops mid-read and comes back within the retries: the read waits and succeeds', async () => {
  const f = await freshFile();
  env.proxy!.inject({ kind: 'reset', times: Infinity, match: BLOB_GET });
  const reading = childDigest(f.path);
  await new Promise((r) => setTimeout(r, 700));
  env.proxy!.clear();
  assert.equal(await reading, f.digest);
  assert.ok(env.proxy!.log.some((r) => r.fault === 'reset'));
});

test('registry hangs (requests unanswered) for 2 s, then answers: the read waits and succeeds', async () => {
  const f = await freshFile();
  env.proxy!.pause();
  const t0 = Date.now();
  const reading = childDigest(f.path);
  await new Promise((r) => setTimeout(r, 2000));
  env.proxy!.resume();
  assert.equal(await reading, f.digest);
  assert.ok(Date.now() - t0 >= 2000);
});

test('registry down past the deadline: EIO; back up: the same file reads right', async () => {
  const f = await freshFile();
  env.proxy!.inject({ kind: 'reset', times: Infinity, match: BLOB_GET });
  await expectEio(f.path);
  await expectEio(f.path); // a failure is not cached as success, nor does it wedge the mount
  env.proxy!.clear();
  assert.equal(await childDigest(f.path), f.digest);
  await mountAlive();
});

test('altered bytes are EIO, never wrong bytes; correct bytes later are served', async () => {
  const f = await freshFile();
  const before = JSON.parse((await env.starling('stats', mnt, '--json')).stdout) as StatsReport;
  env.proxy!.inject({ kind: 'alter-bytes', offset: 100, times: Infinity, match: BLOB_GET });
  await expectEio(f.path);
  env.proxy!.clear();
  const after = JSON.parse((await env.starling('stats', mnt, '--json')).stdout) as StatsReport;
  assert.ok(after.totals.verificationFailures > before.totals.verificationFailures, 'the bad chunk was counted');
  assert.equal(await childDigest(f.path), f.digest);
});

test('a registry that ignores Range for a large blob is refused (EIO), not downloaded whole', async () => {
  const f = await freshFile();
  env.proxy!.inject({ kind: 'ignore-range', times: Infinity, match: BLOB_GET });
  await expectEio(f.path);
  env.proxy!.clear();
  assert.equal(await childDigest(f.path), f.digest);
  await mountAlive();
});

test('a mount asks for each TOC once (sent as soon as the manifest is in) and a warm remount not at all; a TOC request that keeps failing fails the mount', { timeout: 120_000 }, async () => {
  const other = join(env.work, 'mnt-tocs');
  const cache = join(env.work, 'cache-tocs');
  const blobGets = () => env.proxy!.log.filter((r) => r.method === 'GET' && r.path.includes('/blobs/sha256:') && r.headers.range !== undefined).length;
  const opts = ['--cache-dir', cache, '--no-prefetch', '--no-background-fetch'];
  let before = blobGets();
  await env.mount(env.ref('img'), other, ...opts);
  try {
    const s = JSON.parse((await env.starling('stats', other, '--json')).stdout) as StatsReport;
    assert.equal(blobGets() - before, s.layers.length, 'one TOC request per layer');
    assert.equal(s.totals.requests - s.layers.length, 2, 'and it is counted: manifest, config and the TOC requests are all there is');
    assert.ok(s.layers.every((l) => l.requests === 1 && l.fetchedBytes > 0));
  } finally {
    await env.umount(other);
  }
  before = blobGets();
  await env.mount(env.ref('img'), other, ...opts);
  try {
    assert.equal(blobGets() - before, 0, 'a warm remount sends no TOC request (the range cache holds them)');
  } finally {
    await env.umount(other);
  }
  env.proxy!.inject({ kind: 'status', status: 500, times: Infinity, match: BLOB_GET });
  try {
    await assert.rejects(env.mount(env.ref('img'), join(env.work, 'mnt-tocs-cold'), '--cache-dir', join(env.work, 'cache-tocs-cold'), ...opts.slice(2)), /500/);
  } finally {
    env.proxy!.clear();
  }
});
