// Prefetch profiles end to end on Distribution 2.8 (the referrers tag schema) and through our
// referrers-API proxy in front of it: `record --push` on an unchanged eStargz / zstd:chunked image,
// then `mount` prefetches exactly the profile's chunks (counted in the chunk cache) and the workload
// fetches nothing more; the image's digest never changes; `profile ls|rm|push`; a bad profile is
// ignored with the reason in stats and the mount still works. Reads of a mount happen in child
// processes; every mount is unmounted in `finally` or `after`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { pack } from 'tar-stream';
import { FileBlob } from '../../src/blob/source.js';
import { openLayerToc } from '../../src/format/open.js';
import type { StatsReport } from '../../src/mount/image-mount.js';
import { detachAll } from '../../src/mount/stale.js';
import { parseProfile, type PrefetchProfile } from '../../src/image/profile.js';
import { openProfileTarget, profileArtifact } from '../../src/image/profile-registry.js';
import { pushReferrer } from '../../src/image/referrers.js';
import { digestHex, type Digest } from '../../src/oci/digest.js';
import type { ImageManifest } from '../../src/oci/types.js';
import { buildImage } from '../fixtures/image.js';
import { buildReader } from '../fixtures/reader.js';
import { startReferrersProxy, type ReferrersProxy } from '../helpers/referrers-proxy.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { cleanupOnSignal } from '../helpers/signal-cleanup.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../fs/helpers/starling.ts', import.meta.url));

// Whole files (a partial read would make the mount read ahead of it at replay, beyond what was
// recorded); unused.bin is never read, so never prefetched.
const WORKLOAD = ['/bin/reader', 'b.bin', '/data/c.txt', 'a.txt'];

let registry: RunningRegistry;
let proxy: ReferrersProxy;
let work: string;
const mounted = new Set<string>();

function starling(...args: string[]) {
  return run(process.execPath, ['--import', 'tsx', cli, ...args], { maxBuffer: 16 << 20, env: { ...process.env, STARLING_RUN_DIR: join(work, 'run') } });
}

const ref = (format: string, host = registry.host) => `docker://${host}/profile/app:${format}`;

async function mount(image: string, mnt: string, ...opts: string[]): Promise<void> {
  await mkdir(mnt, { recursive: true });
  mounted.add(mnt);
  await starling('mount', image, mnt, '--no-background-fetch', ...opts);
}

async function umount(mnt: string): Promise<void> {
  await starling('umount', mnt);
  mounted.delete(mnt);
}

const stats = async (mnt: string) => JSON.parse((await starling('stats', mnt, '--json')).stdout) as StatsReport;

/** Stats once the profile is settled and every layer's prefetch has finished. */
async function settled(mnt: string): Promise<StatsReport> {
  for (let i = 0; ; i++) {
    const s = await stats(mnt);
    if (s.profile.state !== 'pending' && s.layers.every((l) => l.prefetch.state === 'done' || l.prefetch.state === 'off')) return s;
    assert.ok(i < 300, `prefetch did not finish: ${JSON.stringify({ profile: s.profile, prefetch: s.layers.map((l) => l.prefetch) })}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function manifestDigest(format: string): Promise<string> {
  const res = await fetch(`${registry.url}/v2/profile/app/manifests/${format}`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  return res.headers.get('docker-content-digest')!;
}

async function manifestOf(format: string): Promise<ImageManifest> {
  const res = await fetch(`${registry.url}/v2/profile/app/manifests/${format}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  return (await res.json()) as ImageManifest;
}

const blobPath = (d: Digest) => join(registry.dir, 'data/docker/registry/v2/blobs/sha256', digestHex(d).slice(0, 2), digestHex(d), 'data');

/** A layer tar of regular files with their modes (and their directories). */
async function layerTar(out: string, files: Array<[string, number, Buffer]>): Promise<string> {
  const p = pack();
  const done = pipeline(p, createWriteStream(out));
  for (const dir of new Set(files.map(([name]) => name.slice(0, name.lastIndexOf('/'))))) p.entry({ name: dir, type: 'directory', mode: 0o755 });
  for (const [name, mode, content] of files) p.entry({ name, mode, size: content.length }, content);
  p.finalize();
  await done;
  return out;
}

/** The chunks (digests) a profile names in an image, from the layers' own TOCs. */
async function profileChunks(profile: PrefetchProfile, manifest: ImageManifest): Promise<Set<string>> {
  const out = new Set<string>();
  for (const pl of profile.layers) {
    const desc = manifest.layers.find((l) => l.digest === pl.digest)!;
    const blob = await FileBlob.open(blobPath(desc.digest));
    try {
      const opened = await openLayerToc(blob, desc);
      assert.ok(opened.ok);
      for (const f of pl.files) {
        const entry = opened.toc.entries.filter((e) => e.path === f.path).at(-1)!;
        for (const c of entry.chunks) {
          if (!c.zeros && c.size > 0 && f.ranges.some(([s, e]) => c.fileOffset < e && s < c.fileOffset + c.size)) out.add(c.digest);
        }
      }
    } finally {
      await blob.close();
    }
  }
  return out;
}

/** The chunk digests in a cache directory. */
async function cachedChunks(cache: string): Promise<Set<string>> {
  const out = new Set<string>();
  const dir = join(cache, 'chunks');
  for (const sub of await readdir(dir)) for (const f of await readdir(join(dir, sub))) out.add(`sha256:${f}`);
  return out;
}

/** The chunks in a cache directory once there are `n` (its writes may trail a prefetch a little), or after 5 s. */
async function cachedChunksOnceAtLeast(cache: string, n: number): Promise<Set<string>> {
  let cached = await cachedChunks(cache);
  for (let i = 0; i < 50 && cached.size < n; i++) {
    await new Promise((r) => setTimeout(r, 100));
    cached = await cachedChunks(cache);
  }
  return cached;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-profile-test-'));
  cleanupOnSignal(work); // after() does not run on a signal
  registry = await startRegistry();
  proxy = await startReferrersProxy(registry.url);
  const reader = await buildReader(work);
  const real = await readFile('/usr/bin/python3.11');
  const lower = await layerTar(join(work, 'lower.tar'), [
    ['bin/reader', 0o755, reader],
    ['data/a.txt', 0o644, Buffer.from('alpha\n')],
    ['data/b.bin', 0o644, real.subarray(0, 3_000_000)],
    ['data/unused.bin', 0o644, real.subarray(3_000_000, 3_500_000)],
  ]);
  const upper = await layerTar(join(work, 'upper.tar'), [['data/c.txt', 0o644, Buffer.from('gamma from the upper layer\n')]]);
  await buildImage(join(work, 'gzip'), { layers: [{ tar: lower }, { tar: upper }], config: { config: { Env: ['PATH=/bin'], WorkingDir: '/data' } } }, 'latest');
  // Never optimised: no landmark, so whatever a mount prefetches comes from the profile.
  await starling('convert', `oci:${join(work, 'gzip')}:latest`, ref('estargz'), '--format', 'estargz', '--chunk-size', '262144');
  await starling('convert', `oci:${join(work, 'gzip')}:latest`, ref('zstd'), '--format', 'zstd:chunked');
  // Optimised for another workload: unused.bin before the landmark.
  await starling('convert', `oci:${join(work, 'gzip')}:latest`, ref('estargz-opt'), '--format', 'estargz', '--chunk-size', '262144', '--prioritize', '/data/unused.bin');
});

after(async () => {
  for (const mnt of mounted) await starling('umount', mnt, '--force').catch(() => {});
  await detachAll([], [join(work, 'run')]).catch(() => {});
  await proxy?.stop();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

for (const format of ['estargz', 'zstd']) {
  test(`${format}: record --push, then a mount of the unchanged image prefetches exactly the profile's chunks and the workload fetches nothing more`, { timeout: 180_000 }, async () => {
    const digest = await manifestDigest(format);
    const profileFile = join(work, `${format}.profile.json`);
    const { stdout } = await starling('record', ref(format), '--push', '--name', 'reader', '--profile-out', profileFile, '--json', '--', ...WORKLOAD);
    const summary = JSON.parse(stdout) as { files: number; profile: { digest: string; name: string; via: string } };
    assert.equal(summary.files, 4);
    assert.equal(summary.profile.via, 'tag', 'Distribution 2.8 has no referrers API');
    assert.equal(await manifestDigest(format), digest, 'the image is unchanged');
    const profile = parseProfile(await readFile(profileFile));
    const manifest = await manifestOf(format);
    // The reader and the lower files in layer 0, in first-read order, c.txt in layer 1.
    assert.deepEqual(profile.layers.map((l) => [l.digest, l.files.map((f) => f.path)]), [
      [manifest.layers[0]!.digest, ['bin/reader', 'data/b.bin', 'data/a.txt']],
      [manifest.layers[1]!.digest, ['data/c.txt']],
    ]);
    assert.deepEqual(profile.layers[0]!.files[1]!.ranges, [[0, 3_000_000]]);
    const want = await profileChunks(profile, manifest);
    assert.ok(want.size > 4, `b.bin alone is several chunks: ${want.size}`);

    const listed = JSON.parse((await starling('profile', 'ls', ref(format), '--json')).stdout) as { via: string; profiles: Array<{ digest: string; name: string; command: string[] }> };
    assert.deepEqual(listed.profiles.map((p) => [p.digest, p.name, p.command]), [[summary.profile.digest, 'reader', WORKLOAD]]);

    for (const host of [registry.host, proxy.host]) {
      const cache = join(work, `cache-${format}-${host.replace(/\W/g, '-')}`);
      const mnt = join(work, `mnt-${format}`);
      await mount(ref(format, host), mnt, '--cache-dir', cache);
      try {
        const s = await settled(mnt);
        assert.equal(s.profile.state, 'used', JSON.stringify(s.profile));
        assert.equal(s.profile.digest, summary.profile.digest);
        assert.equal(s.profile.via, host === proxy.host ? 'api' : 'tag', 'the API is used where the registry has it');
        // Exactly the profile's chunks were fetched: count them in the cache.
        const cached = await cachedChunksOnceAtLeast(cache, want.size);
        assert.deepEqual([...cached].sort(), [...want].sort());
        const before = s.layers.map((l) => [l.fetchedBytes, l.requests]);
        const res = await run('unshare', [`--root=${mnt}`, '--wd=/data', ...WORKLOAD]);
        assert.match(res.stdout, /^read \d+ bytes/);
        const afterRun = await stats(mnt);
        assert.deepEqual(afterRun.layers.map((l) => [l.fetchedBytes, l.requests]), before, 'the workload fetched nothing more');
        assert.equal(afterRun.totals.verificationFailures, 0);
      } finally {
        await umount(mnt);
      }
    }
    assert.equal(await manifestDigest(format), digest, 'the image is unchanged');
  });
}

test('--profile none and a bad profile: nothing prefetched, the reason in stats, the mount works', { timeout: 120_000 }, async () => {
  const target = await openProfileTarget(ref('estargz'));
  try {
    const hostile = Buffer.from(JSON.stringify({ version: 1, layers: [{ digest: target.manifest.layers[0]!.digest, files: [{ path: '../../etc/shadow', ranges: [[0, 1]] }] }] }));
    await pushReferrer(target.client, target.repository, profileArtifact(target.subject, hostile, { name: 'hostile' }));
  } finally {
    await target.close();
  }
  const mnt = join(work, 'mnt-bad');
  for (const [opt, state, reason] of [
    ['hostile', 'ignored', /files\[0\]\.path: .*escapes the layer root/],
    ['none', 'off', null],
    ['missing', 'none', /no prefetch profile named "missing"/],
  ] as const) {
    const cache = join(work, `cache-bad-${opt}`);
    await mount(ref('estargz'), mnt, '--cache-dir', cache, '--profile', opt);
    try {
      const s = await settled(mnt);
      assert.equal(s.profile.state, state, JSON.stringify(s.profile));
      if (reason) assert.match(s.profile.reason!, reason);
      assert.deepEqual(s.layers.map((l) => l.prefetch.total), [0, 0], 'nothing prefetched');
      assert.equal((await cachedChunks(cache)).size, 0);
      assert.equal((await run('cat', [join(mnt, 'data/c.txt')])).stdout, 'gamma from the upper layer\n');
      assert.match((await starling('stats', mnt)).stdout, new RegExp(`prefetch profile: ${state}`));
    } finally {
      await umount(mnt);
    }
  }
});

test('profile push of a file, rm by name: the mount then uses the newest usable one; the CLI refuses a hostile file', { timeout: 120_000 }, async () => {
  const file = join(work, 'estargz.profile.json');
  const pushed = (await starling('profile', 'push', file, ref('estargz'), '--name', 'again')).stdout.trim();
  assert.match(pushed, /^sha256:[0-9a-f]{64}$/);
  const names = async () => (JSON.parse((await starling('profile', 'ls', ref('estargz'), '--json')).stdout) as { profiles: Array<{ name: string }> }).profiles.map((p) => p.name);
  assert.deepEqual(await names(), ['again', 'hostile', 'reader']);
  const mnt = join(work, 'mnt-rm');
  await mount(ref('estargz'), mnt, '--cache-dir', join(work, 'cache-rm-1'));
  try {
    assert.deepEqual([(await settled(mnt)).profile.name, (await settled(mnt)).profile.digest], ['again', pushed]);
  } finally {
    await umount(mnt);
  }
  assert.match((await starling('profile', 'rm', ref('estargz'), '--name', 'again')).stdout, new RegExp(`${pushed}  removed \\(manifest deleted\\)`));
  assert.deepEqual(await names(), ['hostile', 'reader']);
  await mount(ref('estargz'), mnt, '--cache-dir', join(work, 'cache-rm-2'));
  try {
    // The newest is the hostile one: skipped, with its reason, for the next.
    const s = await settled(mnt);
    assert.equal(s.profile.state, 'used');
    assert.equal(s.profile.name, 'reader');
    assert.match(s.profile.reason!, /^skipped newer: sha256:[0-9a-f]{64} \(hostile\): .*escapes the layer root/);
    assert.ok(s.layers[0]!.prefetch.total > 0);
  } finally {
    await umount(mnt);
  }
  const bad = join(work, 'hostile.json');
  await writeFile(bad, JSON.stringify({ version: 1, layers: [{ digest: `sha256:${'0'.repeat(64)}`, files: [{ path: 'a/../../b', ranges: [[0, 1]] }] }] }));
  await assert.rejects(starling('profile', 'push', bad, ref('estargz'), '--name', 'x'), (err: { code: number; stderr: string }) => err.code === 1 && /files\[0\]\.path/.test(err.stderr));
  await assert.rejects(starling('profile', 'rm', ref('estargz')), (err: { code: number }) => err.code === 2);
});

test('on an optimised image, the profile and the landmark prefix combine', { timeout: 120_000 }, async () => {
  const profileFile = join(work, 'opt.profile.json');
  await starling('record', ref('estargz-opt'), '--push', '--profile-out', profileFile, '--', ...WORKLOAD);
  const manifest = await manifestOf('estargz-opt');
  const want = await profileChunks(parseProfile(await readFile(profileFile)), manifest);
  const landmark = new Set<string>();
  for (const desc of manifest.layers) {
    const blob = await FileBlob.open(blobPath(desc.digest));
    try {
      const opened = await openLayerToc(blob, desc);
      assert.ok(opened.ok);
      for (const e of opened.toc.entries) for (const c of e.chunks) if (opened.toc.prefetchEnd !== undefined && c.start < opened.toc.prefetchEnd && !c.zeros && c.size > 0) landmark.add(c.digest);
    } finally {
      await blob.close();
    }
  }
  assert.ok(landmark.size > 0 && [...landmark].some((d) => !want.has(d)), 'the landmark prefix holds chunks the profile does not');
  const cache = join(work, 'cache-opt');
  const mnt = join(work, 'mnt-opt');
  await mount(ref('estargz-opt'), mnt, '--cache-dir', cache);
  try {
    assert.equal((await settled(mnt)).profile.state, 'used');
    const union = new Set([...want, ...landmark]);
    const cached = await cachedChunksOnceAtLeast(cache, union.size);
    assert.deepEqual([...cached].sort(), [...union].sort());
  } finally {
    await umount(mnt);
  }
});

test('convert --referrers: the profiles come along, re-targeted to the converted manifest and layers; one that does not verify or whose name fails the check at push is left behind with a warning', { timeout: 180_000 }, async () => {
  // A chunk size of its own: the same conversion as ref('estargz') would be the same manifest, with that one's profiles.
  await starling('convert', `oci:${join(work, 'gzip')}:latest`, ref('carry-src'), '--format', 'estargz', '--chunk-size', '131072');
  const source = await manifestOf('carry-src');
  const file = join(work, 'carry.profile.json');
  const files = [{ path: 'bin/reader', ranges: [[0, 1 << 20]] }, { path: 'data/a.txt', ranges: [[0, 6]] }];
  await writeFile(file, JSON.stringify({ version: 1, layers: [{ digest: source.layers[0]!.digest, files }] }));
  await starling('profile', 'push', file, ref('carry-src'), '--name', 'carried');
  // A profile of another image's layers, pushed behind the CLI's back: the source image's mounts ignore it.
  const target = await openProfileTarget(ref('carry-src'));
  try {
    const stray = Buffer.from(JSON.stringify({ version: 1, layers: [{ digest: `sha256:${'1'.repeat(64)}`, files: [{ path: 'x', ranges: [[0, 1]] }] }] }));
    await pushReferrer(target.client, target.repository, profileArtifact(target.subject, stray, { name: 'stray' }));
    // A good profile under a name `profile push` refuses: it verifies against the source, the push of its copy refuses the name.
    const good = Buffer.from(JSON.stringify({ version: 1, layers: [{ digest: source.layers[0]!.digest, files }] }));
    await pushReferrer(target.client, target.repository, profileArtifact(target.subject, good, { name: 'bad name!' }));
  } finally {
    await target.close();
  }
  const sourceDigest = await manifestDigest('carry-src');

  // (A level of its own too: converted alike, it would be ref('zstd')'s manifest, which has profiles.)
  const res = await starling('convert', ref('carry-src'), ref('carry-dst'), '--format', 'zstd:chunked', '--level', '5', '--referrers', '--json');
  const summary = JSON.parse(res.stdout) as { manifests: Array<{ digest: string }>; profiles: Array<{ name: string; subject: string }> };
  assert.deepEqual(summary.profiles.map((p) => [p.name, p.subject]), [['carried', summary.manifests[0]!.digest]]);
  assert.match(res.stderr, /profile sha256:[0-9a-f]{64} \(stray\) of sha256:[0-9a-f]{64} not carried: .*layer/);
  assert.match(res.stderr, /profile sha256:[0-9a-f]{64} of sha256:[0-9a-f]{64} not carried: profile name "bad name!": use 1-/);
  assert.equal(res.stderr.match(/not carried/g)?.length, 2);
  assert.equal(await manifestDigest('carry-src'), sourceDigest, 'the source is unchanged');
  const listed = JSON.parse((await starling('profile', 'ls', ref('carry-dst'), '--json')).stdout) as { profiles: Array<{ name: string }> };
  assert.deepEqual(listed.profiles.map((p) => p.name), ['carried']);

  // A mount of the converted image prefetches exactly the carried profile's files in the new layers.
  const converted = await manifestOf('carry-dst');
  assert.notEqual(converted.layers[0]!.digest, source.layers[0]!.digest);
  const want = await profileChunks({ version: 1, layers: [{ digest: converted.layers[0]!.digest, files: files as PrefetchProfile['layers'][0]['files'] }] }, converted);
  const cache = join(work, 'cache-carry');
  const mnt = join(work, 'mnt-carry');
  await mount(ref('carry-dst'), mnt, '--cache-dir', cache);
  try {
    const s = await settled(mnt);
    assert.deepEqual([s.profile.state, s.profile.name], ['used', 'carried']);
    const cached = await cachedChunksOnceAtLeast(cache, want.size);
    assert.deepEqual([...cached].sort(), [...want].sort());
  } finally {
    await umount(mnt);
  }
  await assert.rejects(starling('convert', ref('carry-src'), `oci:${join(work, 'carry-oci')}:latest`, '--format', 'estargz', '--referrers'), (err: { code: number; stderr: string }) => err.code === 2 && /--referrers: .*docker:\/\//.test(err.stderr));
});
