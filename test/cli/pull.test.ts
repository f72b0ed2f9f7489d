// `starling pull` against a real Distribution: multi-layer, multi-platform images (gzip and zstd)
// with whiteouts, verified and extracted in order; corrupted bytes and hostile layers leave no DIR.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pack } from 'tar-stream';
import { command as pull } from '../../src/cli/pull.js';
import { sha256 } from '../../src/oci/digest.js';
import { OciLayoutSource } from '../../src/oci/layout.js';
import { openRegistryDestination, openRegistrySource } from '../../src/registry/image.js';
import { pullImage } from '../../src/registry/pull.js';
import { buildImage, type BuiltImage, type ImageSpec } from '../fixtures/image.js';
import { realTar } from '../fixtures/real-tar.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { copyImage } from '../registry/copy.js';

let reg: RunningRegistry;
let proxy: FaultProxy;
let work: string;

/** Runs `starling pull ARGS` in this process; returns its exit code and stdout. */
async function runPull(args: string[]): Promise<{ code: number; out: string }> {
  const write = process.stdout.write;
  let out = '';
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  }) as typeof process.stdout.write;
  try {
    return { code: await pull.run(args), out };
  } finally {
    process.stdout.write = write;
  }
}

async function push(name: string, spec: ImageSpec): Promise<BuiltImage> {
  const layout = join(work, `layout-${name.replace(/[/:]/g, '-')}`);
  const built = await buildImage(layout, spec, 'v1');
  const dst = await openRegistryDestination(`docker://${reg.host}/${name}`);
  await copyImage(await OciLayoutSource.open(layout, 'v1'), dst);
  await dst.close();
  return built;
}

async function hostileTar(): Promise<string> {
  const file = join(work, 'hostile.tar');
  const p = pack();
  const done = pipeline(p, createWriteStream(file));
  p.entry({ name: 'ok', type: 'file', size: 2 }, 'ok');
  p.entry({ name: '../escaped', type: 'file', size: 5 }, 'owned');
  p.finalize();
  await done;
  return file;
}

before(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy(reg.url);
  work = await mkdtemp(join(tmpdir(), 'starling-pull-'));
});

after(async () => {
  await proxy?.stop();
  await reg?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const layers: ImageSpec['layers'] = [
  { files: { 'etc/os-release': 'NAME=base\n', 'etc/motd': 'hello\n', 'var/cache/a': 'a', 'var/cache/b': 'b', 'opt/tool/v1': 'v1' } },
  { files: { 'etc/.wh.motd': '', 'var/cache/.wh..wh..opq': '', 'var/cache/c': 'c', 'opt/.wh.tool': '' } },
];

for (const compression of ['gzip', 'zstd'] as const) {
  test(`pulls a multi-layer ${compression} image for the platform asked, whiteouts applied`, async () => {
    const real = await realTar('pax');
    const built = await push(`pull/${compression}:v1`, {
      layers: [{ tar: real }, ...layers, { files: { 'etc/os-release': 'NAME=top\n', 'usr/bin/app': 'app' } }],
      compression,
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
      attestations: true,
    });
    const dir = join(work, `rootfs-${compression}`);
    const { code, out } = await runPull([`docker://${reg.host}/pull/${compression}:v1`, dir, '--platform', 'linux/arm64', '--json']);
    assert.equal(code, 0);
    const s = JSON.parse(out) as { manifestDigest: string; platform: string; layers: number; bytesTransferred: number; bytesExtracted: number };
    assert.equal(s.manifestDigest, built.manifests[1]!.descriptor.digest);
    assert.equal(s.platform, 'linux/arm64');
    assert.equal(s.layers, 4);
    assert.equal(s.bytesTransferred, built.layers.reduce((n, l) => n + l.descriptor.size, 0));
    assert.ok(s.bytesExtracted > (await stat(real)).size);

    assert.equal(await readFile(join(dir, 'etc/os-release'), 'utf8'), 'NAME=top\n');
    await assert.rejects(lstat(join(dir, 'etc/motd')), { code: 'ENOENT' });
    assert.deepEqual(await readdir(join(dir, 'var/cache')), ['c']);
    await assert.rejects(lstat(join(dir, 'opt/tool')), { code: 'ENOENT' });
    assert.equal(await readFile(join(dir, 'usr/bin/app'), 'utf8'), 'app');
    assert.equal(sha256(await readFile(join(dir, 'data/big.bin'))), sha256(await readFile('/usr/lib/go-1.19/pkg/tool/linux_amd64/compile')));
    assert.equal(await readlink(join(dir, 'links/abs-symlink')), '/usr/bin/zstd');
    // Nothing but DIR was left behind next to it.
    assert.deepEqual((await readdir(work)).filter((n) => n.startsWith(`.rootfs-${compression}`)), []);
  });
}

test('pulls from an oci: layout too', async () => {
  const layout = join(work, 'oci-src');
  await buildImage(layout, { layers }, 'v1');
  const dir = join(work, 'rootfs-oci');
  await mkdir(dir); // an empty DIR is fine
  const { code: nested } = await runPull([`oci:${layout}:v1`, join(work, 'new/parent/dirs/rootfs')]);
  assert.equal(nested, 0);
  assert.equal(await readFile(join(work, 'new/parent/dirs/rootfs/etc/os-release'), 'utf8'), 'NAME=base\n');
  const { code, out } = await runPull([`oci:${layout}:v1`, dir]);
  assert.equal(code, 0);
  assert.match(out, /^pulled oci:.*: 2 layers, /);
  assert.deepEqual((await readdir(join(dir, 'var/cache'))).sort(), ['c']);
  assert.equal(await readFile(join(dir, 'etc/os-release'), 'utf8'), 'NAME=base\n');
});

test('altered layer bytes fail the pull and leave no DIR', async () => {
  const built = await push('pull/altered:v1', { layers });
  const dir = join(work, 'rootfs-altered');
  const layer = built.layers[1]!.descriptor.digest;
  proxy.inject({ kind: 'alter-bytes', offset: 40, match: { method: 'GET', path: `/blobs/${layer}` }, times: Infinity });
  try {
    await assert.rejects(runPull([`docker://${proxy.host}/pull/altered:v1`, dir, '--platform', 'linux/amd64']), new RegExp(`blob ${layer}: blob digest mismatch|layer 1 \\(${layer}\\)`));
  } finally {
    proxy.clear();
  }
  await assert.rejects(lstat(dir), { code: 'ENOENT' });
  assert.deepEqual((await readdir(work)).filter((n) => n.startsWith('.rootfs-altered')), []);
});

test('an interrupted pull stops its downloads and leaves no DIR', async () => {
  const built = await push('pull/interrupt:v1', { layers });
  const dir = join(work, 'rootfs-interrupted');
  for (const l of built.layers) proxy.inject({ kind: 'delay', ms: 3000, match: { method: 'GET', path: `/blobs/${l.descriptor.digest}` } });
  const interrupt = new AbortController();
  const source = await openRegistrySource(`docker://${proxy.host}/pull/interrupt:v1`);
  const t0 = Date.now();
  setTimeout(() => interrupt.abort(), 300);
  await assert.rejects(pullImage(source, dir, { signal: interrupt.signal }), /pull interrupted/);
  assert.ok(Date.now() - t0 < 2500, `took ${Date.now() - t0} ms`);
  await source.close();
  proxy.clear();
  await assert.rejects(lstat(dir), { code: 'ENOENT' });
  assert.deepEqual((await readdir(work)).filter((n) => n.startsWith('.rootfs-interrupted')), []);
});

test('layers download in parallel while the first one is extracted', async () => {
  const built = await push('pull/parallel:v1', {
    layers: [{ files: { a: 'a' } }, { files: { b: 'b' } }, { files: { c: 'c' } }, { files: { d: 'd' } }],
  });
  // One after the other, the four 700 ms answers would start at least 2.1 s apart.
  for (const l of built.layers) proxy.inject({ kind: 'delay', ms: 700, match: { method: 'GET', path: `/blobs/${l.descriptor.digest}` } });
  const n = proxy.log.length;
  const { code } = await runPull([`docker://${proxy.host}/pull/parallel:v1`, join(work, 'rootfs-parallel')]);
  assert.equal(code, 0);
  const gets = proxy.log.slice(n).filter((r) => r.fault === 'delay');
  assert.equal(gets.length, 4);
  const spread = Math.max(...gets.map((r) => r.at)) - Math.min(...gets.map((r) => r.at));
  assert.ok(spread < 1400, `layer downloads started ${spread} ms apart: not in parallel`);
  for (const f of ['a', 'b', 'c', 'd']) assert.equal(await readFile(join(work, 'rootfs-parallel', f), 'utf8'), f);
});

test('a hostile layer is refused: nothing outside DIR, no DIR', async () => {
  const sandbox = join(work, 'sandbox');
  await mkdir(sandbox);
  await push('pull/hostile:v1', { layers: [{ files: { 'base/file': 'base' } }, { tar: await hostileTar() }] });
  const dir = join(sandbox, 'rootfs');
  await assert.rejects(runPull([`docker://${reg.host}/pull/hostile:v1`, dir]), /layer 1 \(sha256:[0-9a-f]{64}\): entry "\.\.\/escaped" contains '\.\.'/);
  assert.deepEqual(await readdir(sandbox), []);
  await assert.rejects(lstat(join(work, 'escaped')), { code: 'ENOENT' });
});

test('a non-empty DIR, a bad platform and a missing tag are clear errors', async () => {
  await push('pull/small:v1', { layers: [{ files: { f: 'x' } }] });
  const full = join(work, 'full');
  await mkdir(full);
  await writeFile(join(full, 'keep'), 'mine');
  await assert.rejects(runPull([`docker://${reg.host}/pull/small:v1`, full]), /full exists and is not empty/);
  assert.equal(await readFile(join(full, 'keep'), 'utf8'), 'mine');
  await assert.rejects(runPull([`docker://${reg.host}/pull/small:v1`, join(work, 'p1'), '--platform', 'linux/s390x']), /no image for platform linux\/s390x|s390x/);
  await assert.rejects(runPull([`docker://${reg.host}/pull/small:nope`, join(work, 'p2')]), /repository pull\/small, tag nope/);
  await assert.rejects(runPull(['only-one-arg']), /expected REF and DIR/);
});
