// `starling inspect` and `starling inspect-layer` on images and blobs we converted (and skopeo's).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { command as inspectLayer } from '../../src/cli/inspect-layer.js';
import { command as inspect } from '../../src/cli/inspect.js';
import { UserError } from '../../src/cli/command.js';
import { inspectImage, inspectLayerFile, type ImageReport, type LayerFileReport } from '../../src/convert/inspect.js';
import { openImageSource } from '../../src/registry/transport.js';
import { convertImage } from '../../src/convert/image.js';
import { digestHex, sha256 } from '../../src/oci/digest.js';
import { OciLayoutDestination, OciLayoutSource } from '../../src/oci/layout.js';
import { parseIndex, parseManifest } from '../../src/oci/validate.js';
import { buildImage, writeFilesTar, type BuiltImage } from '../fixtures/image.js';

const run = promisify(execFile);
const TOC = 'containerd.io/snapshot/stargz/toc.digest';
let work: string;
let built: BuiltImage;

async function convertTo(format: 'estargz' | 'zstd:chunked', dir: string): Promise<void> {
  await convertImage(await OciLayoutSource.open(join(work, 'src'), 'v1'), await OciLayoutDestination.open(dir, 'v1'), { format, platforms: 'all', level: 1 });
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-cli-inspect-'));
  built = await buildImage(
    join(work, 'src'),
    {
      layers: [{ files: { 'bin/app': Buffer.alloc(120_000, 5), 'etc/conf': 'c=1\n', 'lib/': '' } }, { files: { 'data/a': 'a', 'data/b': 'b' } }],
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm', variant: 'v7' },
      ],
      attestations: true,
      annotations: { 'org.opencontainers.image.version': '1.2.3' },
    },
    'v1',
  );
  await convertTo('estargz', join(work, 'esgz'));
  await convertTo('zstd:chunked', join(work, 'zstd'));
});

after(() => rm(work, { recursive: true, force: true }));

/** Runs `starling NAME ARGS` in a child process the way main.ts does (UserError → stderr + exit code). */
async function runCommand(name: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const script = `
    const { command } = await import(${JSON.stringify(new URL(`../../src/cli/${name}.ts`, import.meta.url).href)});
    const { UserError } = await import(${JSON.stringify(new URL('../../src/cli/command.ts', import.meta.url).href)});
    try { process.exitCode = await command.run(process.argv.slice(1)); }
    catch (e) { if (!(e instanceof UserError)) throw e; process.stderr.write('starling: ' + e.message + '\\n'); process.exitCode = e.exitCode; }`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, ...args], { maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') reject(error);
      else resolve({ code: error ? (error.code as number) : 0, out: stdout, err: stderr });
    });
  });
}

/** The report `inspect --json` prints, computed in this process (the CLI path is run for one image). */
async function report(ref: string): Promise<ImageReport> {
  const src = await openImageSource(ref);
  try {
    return JSON.parse(JSON.stringify(await inspectImage(src))) as ImageReport;
  } finally {
    await src.close();
  }
}

async function rejectsUser(p: Promise<unknown>, re: RegExp, code: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof UserError && re.test(e.message) && e.exitCode === code);
}

test('inspect --json: platforms, attestations, eStargz and zstd:chunked layers with verified TOCs', async () => {
  for (const [dir, format, tocKey] of [
    ['esgz', 'estargz', TOC],
    ['zstd', 'zstd:chunked', 'io.github.containers.zstd-chunked.manifest-checksum'],
  ] as const) {
    let r: ImageReport;
    if (dir === 'esgz') {
      const { code, out } = await runCommand('inspect', [`oci:${join(work, dir)}:v1`, '--json']);
      assert.equal(code, 0);
      r = JSON.parse(out) as ImageReport;
    } else r = await report(`oci:${join(work, dir)}:v1`);
    assert.equal(r.root.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(r.annotations, { 'org.opencontainers.image.version': '1.2.3' });
    assert.deepEqual(r.manifests.map((m) => m.platform ?? (m.attestationFor ? 'attestation' : '?')), ['linux/amd64', 'linux/arm/v7', 'attestation', 'attestation']);
    const images = r.manifests.filter((m) => m.platform);
    assert.equal(r.manifests[2]!.attestationFor, images[0]!.descriptor.digest);
    const layout = await OciLayoutSource.open(join(work, dir), 'v1');
    const manifest = parseManifest(await layout.fetchJSONBytes(images[0]!.descriptor));
    for (const [i, l] of images[0]!.layers.entries()) {
      assert.equal(l.format, format);
      assert.equal(l.lazy, true);
      assert.equal(l.toc?.tocDigest, manifest.layers[i]!.annotations![tocKey]);
      assert.equal(l.error, undefined);
    }
    // bin/ etc/ lib/ dirs + 2 files; data/ + 2 files.
    assert.deepEqual(images[0]!.layers.map((l) => [l.toc!.entries, l.toc!.files]), [[5, 2], [3, 2]]);
    assert.ok(images[0]!.layers[0]!.toc!.chunks >= 2);
  }
  // The original image: plain gzip layers, not lazy-capable, with the reason.
  const plain = await report(`oci:${join(work, 'src')}:v1`);
  const l0 = plain.manifests[0]!.layers[0]!;
  assert.equal(l0.format, 'gzip');
  assert.equal(l0.lazy, false);
  assert.equal(l0.toc, undefined);
  assert.match(l0.detail, /plain gzip layer/);
  assert.equal(l0.digest, built.layers[0]!.descriptor.digest);
});

test('inspect (human) lists every platform and layer; a TOC digest that does not verify is an error (exit 1)', async () => {
  const { code, out } = await runCommand('inspect', [`oci:${join(work, 'esgz')}:v1`]);
  assert.equal(code, 0);
  assert.match(out, /^oci:.*esgz:v1\n {2}application\/vnd.oci.image.index.v1\+json sha256:[0-9a-f]{64}/);
  assert.match(out, /\n {2}linux\/arm\/v7 {2}sha256:[0-9a-f]{64} {2}config sha256:[0-9a-f]{64} {2}2 layers\n {4}#0 sha256:[0-9a-f]{64} .* estargz +toc sha256:[0-9a-f]{64} {2}5 entries/);
  assert.match(out, /attestation sha256:[0-9a-f]{64} for sha256:/);

  // Point a layer's annotation at the wrong TOC digest (a new manifest and a single-manifest root).
  const dir = join(work, 'esgz');
  const layout = await OciLayoutSource.open(dir, 'v1');
  const index = parseIndex((await layout.resolveRoot()).bytes);
  const m = parseManifest(await layout.fetchJSONBytes(index.manifests[0]!));
  m.layers[1]!.annotations![TOC] = sha256('not the toc');
  const bytes = Buffer.from(JSON.stringify(m));
  await writeFile(join(dir, 'blobs/sha256', digestHex(sha256(bytes))), bytes);
  const idx = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: unknown[] };
  idx.manifests.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(bytes), size: bytes.length, annotations: { 'org.opencontainers.image.ref.name': 'tampered' } });
  await writeFile(join(dir, 'index.json'), JSON.stringify(idx));
  const bad = await runCommand('inspect', [`oci:${dir}:tampered`, '--json']);
  assert.equal(bad.code, 1);
  const r = JSON.parse(bad.out) as ImageReport;
  assert.equal(r.manifests[0]!.platform, 'linux/amd64');
  assert.equal(r.manifests[0]!.layers[0]!.error, undefined);
  assert.match(r.manifests[0]!.layers[1]!.error ?? '', /TOC digest mismatch/);

  await rejectsUser(inspect.run([`oci:${join(work, 'nope')}`]), /^oci:.*nope: directory .* does not exist/, 1);
  await rejectsUser(inspect.run([]), /expected one REF/, 2);
});

test('inspect-layer: eStargz, zstd:chunked (ours and skopeo 1.9), plain blobs; --toc and --toc-digest', async () => {
  const layout = await OciLayoutSource.open(join(work, 'esgz'), 'v1');
  const index = parseIndex((await layout.resolveRoot()).bytes);
  const m = parseManifest(await layout.fetchJSONBytes(index.manifests[0]!));
  const layer = m.layers[0]!;
  const path = join(work, 'esgz/blobs/sha256', digestHex(layer.digest));

  const j = JSON.parse((await runCommand('inspect-layer', [path, '--json', '--toc', '--toc-digest', layer.annotations![TOC]!])).out) as LayerFileReport & { entries: Array<{ path: string; type: string; xattrs: object }> };
  assert.equal(j.format, 'estargz');
  assert.equal(j.compression, 'gzip');
  assert.equal(j.digest, layer.digest);
  assert.equal(j.tocVerified, true);
  assert.equal(j.toc?.tocDigest, layer.annotations![TOC]);
  assert.deepEqual(j.entries.map((e) => `${e.type} ${e.path}`), ['dir bin', 'reg bin/app', 'dir etc', 'reg etc/conf', 'dir lib']);

  const human = await runCommand('inspect-layer', [path, '--toc']);
  assert.match(human.out, /: eStargz, .* sha256:[0-9a-f]{64}\n {2}TOC sha256:[0-9a-f]{64} at offset \d+ \(not verified: no --toc-digest\)\n/);
  assert.match(human.out, /\n {2}-0644 +0:0 +120000 \/bin\/app \d+ chunks?\n/);

  await rejectsUser(inspectLayer.run([path, '--toc-digest', sha256('x')]), /TOC digest mismatch/, 1);
  await assert.rejects(inspectLayer.run([path, '--toc-digest', 'nope']), (e: unknown) => e instanceof UserError && /not a sha256 digest/.test(e.message));

  // Our zstd:chunked, verified by its manifest checksum.
  const zl = await OciLayoutSource.open(join(work, 'zstd'), 'v1');
  const zm = parseManifest(await zl.fetchJSONBytes(parseIndex((await zl.resolveRoot()).bytes).manifests[1]!));
  const zpath = join(work, 'zstd/blobs/sha256', digestHex(zm.layers[1]!.digest));
  const z: LayerFileReport = await inspectLayerFile(zpath, { tocDigest: zm.layers[1]!.annotations!['io.github.containers.zstd-chunked.manifest-checksum']! });
  assert.equal(z.format, 'zstd:chunked');
  assert.equal(z.tocVerified, true);
  assert.deepEqual([z.toc?.entries, z.toc?.files], [3, 2]);

  // skopeo 1.9 writes the older layout (40-byte footer): still recognised from the blob alone.
  const sk = join(work, 'skopeo');
  await run('skopeo', ['copy', '--dest-compress-format', 'zstd:chunked', `oci:${join(work, 'src')}:v1`, `oci:${sk}:v1`]);
  const skRoot = parseIndex(await readFile(join(sk, 'index.json'))).manifests[0]!;
  const skDoc = JSON.parse(await readFile(join(sk, 'blobs/sha256', digestHex(skRoot.digest)), 'utf8')) as { layers?: Array<{ digest: string }>; manifests?: Array<{ digest: string }> };
  const skManifest = skDoc.manifests ? parseManifest(await readFile(join(sk, 'blobs/sha256', digestHex(skDoc.manifests[0]!.digest as `sha256:${string}`)))) : parseManifest(JSON.stringify(skDoc));
  const s = await inspectLayerFile(join(sk, 'blobs/sha256', digestHex(skManifest.layers[0]!.digest)));
  assert.equal(s.format, 'zstd:chunked');
  assert.equal(s.toc?.files, 2);

  // Plain blobs.
  const plain = await inspectLayerFile(join(work, 'src/blobs/sha256', digestHex(built.layers[0]!.descriptor.digest)));
  assert.deepEqual([plain.format, plain.compression, plain.toc], ['gzip', 'gzip', undefined]);
  const tar = join(work, 'plain.tar');
  await writeFilesTar({ a: 'a' }, tar);
  const t = await inspectLayerFile(tar);
  assert.deepEqual([t.format, t.compression], ['tar', 'none']);
  await rejectsUser(inspectLayer.run([tar, '--toc-digest', sha256('x')]), /--toc-digest given, but the blob has no TOC/, 1);
  await rejectsUser(inspectLayer.run([join(work, 'missing')]), /ENOENT/, 1);
});
