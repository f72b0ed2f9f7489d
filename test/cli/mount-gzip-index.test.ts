// Mounting an unconverted gzip image lazily through its gzip indexes, end to end: layers made by GNU
// gzip, pigz and as several gzip members (GNU gzip, Go's compress/gzip, pigz), pushed unchanged to a real Distribution, indexed with
// `starling index --push`, mounted through real FUSE: every path identical to `starling pull`, the
// layers lazy in stats, one small file costs one span; a tampered span gives EIO for its files
// only; a refused index (of another layer, or of another image) leaves the layer fetched whole,
// with the reason.
// All reads of a mount happen in child processes; every mount is unmounted in finally.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { hashFile, jsonBytes, putJSONBlob, putManifestBytes } from '../../src/convert/blobs.js';
import { decodeGzipIndex, encodeGzipIndex } from '../../src/format/gzipindex/encoding.js';
import type { GzipIndex } from '../../src/format/gzipindex/model.js';
import { spanAt, spanRange } from '../../src/format/gzipindex/span.js';
import type { StatsReport } from '../../src/mount/image-mount.js';
import { detachAll } from '../../src/mount/stale.js';
import { findGzipIndexes, pushGzipIndexes } from '../../src/image/gzip-index-registry.js';
import { registryOf } from '../../src/image/profile-registry.js';
import { digestHex, sha256, type Digest } from '../../src/oci/digest.js';
import { OciLayoutDestination } from '../../src/oci/layout.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import type { Descriptor, ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { resolveManifest } from '../../src/registry/resolve.js';
import { openImageSource } from '../../src/registry/transport.js';
import { realTar } from '../fixtures/real-tar.js';
import { writeFilesTar } from '../fixtures/image.js';
import { gnuGzip, goGzip, pigz, prng, variedData } from '../format/gzipindex/helpers.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { cleanupOnSignal } from '../helpers/signal-cleanup.js';

const run = promisify(execFile);
const here = fileURLToPath(new URL('.', import.meta.url));
const cli = join(here, '../fs/helpers/starling.ts');
const dump = join(here, '../fs/helpers/tree-dump.mjs');
const T = { timeout: 240_000 };
const SPAN = 256 << 10;

let registry: RunningRegistry;
let work: string;
let ref: string;
let layers: Descriptor[];
/** Each layer's index as `starling index --out` wrote it, by layer digest. */
const indexes = new Map<Digest, GzipIndex>();
let pulledDump: string[];

/** Incompressible bytes: a span of them is larger compressed than a neighbourhood window (256 KiB at first). */
function noise(size: number, seed: number): Buffer {
  const rnd = prng(seed);
  return Buffer.from(Array.from({ length: size }, () => Math.floor(rnd() * 256)));
}

/** Small files around a large one, in two directories: several files share each span. */
const SMALL: Record<string, Buffer> = {};
for (let i = 0; i < 60; i++) SMALL[`srv/a/f${String(i).padStart(2, '0')}.txt`] = noise(3000 + i * 97, 100 + i);
SMALL['srv/big.bin'] = noise(1_500_000, 7);
for (let i = 0; i < 40; i++) SMALL[`srv/z/g${String(i).padStart(2, '0')}.dat`] = noise(9000 + i * 13, 300 + i);
const MEMBERS: Record<string, Buffer> = {};
for (let i = 0; i < 30; i++) MEMBERS[`opt/m/file${i}`] = variedData(20_000 + i * 1000, 500 + i);

function starling(...args: string[]) {
  return run(process.execPath, ['--import', 'tsx', cli, ...args], { maxBuffer: 64 << 20, env: { ...process.env, STARLING_RUN_DIR: join(work, 'run') } });
}

const blobPath = (d: Digest) => join(registry.dir, 'data/docker/registry/v2/blobs/sha256', digestHex(d).slice(0, 2), digestHex(d), 'data');

async function treeDump(root: string): Promise<string[]> {
  const { stdout } = await run(process.execPath, [dump, root], { maxBuffer: 64 << 20 });
  return stdout.trim().split('\n');
}

/** Same lines apart from mtimes, which may differ by one second: the index keeps whole seconds, a pull the PAX sub-second time. */
function assertSameTree(got: string[], want: string[]): void {
  const split = (l: string) => ({ line: l.replace(/ mtime=\d+/, ''), mtime: Number(/ mtime=(\d+)/.exec(l)?.[1] ?? 0) });
  const g = got.map(split);
  const w = want.map(split);
  assert.deepEqual(g.map((x) => x.line), w.map((x) => x.line));
  g.forEach((x, i) => assert.ok(Math.abs(x.mtime - w[i]!.mtime) <= 1, `${x.line}: mtime ${x.mtime} vs ${w[i]!.mtime}`));
}

/** Runs `body` on a fresh mount (its own cache directory) with `opts` (default: fetching on demand only), unmounted in finally. */
async function withMount(name: string, body: (mnt: string) => Promise<void>, opts = ['--no-prefetch', '--no-background-fetch']): Promise<void> {
  const mnt = join(work, `mnt-${name}`);
  await mkdir(mnt, { recursive: true });
  try {
    await starling('mount', ref, mnt, '--cache-dir', join(work, `cache-${name}`), ...opts);
  } catch (err) {
    const logs = await readdir(join(work, 'run')).then((ds) => Promise.all(ds.map((d) => readFile(join(work, 'run', d, 'daemon.log'), 'utf8').catch(() => ''))));
    throw new Error(`${(err as Error).message}\ndaemon logs:\n${logs.join('\n')}`);
  }
  try {
    await body(mnt);
  } finally {
    await starling('umount', mnt).catch(() => starling('umount', mnt, '--force'));
  }
}

async function stats(mnt: string): Promise<StatsReport> {
  return JSON.parse((await starling('stats', mnt, '--json')).stdout) as StatsReport;
}

/** Pushes `stored` indexes as the newest referrer of `subject` (default: the image's manifest); returns its descriptor and the image's manifest. */
async function pushIndexes(stored: Array<{ layer: Descriptor; stored: Buffer }>, subject?: Descriptor): Promise<{ pushed: Descriptor; manifest: Descriptor }> {
  const source = await openImageSource(ref, { plainHttp: true });
  try {
    const image = await resolveManifest(source);
    const { descriptor } = await pushGzipIndexes(registryOf(source)!, subject ?? image.manifestDescriptor, stored);
    return { pushed: descriptor, manifest: image.manifestDescriptor };
  } finally {
    await source.close();
  }
}

/** The indexes `starling index` made, pushed again as the newest referrer. */
async function pushGoodIndexes(): Promise<void> {
  await pushIndexes(await Promise.all(layers.map(async (l) => ({ layer: l, stored: await encodeGzipIndex(indexes.get(l.digest)!) }))));
}

/** A regular file of the layer lying inside one span, and that span's number. */
function fileInSpan(index: GzipIndex, pred: (span: number) => boolean): { path: string; span: number } {
  for (const e of index.entries) {
    if (e.type !== 'reg' || e.size === 0) continue;
    const span = spanAt(index, e.offset);
    if (spanAt(index, e.offset + e.size - 1) === span && pred(span)) return { path: e.path, span };
  }
  throw new Error('no such file');
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-gzidx-mount-'));
  cleanupOnSignal(work); // after() does not run on a signal
  registry = await startRegistry();
  ref = `docker://${registry.host}/gzidx/app:1`;
  const small = join(work, 'small.tar');
  const members = join(work, 'members.tar');
  await writeFilesTar(SMALL, small);
  await writeFilesTar(MEMBERS, members);
  const membersTar = await readFile(members);
  const third = Math.floor(membersTar.length / 3);
  const blobs = [
    gnuGzip(await readFile(await realTar('pax')), '-6'),
    pigz(await readFile(small), '-6'),
    // Several gzip members (as `cat a.gz b.gz c.gz`) from GNU gzip, Go's compress/gzip and pigz, cut in the middle of files.
    Buffer.concat([gnuGzip(membersTar.subarray(0, third)), goGzip(membersTar.subarray(third, 2 * third), '-level', '1'), pigz(membersTar.subarray(2 * third))]),
  ];
  const tars = [await realTar('pax'), small, members];
  const dst = await OciLayoutDestination.open(join(work, 'img'), 'latest');
  layers = [];
  const diffIDs: Digest[] = [];
  for (const [i, blob] of blobs.entries()) {
    const file = join(work, `layer${i}.gz`);
    await writeFile(file, blob);
    const { digest, size } = await hashFile(file);
    const descriptor = { mediaType: MediaType.ociLayerGzip, digest, size };
    await dst.putBlobFile(descriptor, file);
    layers.push(descriptor);
    diffIDs.push((await hashFile(tars[i]!)).digest);
  }
  const config = await putJSONBlob(dst, MediaType.ociConfig, jsonBytes({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIDs } }));
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers };
  await dst.setRoot(await putManifestBytes(dst, MediaType.ociManifest, jsonBytes(manifest)));
  await dst.close();
  await run('skopeo', ['copy', '-q', '--preserve-digests', '--dest-tls-verify=false', `oci:${join(work, 'img')}:latest`, ref]);
  const out = join(work, 'indexes');
  await starling('index', ref, '--span', `${SPAN >> 10}KiB`, '--min-layer-size', '1KiB', '--push', '--out', out);
  for (const l of layers) indexes.set(l.digest, await decodeGzipIndex(await readFile(join(out, `${digestHex(l.digest)}.gzindex`)), l));
  await starling('pull', ref, join(work, 'pulled'));
  pulledDump = await treeDump(join(work, 'pulled'));
});

after(async () => {
  await detachAll([], [join(work, 'run')]).catch(() => {});
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

test('every layer is lazy through its index and every path matches starling pull', T, async () => {
  for (const l of layers) assert.ok(indexes.get(l.digest)!.checkpoints.length >= 3, `${l.digest}: several spans`);
  await withMount('all', async (mnt) => {
    const s = await stats(mnt);
    assert.deepEqual(s.layers.map((l) => [l.format, l.lazy, l.reason]), layers.map(() => ['gzip-index', true, null]));
    assert.ok(s.layers.every((l) => l.fetchedBytes < 1024), 'opening a layer reads its tail only');
    // The index referrer counts in the metadata totals, with the manifest and the config.
    const source = await openImageSource(ref, { plainHttp: true });
    try {
      const image = await resolveManifest(source);
      const { fetched } = await findGzipIndexes(source, image).all;
      const blobs = (await Promise.all(layers.map((l) => encodeGzipIndex(indexes.get(l.digest)!)))).reduce((n, b) => n + b.length, 0);
      assert.ok(fetched.bytes > blobs, `${fetched.bytes} bytes fetched: the listing, the artifact manifest and ${blobs} bytes of index blobs`);
      assert.equal(s.totals.metadataBytes, image.manifestDescriptor.size + (await image.config).configBytes.length + fetched.bytes);
      assert.equal(s.totals.fetchedBytes, s.totals.metadataBytes + s.layers.reduce((n, l) => n + l.fetchedBytes, 0));
    } finally {
      await source.close();
    }
    assertSameTree(await treeDump(mnt), pulledDump);
    const read = await stats(mnt);
    assert.equal(read.totals.verificationFailures, 0);
    // A full read fetches each span once (some neighbourhood windows overlap by a byte or so).
    read.layers.forEach((l, i) => assert.ok(l.fetchedBytes <= layers[i]!.size * 1.05, `layer ${i}: ${l.fetchedBytes} of ${layers[i]!.size} bytes`));
  });
  // One FUSE mount per layer under overlayfs, with prefetch and the background fill on.
  await withMount('overlay', async (mnt) => assertSameTree(await treeDump(mnt), pulledDump), ['--mode', 'overlay']);
});

test('reading one small file fetches about one span', T, async () => {
  const layer = layers[1]!;
  const index = indexes.get(layer.digest)!;
  const { path, span } = fileInSpan(index, (i) => i > 0 && i < index.checkpoints.length - 1);
  const r = spanRange(index, span);
  await withMount('one-file', async (mnt) => {
    const before = (await stats(mnt)).layers[1]!;
    assert.ok((await run('cat', [join(mnt, path)], { encoding: 'buffer' })).stdout.equals(SMALL[path]!));
    const now = (await stats(mnt)).layers[1]!;
    assert.equal(now.requests - before.requests, 1);
    // Exactly the span's compressed bytes: the next span does not fit in the first neighbourhood window (256 KiB).
    assert.ok(spanRange(index, span + 1).end - r.start > 256 << 10);
    assert.equal(now.fetchedBytes - before.fetchedBytes, r.end - r.start);
  });
});

test('a tampered span gives EIO for the files in it only', T, async () => {
  const layer = layers[1]!;
  const index = indexes.get(layer.digest)!;
  const bad = fileInSpan(index, (i) => i > 0 && i < index.checkpoints.length - 1);
  const good = fileInSpan(index, (i) => Math.abs(i - bad.span) > 1);
  const r = spanRange(index, bad.span);
  const original = await readFile(blobPath(layer.digest));
  const tampered = Buffer.from(original);
  const mid = (r.start + r.end) >> 1;
  for (let k = mid; k < mid + 16; k++) tampered[k]! ^= 0x55;
  await writeFile(blobPath(layer.digest), tampered);
  try {
    await withMount('tampered', async (mnt) => {
      await assert.rejects(run('cat', [join(mnt, bad.path)], { encoding: 'buffer' }), /Input\/output error/);
      assert.ok((await run('cat', [join(mnt, good.path)], { encoding: 'buffer' })).stdout.equals(SMALL[good.path]!));
      assert.ok((await stats(mnt)).totals.verificationFailures >= 1);
    });
  } finally {
    await writeFile(blobPath(layer.digest), original);
  }
});

test('an index of another layer is refused with the reason and that layer is fetched whole', T, async () => {
  const [a, b, c] = layers as [Descriptor, Descriptor, Descriptor];
  // The newest referrer: the index of layer b given as layer a's, layer c's intact, none for b.
  await pushIndexes([
    { layer: a, stored: await encodeGzipIndex(indexes.get(b.digest)!) },
    { layer: c, stored: await encodeGzipIndex(indexes.get(c.digest)!) },
  ]);
  try {
    await withMount('refused', async (mnt) => {
      const s = await stats(mnt);
      assert.equal(s.layers[0]!.lazy, false);
      assert.match(s.layers[0]!.reason!, /gzip index was refused: .*it is the index of sha256:/);
      assert.ok(s.layers[0]!.fetchedBytes >= a.size);
      assert.equal(s.layers[1]!.lazy, false);
      assert.match(s.layers[1]!.reason!, /has none for this layer/);
      assert.equal(s.layers[2]!.format, 'gzip-index');
      assertSameTree(await treeDump(mnt), pulledDump);
    });
  } finally {
    await pushGoodIndexes();
  }
});

test('an index whose subject is another image is refused and every layer is fetched whole, with the reason', T, async () => {
  const other: Descriptor = { mediaType: MediaType.ociManifest, digest: sha256('another image'), size: 13 };
  const { pushed, manifest } = await pushIndexes(await Promise.all(layers.map(async (l) => ({ layer: l, stored: await encodeGzipIndex(indexes.get(l.digest)!) }))), other);
  // Listed among this image's referrers too, the newest (anyone who can push can edit the referrers tag).
  const tagUrl = `${registry.url}/v2/gzidx/app/manifests/sha256-${digestHex(manifest.digest)}`;
  const tagIndex = (await (await fetch(tagUrl, { headers: { accept: MediaType.ociIndex } })).json()) as ImageIndex;
  tagIndex.manifests.push(pushed);
  assert.equal((await fetch(tagUrl, { method: 'PUT', body: JSON.stringify(tagIndex), headers: { 'content-type': MediaType.ociIndex } })).status, 201);
  try {
    await withMount('other-image', async (mnt) => {
      const s = await stats(mnt);
      for (const l of s.layers) {
        assert.equal(l.lazy, false);
        assert.match(l.reason!, new RegExp(`its subject is ${other.digest}, not the image's manifest ${manifest.digest}`));
      }
      assertSameTree(await treeDump(mnt), pulledDump);
    });
  } finally {
    await pushGoodIndexes();
  }
});
