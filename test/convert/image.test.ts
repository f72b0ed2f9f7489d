import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { convertImage, type ConvertProgress, type ConvertSummary } from '../../src/convert/image.js';
import { digestHex, sha256, type Digest } from '../../src/oci/digest.js';
import { OciLayoutDestination, OciLayoutSource } from '../../src/oci/layout.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { parseConfig, parseIndex, parseManifest } from '../../src/oci/validate.js';
import { buildImage, type BuiltImage } from '../fixtures/image.js';
import { realTar } from '../fixtures/real-tar.js';

const run = promisify(execFile);
const ESTARGZ_TOC = 'containerd.io/snapshot/stargz/toc.digest';
const ESTARGZ_SIZE = 'io.containers.estargz.uncompressed-size';
const ZSTD_CHECKSUM = 'io.github.containers.zstd-chunked.manifest-checksum';
const ZSTD_KEYS = [ZSTD_CHECKSUM, 'io.github.containers.zstd-chunked.manifest-position', 'io.github.containers.zstd-chunked.tarsplit-position'];
const INTEROP_ESTARGZ = join(process.cwd(), '.interop-bin/estargz');
const INTEROP_ZSTDCHUNKED = join(process.cwd(), '.interop-bin/zstdchunked');

let work: string;
let srcDir: string;
let built: BuiltImage;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-convert-image-'));
  srcDir = join(work, 'src');
  built = await buildImage(
    srcDir,
    {
      layers: [{ tar: await realTar('pax') }, { files: { 'app/main.sh': '#!/bin/sh\necho hi\n', 'app/data.bin': Buffer.alloc(200_000, 3) } }],
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
      attestations: true,
      annotations: { 'org.opencontainers.image.source': 'https://example.invalid/starling', 'org.opencontainers.image.revision': 'abc123' },
      config: { config: { Env: ['PATH=/usr/bin'], Cmd: ['/app/main.sh'] } },
    },
    'v1',
  );
});

after(() => rm(work, { recursive: true, force: true }));

async function convert(dst: string, opts: Parameters<typeof convertImage>[2], src = `${srcDir}`, srcTag = 'v1', dstTag = 'out'): Promise<ConvertSummary> {
  const s = await OciLayoutSource.open(src, srcTag);
  const d = await OciLayoutDestination.open(dst, dstTag);
  return convertImage(s, d, opts);
}

async function blob(dir: string, d: Digest): Promise<Buffer> {
  return readFile(join(dir, 'blobs/sha256', digestHex(d)));
}

interface Loaded {
  index: ImageIndex;
  images: Array<{ entry: Descriptor; manifest: ImageManifest; config: ImageConfig }>;
}

async function load(dir: string, tag = 'out'): Promise<Loaded> {
  const src = await OciLayoutSource.open(dir, tag);
  const root = await src.resolveRoot();
  const index = parseIndex(root.bytes, root.descriptor.mediaType);
  const images = [];
  for (const entry of index.manifests) {
    if (entry.annotations?.['vnd.docker.reference.type']) continue;
    const manifest = parseManifest(await src.fetchJSONBytes(entry), entry.mediaType);
    images.push({ entry, manifest, config: parseConfig(await src.fetchJSONBytes(manifest.config)) });
  }
  return { index, images };
}

async function zstdDigest(path: string): Promise<Digest> {
  const { stdout } = await run('sh', ['-c', `zstd -dc '${path}' | sha256sum`]);
  return `sha256:${stdout.split(' ')[0]}`;
}

test('multi-platform image → eStargz: layers, diffIDs, configs, annotations, attestations; skopeo and Go accept it', async () => {
  const dst = join(work, 'estargz');
  const events: ConvertProgress[] = [];
  const summary = await convert(dst, { format: 'estargz', platforms: 'all', level: 1, onProgress: (e) => events.push(e) });
  // The two platforms share their layers: each is converted once.
  assert.equal(summary.layersConverted, 2);
  assert.equal(summary.manifests.length, 2);
  assert.equal(summary.carried.length, 2);
  const plan = events.find((e) => e.type === 'plan');
  assert.deepEqual(plan, { type: 'plan', layers: 2, bytes: built.layers.reduce((a, l) => a + l.descriptor.size, 0) });
  assert.equal(events.filter((e) => e.type === 'bytes').reduce((a, e) => a + (e.type === 'bytes' ? e.bytes : 0), 0), plan.bytes);

  const { index, images } = await load(dst);
  assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
  assert.deepEqual(index.annotations, { 'org.opencontainers.image.source': 'https://example.invalid/starling', 'org.opencontainers.image.revision': 'abc123' });
  assert.equal(sha256(await blob(dst, summary.root.digest)), summary.root.digest);
  assert.deepEqual(images.map((i) => i.entry.platform), [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }]);

  // Attestation manifests: the same bytes and blobs, in their original places; their index entries
  // now point at the converted image of their platform.
  assert.deepEqual(
    index.manifests.filter((m) => m.annotations?.['vnd.docker.reference.type']),
    built.attestations.map((a, i) => ({ ...a, annotations: { ...a.annotations, 'vnd.docker.reference.digest': images[i]!.entry.digest } })),
  );
  assert.deepEqual(index.manifests.slice(2).map((m) => m.digest), built.attestations.map((a) => a.digest));
  for (const att of built.attestations) {
    const m = parseManifest(await blob(dst, att.digest));
    for (const b of [m.config, ...m.layers]) assert.deepEqual(await blob(dst, b.digest), await blob(srcDir, b.digest));
  }

  for (const [p, img] of images.entries()) {
    const orig = built.manifests[p]!;
    assert.equal(img.entry.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(img.manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.deepEqual(img.manifest.annotations, orig.manifest.annotations);
    assert.notEqual(img.manifest.config.digest, orig.manifest.config.digest);
    assert.equal(img.manifest.config.mediaType, 'application/vnd.oci.image.config.v1+json');
    // Everything but diff_ids survives in the config.
    assert.deepEqual({ ...img.config, rootfs: undefined }, { ...orig.config, rootfs: undefined });
    for (const [i, layer] of img.manifest.layers.entries()) {
      const bytes = await blob(dst, layer.digest);
      assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
      assert.equal(sha256(bytes), layer.digest);
      assert.equal(bytes.length, layer.size);
      const tar = gunzipSync(bytes);
      assert.equal(img.config.rootfs.diff_ids[i], sha256(tar), 'eStargz diffID = sha256 of the decompressed blob');
      assert.notEqual(img.config.rootfs.diff_ids[i], orig.config.rootfs.diff_ids[i]);
      assert.match(layer.annotations?.[ESTARGZ_TOC] ?? '', /^sha256:[0-9a-f]{64}$/);
      assert.equal(layer.annotations?.[ESTARGZ_SIZE], String(tar.length));
      for (const k of ZSTD_KEYS) assert.ok(!(k in (layer.annotations ?? {})), k);
    }
  }
  assert.deepEqual(images[0]!.manifest.layers, images[1]!.manifest.layers);

  // skopeo (containers/image) reads what we wrote.
  const { stdout } = await run('skopeo', ['inspect', '--override-arch', 'arm64', `oci:${dst}:out`]);
  const info = JSON.parse(stdout) as { Architecture: string; Layers: string[] };
  assert.equal(info.Architecture, 'arm64');
  assert.deepEqual(info.Layers, images[1]!.manifest.layers.map((l) => l.digest));
  const raw = await run('skopeo', ['inspect', '--raw', `oci:${dst}:out`]);
  assert.equal(sha256(raw.stdout), summary.root.digest);

  // The Go reference reader opens every converted layer and verifies it against our TOC digest.
  await access(INTEROP_ESTARGZ);
  for (const layer of images[0]!.manifest.layers) {
    const { stdout: out } = await run(INTEROP_ESTARGZ, ['verify', join(dst, 'blobs/sha256', digestHex(layer.digest)), layer.annotations![ESTARGZ_TOC]!], { maxBuffer: 64 << 20 });
    const v = JSON.parse(out) as { tocDigest: string; regularFiles: number; verifiedChunks: number };
    assert.equal(v.tocDigest, layer.annotations![ESTARGZ_TOC]);
    assert.ok(v.regularFiles > 0 && v.verifiedChunks >= v.regularFiles);
  }
});

test('converting the eStargz image again passes every layer through and is a no-op', async () => {
  const dst = join(work, 'estargz');
  const first = (await load(dst)).index;
  const again = join(work, 'estargz-again');
  const summary = await convert(again, { format: 'estargz', platforms: 'all' }, dst, 'out');
  assert.equal(summary.layersConverted, 0);
  assert.equal(summary.layersPassedThrough, 2);
  assert.equal(sha256(await blob(again, summary.root.digest)), sha256(await blob(dst, (await OciLayoutSource.open(dst, 'out').then((s) => s.resolveRoot())).descriptor.digest)));
  assert.deepEqual((await load(again)).index, first);
});

test('a layer that claims eStargz but whose TOC does not verify is converted again, with a warning', async () => {
  const dir = join(work, 'estargz');
  const { images } = await load(dir);
  const m = structuredClone(images[0]!.manifest);
  m.layers[1]!.annotations![ESTARGZ_TOC] = sha256('wrong');
  const bytes = Buffer.from(JSON.stringify(m));
  await writeFile(join(dir, 'blobs/sha256', digestHex(sha256(bytes))), bytes);
  const idx = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: unknown[] };
  idx.manifests.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(bytes), size: bytes.length, annotations: { 'org.opencontainers.image.ref.name': 'lying' } });
  await writeFile(join(dir, 'index.json'), JSON.stringify(idx));
  const dst = join(work, 'relabelled');
  const summary = await convert(dst, { format: 'estargz', platforms: 'all', level: 1 }, dir, 'lying');
  assert.deepEqual([summary.layersPassedThrough, summary.layersConverted], [1, 1]);
  assert.match(summary.warnings.join('\n'), /layers\[1\] .*claims estargz but its TOC does not verify \(.*TOC digest mismatch.*\); converted again/);
  const out = (await loadSingle(dst)).manifest;
  assert.equal(out.layers[0]!.digest, m.layers[0]!.digest);
  assert.notEqual(out.layers[1]!.annotations![ESTARGZ_TOC], sha256('wrong'));
  const { stdout } = await run(INTEROP_ESTARGZ, ['verify', join(dst, 'blobs/sha256', digestHex(out.layers[1]!.digest)), out.layers[1]!.annotations![ESTARGZ_TOC]!]);
  assert.equal((JSON.parse(stdout) as { tocDigest: string }).tocDigest, out.layers[1]!.annotations![ESTARGZ_TOC]);
});

test('eStargz → zstd:chunked and straight to zstd:chunked: diffIDs, annotations, no eStargz leftovers', async () => {
  // From the original image: zstd:chunked keeps the diffIDs.
  const direct = join(work, 'zstd');
  await convert(direct, { format: 'zstd:chunked', platforms: 'all', level: 1 });
  const d = await load(direct);
  for (const img of d.images) {
    assert.deepEqual(img.config.rootfs.diff_ids, built.layers.map((l) => l.diffID));
    for (const [i, layer] of img.manifest.layers.entries()) {
      assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
      assert.equal(await zstdDigest(join(direct, 'blobs/sha256', digestHex(layer.digest))), built.layers[i]!.diffID);
      for (const k of ZSTD_KEYS) assert.ok(k in layer.annotations!, k);
      assert.ok(!(ESTARGZ_TOC in layer.annotations!) && !(ESTARGZ_SIZE in layer.annotations!));
    }
  }
  // containers/storage's own manifest reader (Go, 1.43) reads and verifies every chunk of our layers.
  await access(INTEROP_ZSTDCHUNKED);
  for (const layer of d.images[0]!.manifest.layers) {
    const a = layer.annotations!;
    const { stdout } = await run(INTEROP_ZSTDCHUNKED, ['read', join(direct, 'blobs/sha256', digestHex(layer.digest)), a[ZSTD_CHECKSUM]!, a['io.github.containers.zstd-chunked.manifest-position']!], { maxBuffer: 64 << 20 });
    const summary = JSON.parse(stdout.trim().split('\n').pop()!) as { files: number; chunks: number };
    assert.ok(summary.files > 0 && summary.chunks >= summary.files, stdout.slice(-200));
  }
  // From the eStargz image: the TOC entry and landmarks go; diffIDs are of what the blob decompresses to.
  const fromEstargz = join(work, 'zstd-from-estargz');
  const summary = await convert(fromEstargz, { format: 'zstd:chunked', platforms: 'all', level: 1 }, join(work, 'estargz'), 'out');
  assert.equal(summary.layersConverted, 2);
  const z = await load(fromEstargz);
  for (const img of z.images) {
    for (const [i, layer] of img.manifest.layers.entries()) {
      const path = join(fromEstargz, 'blobs/sha256', digestHex(layer.digest));
      assert.equal(await zstdDigest(path), img.config.rootfs.diff_ids[i]);
      const { stdout } = await run('sh', ['-c', `zstd -dc '${path}' | tar -t`], { maxBuffer: 64 << 20 });
      assert.ok(!/^(stargz\.index\.json|\.prefetch\.landmark|\.no\.prefetch\.landmark)$/m.test(stdout));
      for (const k of ZSTD_KEYS) assert.ok(k in layer.annotations!, k);
      assert.ok(!(ESTARGZ_TOC in layer.annotations!) && !(ESTARGZ_SIZE in layer.annotations!), JSON.stringify(layer.annotations));
    }
  }
  // The small layer (tar-stream output, two zero blocks at the end) comes back byte for byte.
  assert.equal(z.images[0]!.config.rootfs.diff_ids[1], built.layers[1]!.diffID);
  // And back to eStargz: no zstd keys remain.
  const back = join(work, 'estargz-from-zstd');
  await convert(back, { format: 'estargz', platforms: 'all', level: 1 }, fromEstargz, 'out');
  for (const img of (await load(back)).images) {
    for (const layer of img.manifest.layers) {
      assert.ok(ESTARGZ_TOC in layer.annotations!);
      for (const k of ZSTD_KEYS) assert.ok(!(k in layer.annotations!), k);
    }
  }
  const { stdout } = await run('skopeo', ['inspect', `oci:${fromEstargz}:out`]);
  assert.equal((JSON.parse(stdout) as { Layers: string[] }).Layers.length, 2);
});

test('--force converts layers already in the target format', async () => {
  const dst = join(work, 'forced');
  const summary = await convert(dst, { format: 'zstd:chunked', platforms: 'all', force: true, level: 1 }, join(work, 'zstd'), 'out');
  assert.equal(summary.layersConverted, 2);
  assert.equal(summary.layersPassedThrough, 0);
  for (const img of (await load(dst)).images) assert.deepEqual(img.config.rootfs.diff_ids, built.layers.map((l) => l.diffID));
});

test('platform selection keeps the chosen platforms and their attestations only', async () => {
  const dst = join(work, 'arm64');
  const summary = await convert(dst, { format: 'zstd:chunked', platforms: [{ os: 'linux', architecture: 'aarch64' }], level: 1 });
  assert.deepEqual(summary.manifests.map((m) => m.platform), ['linux/arm64/v8']);
  const { index } = await load(dst);
  assert.equal(index.manifests.length, 2);
  assert.equal(index.manifests[1]!.digest, built.attestations[1]!.digest);
  assert.equal(index.manifests[1]!.annotations?.['vnd.docker.reference.digest'], summary.manifests[0]!.digest);
  await assert.rejects(convert(join(work, 'none'), { format: 'estargz', platforms: [{ os: 'linux', architecture: 's390x' }] }), /has no image for platform linux\/s390x \(it has linux\/amd64, linux\/arm64\/v8\)/);
});

test('converting inside one layout adds a tag next to the source image', async () => {
  const dir = join(work, 'same');
  const b = await buildImage(dir, { layers: [{ files: { 'x/y': 'z' } }] }, 'v1');
  await convert(dir, { format: 'zstd:chunked', platforms: 'all', level: 1 }, dir, 'v1', 'v1-zstd');
  const src = await OciLayoutSource.open(dir);
  assert.deepEqual(src.tags(), ['v1', 'v1-zstd']);
  assert.equal((await (await OciLayoutSource.open(dir, 'v1')).resolveRoot()).descriptor.digest, b.root.digest);
  assert.ok(!(await readdir(dir)).some((n) => n.startsWith('.')));
  for (const tag of ['v1', 'v1-zstd']) await run('skopeo', ['inspect', `oci:${dir}:${tag}`]);
  // Converting onto the source's own tag replaces it; the other tag is kept.
  const s2 = await convert(dir, { format: 'estargz', platforms: 'all', level: 1 }, dir, 'v1', 'v1');
  const after = await OciLayoutSource.open(dir);
  assert.deepEqual(after.tags().sort(), ['v1', 'v1-zstd']);
  assert.equal((await (await OciLayoutSource.open(dir, 'v1')).resolveRoot()).descriptor.digest, s2.root.digest);
  assert.notEqual(s2.root.digest, b.root.digest);
});

test('nested indexes are converted; non-image artifacts in an index are carried untouched', async () => {
  const dir = join(work, 'nested');
  const b = await buildImage(dir, { layers: [{ files: { n: 'nested' } }], platforms: [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }] }, 'inner');
  // An artifact (not an image: its config is no image config) next to the image index.
  const put = async (bytes: Buffer) => writeFile(join(dir, 'blobs/sha256', digestHex(sha256(bytes))), bytes);
  const artConfig = Buffer.from('{}');
  const artLayer = Buffer.from('chart bytes');
  await put(artConfig);
  await put(artLayer);
  const art = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.example.config+json', digest: sha256(artConfig), size: artConfig.length }, layers: [{ mediaType: 'application/vnd.example.chart', digest: sha256(artLayer), size: artLayer.length }] }));
  await put(art);
  const outer = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ ...b.root }, { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(art), size: art.length, artifactType: 'application/vnd.example.chart' }] }));
  await put(outer);
  const idx = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: unknown[] };
  idx.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: sha256(outer), size: outer.length, annotations: { 'org.opencontainers.image.ref.name': 'outer' } });
  await writeFile(join(dir, 'index.json'), JSON.stringify(idx));

  const dst = join(work, 'nested-out');
  const summary = await convert(dst, { format: 'estargz', platforms: [{ os: 'linux', architecture: 'arm64' }], level: 1 }, dir, 'outer');
  assert.deepEqual(summary.manifests.map((m) => m.platform), ['linux/arm64']);
  assert.deepEqual(summary.carried, [sha256(art)]);
  const root = parseIndex(await blob(dst, summary.root.digest));
  assert.equal(root.manifests.length, 2);
  assert.deepEqual(root.manifests[1], { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(art), size: art.length, artifactType: 'application/vnd.example.chart' });
  assert.deepEqual(await blob(dst, sha256(artLayer)), artLayer);
  const inner = parseIndex(await blob(dst, root.manifests[0]!.digest));
  assert.deepEqual(inner.manifests.map((m) => m.platform), [{ os: 'linux', architecture: 'arm64' }]);
  const m = parseManifest(await blob(dst, inner.manifests[0]!.digest));
  assert.ok(ESTARGZ_TOC in m.layers[0]!.annotations!);
  // A manifest that is not an image cannot be the thing converted.
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(art), size: art.length, annotations: { 'org.opencontainers.image.ref.name': 'art' } }] }));
  await assert.rejects(convert(join(work, 'nested-art'), { format: 'estargz', platforms: 'all' }, dir, 'art'), /is not a container image \(config media type application\/vnd.example.config\+json\)/);
});

test('Docker v2.2 input becomes OCI output', async () => {
  const src = join(work, 'docker-src');
  await buildImage(src, { layers: [{ files: { 'a.txt': 'docker layer' } }], docker: true, platforms: [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }] }, 'd');
  const dst = join(work, 'docker-dst');
  await convert(dst, { format: 'estargz', platforms: 'all' }, src, 'd');
  const { index, images } = await load(dst);
  assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
  for (const img of images) {
    assert.equal(img.entry.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(img.manifest.config.mediaType, 'application/vnd.oci.image.config.v1+json');
    assert.equal(img.manifest.layers[0]!.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  }
  const { stdout } = await run('skopeo', ['inspect', `oci:${dst}:out`]);
  assert.equal((JSON.parse(stdout) as { Layers: string[] }).Layers.length, 1);
});

test('zstd:chunked from skopeo 1.9 (older layout, tar padding dropped) converts, keeping the original diffIDs', async () => {
  // A GNU tar with the usual 10240-byte record padding, which containers/storage 1.43 drops.
  const tree = join(work, 'gnu-tree');
  await run('sh', ['-c', `mkdir -p '${tree}/etc' '${tree}/bin' && echo conf > '${tree}/etc/app.conf' && head -c 300000 /usr/bin/zstd > '${tree}/bin/tool'`]);
  const tar = join(work, 'gnu.tar');
  await run('tar', ['-C', tree, '--format=gnu', '--sort=name', '-cf', tar, 'etc', 'bin']);
  const src = join(work, 'gnu-src');
  const b = await buildImage(src, { layers: [{ tar }] }, 't');
  const sk = join(work, 'skopeo-zstd');
  await run('skopeo', ['copy', '--dest-compress-format', 'zstd:chunked', `oci:${src}:t`, `oci:${sk}:t`]);
  const skManifest = parseManifest(await blob(sk, parseIndex(await readFile(join(sk, 'index.json'))).manifests[0]!.digest));
  assert.ok('io.containers.zstd-chunked.manifest-checksum' in skManifest.layers[0]!.annotations!, 'skopeo wrote the older layout');
  assert.notEqual(await zstdDigest(join(sk, 'blobs/sha256', digestHex(skManifest.layers[0]!.digest))), b.layers[0]!.diffID, 'skopeo dropped the padding');

  const dst = join(work, 'from-skopeo');
  const summary = await convert(dst, { format: 'zstd:chunked', platforms: 'all', level: 1 }, sk, 't');
  assert.equal(summary.layersConverted, 1);
  assert.match(summary.warnings[0] ?? '', /lacked \d+ trailing zero bytes of padding .* restored/);
  const img = (await loadSingle(dst)).manifest;
  const layer = img.layers[0]!;
  assert.equal(await zstdDigest(join(dst, 'blobs/sha256', digestHex(layer.digest))), b.layers[0]!.diffID);
  assert.deepEqual(Object.keys(layer.annotations!).sort(), [...ZSTD_KEYS].sort());
  const config = parseConfig(await blob(dst, img.config.digest));
  assert.deepEqual(config.rootfs.diff_ids, [b.layers[0]!.diffID]);
});

async function loadSingle(dir: string, tag = 'out'): Promise<{ manifest: ImageManifest }> {
  const root = await (await OciLayoutSource.open(dir, tag)).resolveRoot();
  return { manifest: parseManifest(root.bytes, root.descriptor.mediaType) };
}

test('bad input: clear errors and DST index.json untouched', async () => {
  const dst = join(work, 'bad-dst');
  await buildImage(dst, { layers: [{ files: { keep: 'me' } }] }, 'existing');
  const indexBefore = await readFile(join(dst, 'index.json'));

  async function expectFailure(srcDir: string, tag: string, re: RegExp): Promise<void> {
    await assert.rejects(convert(dst, { format: 'estargz', platforms: 'all' }, srcDir, tag, 'out'), re);
    assert.deepEqual(await readFile(join(dst, 'index.json')), indexBefore);
    assert.ok(!(await readdir(dst)).some((n) => n.startsWith('.starling-convert-') || n.startsWith('.tmp-')));
  }

  // Unsupported layer media type.
  const mt = join(work, 'bad-mediatype');
  const b1 = await buildImage(mt, { layers: [{ files: { a: 'a' } }] }, 't');
  const m1 = { ...b1.manifests[0]!.manifest, layers: [{ ...b1.manifests[0]!.manifest.layers[0]!, mediaType: 'application/vnd.example.layer+weird' }] };
  const m1bytes = Buffer.from(JSON.stringify(m1));
  await writeFile(join(mt, 'blobs/sha256', digestHex(sha256(m1bytes))), m1bytes);
  await writeFile(join(mt, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(m1bytes), size: m1bytes.length, annotations: { 'org.opencontainers.image.ref.name': 't' } }] }));
  await expectFailure(mt, 't', /manifest\[linux\/amd64\]\.layers\[0\]\.mediaType: unsupported layer media type "application\/vnd.example.layer\+weird"/);

  // A layer blob that is not a tar (correct digest, so only the content is wrong).
  const notTar = join(work, 'not-tar');
  const b2 = await buildImage(notTar, { layers: [{ files: { a: 'a' } }], compression: 'none' }, 't');
  const junk = Buffer.alloc(4096, 0x41);
  const l2 = { ...b2.layers[0]!.descriptor, digest: sha256(junk), size: junk.length };
  await writeFile(join(notTar, 'blobs/sha256', digestHex(l2.digest)), junk);
  await rewriteImage(notTar, b2, [l2], [sha256(junk)]);
  await expectFailure(notTar, 't', /layers\[0\] \(sha256:[0-9a-f]{64}\): (not a tar|tar header)/);

  // A truncated layer blob (size no longer matches its descriptor).
  const trunc = join(work, 'truncated');
  const b3 = await buildImage(trunc, { layers: [{ files: { a: 'a'.repeat(10000) } }] }, 't');
  const p3 = join(trunc, 'blobs/sha256', digestHex(b3.layers[0]!.descriptor.digest));
  await writeFile(p3, (await readFile(p3)).subarray(0, 50));
  await expectFailure(trunc, 't', /file has 50 bytes, its descriptor declares/);

  // A layer whose content is not what the config's diff_ids says.
  const lie = join(work, 'lying-config');
  const b4 = await buildImage(lie, { layers: [{ files: { a: 'a' } }] }, 't');
  await rewriteImage(lie, b4, [b4.layers[0]!.descriptor], [sha256('something else')]);
  await expectFailure(lie, 't', /uncompressed content is sha256:[0-9a-f]{64}, but the config's rootfs.diff_ids says/);

  // diff_ids and layers disagree in number.
  const count = join(work, 'count');
  const b5 = await buildImage(count, { layers: [{ files: { a: 'a' } }] }, 't');
  await rewriteImage(count, b5, [b5.layers[0]!.descriptor], []);
  await expectFailure(count, 't', /config.rootfs.diff_ids: has 0 entries but the manifest has 1 layers/);
});

/** Replaces the image tagged `t` in `dir` by one with these layers and diff_ids (blobs must exist). */
async function rewriteImage(dir: string, b: BuiltImage, layers: Descriptor[], diffIDs: Digest[]): Promise<void> {
  const config = Buffer.from(JSON.stringify({ ...b.manifests[0]!.config, rootfs: { type: 'layers', diff_ids: diffIDs } }));
  await writeFile(join(dir, 'blobs/sha256', digestHex(sha256(config))), config);
  const manifest = Buffer.from(JSON.stringify({ ...b.manifests[0]!.manifest, config: { ...b.manifests[0]!.manifest.config, digest: sha256(config), size: config.length }, layers }));
  await writeFile(join(dir, 'blobs/sha256', digestHex(sha256(manifest))), manifest);
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(manifest), size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': 't' } }] }));
}
