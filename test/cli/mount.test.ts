// starling mount / stats / umount end to end: images converted and pushed to a real Distribution,
// mounted through real FUSE (merged and overlay modes), every path compared with `starling pull` of
// the same image; laziness measured through stats; a tampered blob gives EIO for that file only.
// All reads of a mount happen in child processes; every mount is unmounted in `after`, even on failure.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FileBlob } from '../../src/blob/source.js';
import { mountPaths } from '../../src/mount/control.js';
import { CountingBlob } from '../../src/fs/counting-blob.js';
import { openLayerToc } from '../../src/format/open.js';
import { LatencyRecorder, LayerMetrics } from '../../src/fs/metrics.js';
import type { StatsReport } from '../../src/mount/image-mount.js';
import { detachAll, listMounts } from '../../src/mount/stale.js';
import { digestHex, type Digest } from '../../src/oci/digest.js';
import type { Descriptor, ImageManifest } from '../../src/oci/types.js';
import { buildImage } from '../fixtures/image.js';
import { realTar } from '../fixtures/real-tar.js';
import { pushMixed } from '../helpers/mixed-image.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { cleanupOnSignal } from '../helpers/signal-cleanup.js';

const run = promisify(execFile);
const here = fileURLToPath(new URL('.', import.meta.url));
const cli = join(here, '../fs/helpers/starling.ts');
const dump = join(here, '../fs/helpers/tree-dump.mjs');

let registry: RunningRegistry;
let work: string;
const mounted = new Set<string>();
const pulled = new Map<string, string>();

async function starling(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, ['--import', 'tsx', cli, ...args], { maxBuffer: 64 << 20, env: { ...process.env, STARLING_RUN_DIR: join(work, 'run') } });
}

async function mount(ref: string, mnt: string, ...opts: string[]): Promise<void> {
  await mkdir(mnt, { recursive: true });
  mounted.add(mnt);
  try {
    await starling('mount', ref, mnt, ...opts);
  } catch (err) {
    const logs = await readdir(join(work, 'run')).then((ds) => Promise.all(ds.map((d) => readFile(join(work, 'run', d, 'daemon.log'), 'utf8').catch(() => ''))));
    throw new Error(`${(err as Error).message}\ndaemon logs:\n${logs.join('\n')}`);
  }
}

async function umount(mnt: string): Promise<void> {
  await starling('umount', mnt);
  mounted.delete(mnt);
}

async function stats(mnt: string): Promise<StatsReport> {
  return JSON.parse((await starling('stats', mnt, '--json')).stdout) as StatsReport;
}

async function treeDump(root: string): Promise<string[]> {
  const { stdout } = await run(process.execPath, [dump, root], { maxBuffer: 64 << 20 });
  return stdout.trim().split('\n');
}

/**
 * Same lines apart from mtimes, which may differ by one second: an eStargz TOC rounds to whole
 * seconds (formats.md §1a.4) while the tar a pull extracts keeps the PAX sub-second time.
 */
function assertSameTree(got: string[], want: string[]): void {
  const split = (l: string) => {
    const m = / mtime=(\d+)/.exec(l);
    return { line: l.replace(/ mtime=\d+/, ''), mtime: m ? Number(m[1]) : undefined };
  };
  const g = got.map(split);
  const w = want.map(split);
  assert.deepEqual(g.map((x) => x.line), w.map((x) => x.line));
  g.forEach((x, i) => assert.ok(x.mtime === w[i]!.mtime || Math.abs(x.mtime! - w[i]!.mtime!) <= 1, `${x.line}: mtime ${x.mtime} vs ${w[i]!.mtime}`));
}

const ref = (name: string) => (name === 'mixed' ? `docker://${registry.host}/test/estargz:mixed` : `docker://${registry.host}/test/${name}:v1`);

async function pullDump(name: string): Promise<string[]> {
  let dir = pulled.get(name);
  if (!dir) {
    dir = join(work, `pulled-${name}`);
    await starling('pull', ref(name), dir);
    pulled.set(name, dir);
  }
  return treeDump(dir);
}

/** The manifest as the registry stores it, and the path of a blob in its storage directory. */
async function manifestOf(name: string): Promise<ImageManifest> {
  const res = await fetch(`${registry.url}/v2/test/${name}/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  return (await res.json()) as ImageManifest;
}
const blobPath = (d: Digest) => join(registry.dir, 'data/docker/registry/v2/blobs/sha256', digestHex(d).slice(0, 2), digestHex(d), 'data');

/** Bytes our layer opener reads from a blob to get its footer and TOC (measured on the stored blob). */
async function openCost(desc: Descriptor): Promise<number> {
  const metrics = new LayerMetrics();
  const blob = new CountingBlob(await FileBlob.open(blobPath(desc.digest)), metrics, new LatencyRecorder());
  const r = await openLayerToc(blob, desc);
  await blob.close();
  assert.ok(r.ok, `layer ${desc.digest} opens lazily`);
  return metrics.fetchedBytes;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-mount-test-'));
  cleanupOnSignal(work); // after() does not run on a signal
  registry = await startRegistry();
  const src = join(work, 'src');
  await buildImage(
    src,
    {
      layers: [
        { tar: await realTar('pax') },
        { files: { 'etc/.wh.hostname': '', 'names/.wh..wh..opq': '', 'names/new.txt': 'new\n', 'etc/added.conf': 'added\n', 'small/one.txt': 'one small file\n' } },
      ],
    },
    'v1',
  );
  // The plain image (gzip layers, fetched whole) and both lazy formats.
  await run('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${src}:v1`, `docker://${registry.host}/test/gzip:v1`]);
  await starling('convert', `oci:${src}:v1`, ref('estargz'), '--format', 'estargz', '--chunk-size', '1048576');
  await starling('convert', `oci:${src}:v1`, ref('zstd'), '--format', 'zstd:chunked');
  await pushMixed(registry, src, 'test/estargz', 'v1');
});

after(async () => {
  for (const mnt of mounted) await starling('umount', mnt, '--force').catch(() => {});
  await detachAll([], [join(work, 'run')]).catch(() => {});
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

for (const [name, mode] of [
  ['estargz', 'merged'],
  ['zstd', 'merged'],
  ['gzip', 'merged'],
  ['mixed', 'merged'],
  ['estargz', 'overlay'],
  ['mixed', 'overlay'],
  ['zstd', 'overlay'],
] as const) {
  test(`${name} image, ${mode} mode: every path matches starling pull`, async () => {
    const mnt = join(work, `mnt-${name}-${mode}`);
    await mount(ref(name), mnt, '--mode', mode, '--cache-dir', join(work, `cache-${name}-${mode}`), '--no-background-fetch');
    try {
      const got = await treeDump(mnt);
      // A full pull extracts the eStargz landmark and TOC entry as files (as docker pull does); a mount hides them.
      const want = (await pullDump(name)).filter((l) => !/^(\.no\.prefetch\.landmark|\.prefetch\.landmark|stargz\.index\.json) /.test(l));
      assertSameTree(got.slice(1), want.slice(1)); // the root line: mount root vs a fresh directory
      assert.ok(got.some((l) => l.startsWith('names/new.txt ')));
      assert.ok(!got.some((l) => l.startsWith('etc/hostname ')));
      const s = await stats(mnt);
      assert.equal(s.layers.length, 2);
      s.layers.forEach((l, i) => {
        const lazy = name === 'mixed' ? i === 1 : name !== 'gzip';
        assert.equal(l.lazy, lazy, JSON.stringify(l));
        if (!lazy) assert.match(l.reason!, /plain gzip layer/);
      });
      assert.equal(s.totals.verificationFailures, 0);
    } finally {
      await umount(mnt);
    }
  });
}

test('layers mode: each lazy layer on its own at MOUNTPOINT/N as overlayfs wants a lower dir; a plain gzip layer is neither mounted nor fetched whole', { timeout: 120_000 }, async () => {
  const mnt = join(work, 'mnt-mixed-layers');
  await assert.rejects(starling('mount', ref('mixed'), mnt, '--mode', 'layers', '--upper', join(work, 'upper-layers')), /--upper: not with --mode layers/);
  await mount(ref('mixed'), mnt, '--mode', 'layers', '--cache-dir', join(work, 'cache-mixed-layers'), '--no-background-fetch');
  try {
    assert.deepEqual(await readdir(mnt), ['1']);
    const got = await treeDump(join(mnt, '1'));
    // Layer 1's whiteouts as overlayfs stores them: a 0/0 character device, an opaque directory.
    assert.ok(got.some((l) => /^etc\/hostname char .* rdev=0 /.test(l)), got.join('\n'));
    assert.ok(got.some((l) => l.startsWith('names/new.txt ')));
    assert.ok(!got.some((l) => l.startsWith('.wh.') || l.includes('/.wh.')));
    assert.equal(await readFile(join(mnt, '1', 'small/one.txt'), 'utf8'), 'one small file\n');
    const s = await stats(mnt);
    assert.equal(s.mode, 'layers');
    assert.deepEqual(s.layers.map((l) => l.lazy), [false, true]);
    assert.match(s.layers[0]!.reason!, /plain gzip layer/);
    // Only its footer was looked at (to tell its format), not the whole layer.
    assert.ok(s.layers[0]!.requests <= 2 && s.layers[0]!.fetchedBytes < s.layers[0]!.size, JSON.stringify(s.layers[0]));
  } finally {
    await umount(mnt);
  }
  assert.deepEqual(await readdir(mnt), [], 'the layer directories the mount made are gone: the mountpoint takes a merged mount again');
  assert.equal((await listMounts()).filter((m) => m.mountpoint.startsWith(`${mnt}/`)).length, 0);
  await mount(ref('mixed'), mnt, '--cache-dir', join(work, 'cache-mixed-layers'), '--no-background-fetch');
  try {
    assert.equal(await readFile(join(mnt, 'small/one.txt'), 'utf8'), 'one small file\n');
  } finally {
    await umount(mnt);
  }
});

test('laziness: mount fetches only metadata and TOCs, one small file costs its chunk, a warm remount fetches no blob bytes', async () => {
  const m = await manifestOf('estargz');
  const tocCost = await Promise.all(m.layers.map(openCost));
  const cache = join(work, 'cache-lazy');
  const mnt = join(work, 'mnt-lazy');
  await mount(ref('estargz'), mnt, '--cache-dir', cache, '--no-prefetch', '--no-background-fetch');
  try {
    let s = await stats(mnt);
    assert.deepEqual(s.layers.map((l) => l.fetchedBytes), tocCost);
    assert.equal(s.totals.fetchedBytes, s.totals.metadataBytes + tocCost[0]! + tocCost[1]!);
    assert.ok(tocCost[0]! < m.layers[0]!.size / 10, 'the TOC is a small part of the layer');
    assert.equal((await run('cat', [join(mnt, 'small/one.txt')])).stdout, 'one small file\n');
    s = await stats(mnt);
    const delta = s.layers[1]!.fetchedBytes - tocCost[1]!;
    assert.ok(delta > 0 && delta < 1024, `one small file fetched ${delta} bytes`);
    assert.equal(s.layers[0]!.fetchedBytes, tocCost[0]);
    await treeDump(mnt); // reads everything: fills the disk cache
  } finally {
    await umount(mnt);
  }
  await mount(ref('estargz'), mnt, '--cache-dir', cache, '--no-prefetch', '--no-background-fetch');
  try {
    await treeDump(mnt);
    const s = await stats(mnt);
    assert.deepEqual(s.layers.map((l) => l.fetchedBytes), [0, 0], 'warm: no blob bytes at all (chunks and TOC ranges cached)');
    assert.equal(s.totals.fetchedBytes, s.totals.metadataBytes);
    assert.ok(s.totals.cache.diskHits > 0);
  } finally {
    await umount(mnt);
  }
  // Damaged cached TOC ranges fail verification, are dropped and read from the registry again.
  const ranges = join(cache, 'toc-ranges');
  for (const d of await readdir(ranges)) {
    for (const f of await readdir(join(ranges, d))) {
      const b = await readFile(join(ranges, d, f));
      await writeFile(join(ranges, d, f), Buffer.alloc(b.length, 0x41));
    }
  }
  await mount(ref('estargz'), mnt, '--cache-dir', cache, '--no-prefetch', '--no-background-fetch');
  try {
    assert.deepEqual((await stats(mnt)).layers.map((l) => l.fetchedBytes), tocCost);
    assert.equal((await run('cat', [join(mnt, 'small/one.txt')])).stdout, 'one small file\n');
  } finally {
    await umount(mnt);
  }
});

test('defaults: only metadata and TOCs until reads, no fill during the quiet period; then the fill completes and a remount fetches nothing', { timeout: 120_000 }, async () => {
  const m = await manifestOf('estargz');
  const tocCost = await Promise.all(m.layers.map(openCost));
  const cache = join(work, 'cache-defaults');
  const mnt = join(work, 'mnt-defaults');
  // Within the 5 s quiet period after `since` nothing but `expected` is fetched and the fill has not
  // started. On a loaded machine (each `stats` is a process start) the period may be over when
  // stats answers: then the fill may have started, but not earlier than 5 s after `since`.
  const quietHolds = async (since: number, expected: number[], what: string) => {
    const s = await stats(mnt);
    const elapsed = performance.now() - since;
    if (s.layers.every((l) => l.background.state === 'pending')) assert.deepEqual(s.layers.map((l) => l.fetchedBytes), expected, what);
    else assert.ok(elapsed >= 5000, `${what}: the fill started within ${Math.round(elapsed)} ms, inside the 5 s quiet period`);
  };
  // The daemon's quiet period starts when its scheduler is made, inside `mount`: count from before it.
  const mountStart = performance.now();
  await mount(ref('estargz'), mnt, '--cache-dir', cache);
  try {
    await quietHolds(mountStart, tocCost, 'right after mount');
    assert.equal((await run('cat', [join(mnt, 'small/one.txt')])).stdout, 'one small file\n');
    const readAt = performance.now();
    // The read returns once its own chunk is in; the rest of its neighbourhood window may still be
    // arriving (bytes are counted when a request completes): wait for the counts to settle first.
    let afterRead = (await stats(mnt)).layers.map((l) => l.fetchedBytes);
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 200));
      const now = (await stats(mnt)).layers.map((l) => l.fetchedBytes);
      if (now.every((b, j) => b === afterRead[j])) break;
      afterRead = now;
    }
    await new Promise((r) => setTimeout(r, 2000));
    await quietHolds(readAt, afterRead, 'nothing more within the 5 s quiet period after the read');
    let s = await stats(mnt);
    for (let i = 0; i < 600 && s.layers.some((l) => l.background.state !== 'done'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      s = await stats(mnt);
    }
    assert.deepEqual(s.layers.map((l) => l.background.state), ['done', 'done']);
    // The daemon counts its chunk requests by priority: the read's and the fill's are among them, and they are part of all requests.
    const r = s.totals.chunkRequests;
    assert.ok(r.read >= 1 && r.background >= 1, `chunk requests ${JSON.stringify(r)}`);
    assert.ok(r.read + r.readAhead + r.prefetch + r.speculative + r.background <= s.totals.requests, `chunk requests ${JSON.stringify(r)} of ${s.totals.requests}`);
    for (const l of s.layers) assert.ok(l.windowBytes !== null && l.windowBytes >= 64 << 10 && l.windowBytes <= 4 << 20, `window ${l.windowBytes}`);
    // File data at most once: no chunk fetched by a read is fetched again by the fill.
    s.layers.forEach((l, i) => assert.ok(l.fetchedBytes - tocCost[i]! <= m.layers[i]!.size, `layer ${i}: ${l.fetchedBytes - tocCost[i]!} of ${m.layers[i]!.size} bytes fetched besides the TOC`));
  } finally {
    await umount(mnt);
  }
  await mount(ref('estargz'), mnt, '--cache-dir', cache, '--no-background-fetch');
  try {
    await treeDump(mnt);
    assert.deepEqual((await stats(mnt)).layers.map((l) => l.fetchedBytes), [0, 0], 'the fill left everything in the cache');
  } finally {
    await umount(mnt);
  }
});

test('a non-seekable (plain gzip) image is fetched whole once; a remount serves it from the cache dir', async () => {
  const m = await manifestOf('gzip');
  const cache = join(work, 'cache-whole');
  const mnt = join(work, 'mnt-whole');
  for (const round of [1, 2]) {
    await mount(ref('gzip'), mnt, '--cache-dir', cache);
    try {
      const s = await stats(mnt);
      s.layers.forEach((l, i) => {
        assert.equal(l.lazy, false);
        if (round === 1) assert.ok(l.fetchedBytes >= m.layers[i]!.size, `round 1: ${l.fetchedBytes}`);
        else assert.equal(l.fetchedBytes, 0, 'round 2: nothing fetched');
      });
      assert.equal((await run('cat', [join(mnt, 'small/one.txt')])).stdout, 'one small file\n');
    } finally {
      await umount(mnt);
    }
  }
});

test('a tampered chunk in the registry gives EIO on that file, correct bytes elsewhere, and the mount survives', async () => {
  const m = await manifestOf('estargz');
  const layer = m.layers[0]!;
  const pulledDir = pulled.get('estargz') ?? join(work, 'pulled-estargz');
  if (!pulled.has('estargz')) await pullDump('estargz');
  // Flip a byte in the middle of the big file's data: find its chunks through our own opener.
  const blob = await FileBlob.open(blobPath(layer.digest));
  const r = await openLayerToc(blob, layer);
  await blob.close();
  assert.ok(r.ok);
  const victim = r.toc.entries.find((e) => e.path === 'data/big.bin')!;
  const chunk = victim.chunks[1]!;
  const bytes = await readFile(blobPath(layer.digest));
  bytes[Math.floor((chunk.start + chunk.end) / 2)] ^= 0x55;
  await writeFile(blobPath(layer.digest), bytes);
  const mnt = join(work, 'mnt-tampered');
  try {
    await mount(ref('estargz'), mnt, '--cache-dir', join(work, 'cache-tampered'), '--no-prefetch', '--no-background-fetch');
    await assert.rejects(run('cat', [join(mnt, 'data/big.bin')], { encoding: 'buffer', maxBuffer: 64 << 20 }), /Input\/output error/);
    const head = await run('head', ['-c', String(chunk.fileOffset), join(mnt, 'data/big.bin')], { encoding: 'buffer', maxBuffer: 64 << 20 });
    assert.deepEqual(head.stdout, (await readFile(join(pulledDir, 'data/big.bin'))).subarray(0, chunk.fileOffset));
    assert.equal((await run('cat', [join(mnt, 'etc/added.conf')])).stdout, 'added\n');
    const s = await stats(mnt);
    assert.ok(s.layers[0]!.verificationFailures >= 1);
    const log = await readdir(join(work, 'run'));
    assert.ok(log.length > 0);
  } finally {
    bytes[Math.floor((chunk.start + chunk.end) / 2)] ^= 0x55;
    await writeFile(blobPath(layer.digest), bytes);
    if (mounted.has(mnt)) await umount(mnt);
  }
});

test('--upper gives a writable root over the lazy mount; umount --force recovers a killed daemon', async () => {
  const mnt = join(work, 'mnt-upper');
  const upper = join(work, 'upper');
  await mount(ref('zstd'), mnt, '--upper', upper, '--cache-dir', join(work, 'cache-upper'));
  await run('sh', ['-c', `echo written > ${mnt}/etc/added.conf && mkdir ${mnt}/newdir && rm ${mnt}/small/one.txt`]);
  assert.equal((await run('cat', [join(mnt, 'etc/added.conf')])).stdout, 'written\n');
  assert.equal(await readFile(join(upper, 'upper/etc/added.conf'), 'utf8'), 'written\n');
  assert.deepEqual((await run('ls', [join(mnt, 'small')])).stdout, '');
  const { pid } = await stats(mnt);
  process.kill(pid, 'SIGKILL');
  // As if it had died while writing its pid file: --force still detaches what is mounted.
  await writeFile(mountPaths(mnt, join(work, 'run')).info, '');
  await assert.rejects(starling('umount', mnt), /no running starling daemon/);
  await starling('umount', mnt, '--force');
  mounted.delete(mnt);
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  assert.ok(!info.includes(mnt), 'nothing left mounted');
  // and the path can be mounted again; a daemon killed again is recovered by the next mount itself
  await mount(ref('zstd'), mnt, '--cache-dir', join(work, 'cache-upper'));
  assert.equal((await run('cat', [join(mnt, 'etc/added.conf')])).stdout, 'added\n');
  process.kill((await stats(mnt)).pid, 'SIGKILL');
  await starling('mount', ref('zstd'), mnt, '--cache-dir', join(work, 'cache-upper')); // no mkdir: the dead mount answers ECONNABORTED
  assert.equal((await run('cat', [join(mnt, 'etc/added.conf')])).stdout, 'added\n');
  await umount(mnt);
  assert.ok(!(await readFile('/proc/self/mountinfo', 'utf8')).includes(mnt));
});

test('--prefetch-list fetches the listed files right after mount; reading them then fetches nothing', async () => {
  const mnt = join(work, 'mnt-prefetch');
  const list = join(work, 'prefetch.list');
  await writeFile(list, '/usr/bin/zstd\nsmall/one.txt\n');
  await mount(ref('zstd'), mnt, '--cache-dir', join(work, 'cache-prefetch'), '--prefetch-list', list, '--no-background-fetch');
  try {
    let s = await stats(mnt);
    for (let i = 0; i < 100 && s.layers.some((l) => l.prefetch.state !== 'done'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      s = await stats(mnt);
    }
    assert.ok(s.layers.every((l) => l.prefetch.state === 'done'), JSON.stringify(s.layers.map((l) => l.prefetch)));
    assert.ok(s.layers[0]!.prefetch.done > 0 && s.layers[1]!.prefetch.done > 0);
    const before = s.layers.map((l) => l.fetchedBytes);
    await run('sha256sum', [join(mnt, 'usr/bin/zstd'), join(mnt, 'small/one.txt')]);
    assert.deepEqual((await stats(mnt)).layers.map((l) => l.fetchedBytes), before);
  } finally {
    await umount(mnt);
  }
});

test('relative MOUNTPOINT, --cache-dir and --prefetch-list mean what they mean in the caller\'s directory', async () => {
  const dir = join(work, 'relative');
  await mkdir(join(dir, 'mnt'), { recursive: true });
  await writeFile(join(dir, 'list'), 'small/one.txt\n');
  const mnt = join(dir, 'mnt');
  mounted.add(mnt);
  await run(process.execPath, ['--import', import.meta.resolve('tsx'), cli, 'mount', ref('zstd'), 'mnt', '--cache-dir', 'cache', '--prefetch-list', 'list', '--no-background-fetch'], {
    cwd: dir,
    env: { ...process.env, STARLING_RUN_DIR: join(work, 'run') },
  });
  try {
    const s = await stats(mnt);
    assert.equal(s.mountpoint, mnt);
    assert.equal((await run('cat', [join(mnt, 'small/one.txt')])).stdout.length > 0, true);
    assert.ok((await readdir(join(dir, 'cache'))).includes('chunks'), 'the cache dir is created where the caller named it');
  } finally {
    await umount(mnt);
  }
});

test('--foreground serves from the process itself, started without the daemon\'s flags, until SIGTERM', async () => {
  const mnt = join(work, 'mnt-foreground');
  await mkdir(mnt, { recursive: true });
  mounted.add(mnt);
  // As a service manager would start it: no --expose-gc, no IPC channel, no malloc tuning.
  const env: NodeJS.ProcessEnv = { ...process.env, STARLING_RUN_DIR: join(work, 'run') };
  delete env.MALLOC_MMAP_THRESHOLD_;
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'mount', ref('estargz'), mnt, '--no-background-fetch', '--foreground'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    for (let i = 0; !(await readFile('/proc/self/mountinfo', 'utf8')).includes(` ${mnt} `); i++) {
      assert.ok(i < 600 && child.exitCode === null, `not mounted: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal((await stats(mnt)).pid, child.pid);
    assert.equal((await run('cat', [join(mnt, 'small/one.txt')])).stdout.length > 0, true);
    await new Promise((r) => setTimeout(r, 200)); // past the collection that follows mounting
    assert.equal(child.exitCode, null, `the process still serves: ${stderr}`);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    assert.ok(!(await readFile('/proc/self/mountinfo', 'utf8')).includes(` ${mnt} `), 'unmounted on SIGTERM');
    mounted.delete(mnt);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('a bad reference fails with a clear message and leaves nothing mounted', async () => {
  const mnt = join(work, 'mnt-bad');
  await mkdir(mnt, { recursive: true });
  await assert.rejects(starling('mount', `docker://${registry.host}/test/missing:v1`, mnt), (err: { stderr: string }) => /missing/.test(err.stderr));
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  assert.ok(!info.includes(mnt));
  // FUSE takes only an empty directory: said so, not libfuse's "fuse failed".
  await writeFile(join(mnt, 'left-over'), '');
  await assert.rejects(starling('mount', ref('estargz'), mnt), (err: { stderr: string }) => /mountpoint .*mnt-bad is not empty/.test(err.stderr));
  assert.ok(!(await readFile('/proc/self/mountinfo', 'utf8')).includes(mnt));
});
