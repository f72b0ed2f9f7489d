import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { buildImage, type BuiltImage } from '../fixtures/image.js';
import { OciLayoutDestination, OciLayoutSource } from '../../src/oci/layout.js';
import { sha256, Sha256Counter } from '../../src/oci/digest.js';
import { parseConfig, parseIndex, parseManifest } from '../../src/oci/validate.js';
import { digestHex } from '../../src/oci/digest.js';
import type { Descriptor } from '../../src/oci/types.js';
import type { Readable } from 'node:stream';

const run = promisify(execFile);

async function tmp(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'starling-layout-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function drain(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const FILES = { 'etc/hello': 'hello world\n', 'usr/bin/tool': Buffer.alloc(10_000, 7), 'empty-dir/': '' };

test('buildImage writes a single-platform image that OciLayoutSource reads back and verifies', async (t) => {
  const dir = await tmp(t);
  const built = await buildImage(dir, { layers: [{ files: FILES }, { files: { 'b.txt': 'second layer' } }], annotations: { 'org.opencontainers.image.title': 'fixture' } }, 'v1');
  assert.deepEqual(JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  const src = await OciLayoutSource.open(dir, 'v1');
  const { descriptor, bytes } = await src.resolveRoot();
  assert.equal(descriptor.digest, built.root.digest);
  const manifest = parseManifest(bytes, descriptor.mediaType);
  assert.equal(manifest.layers.length, 2);
  assert.equal(manifest.annotations?.['org.opencontainers.image.title'], 'fixture');
  const config = parseConfig(await src.fetchJSONBytes(manifest.config));
  assert.deepEqual(config.rootfs.diff_ids, built.layers.map((l) => l.diffID));
  // The diffID is the sha256 of the decompressed layer.
  const tar = await drain((await src.openBlobStream(manifest.layers[0]!)).pipe(createGunzip()));
  assert.equal(sha256(tar), config.rootfs.diff_ids[0]);
  const blob = await src.openBlobSource(manifest.layers[1]!);
  assert.equal(blob.size, manifest.layers[1]!.size);
  assert.equal(sha256(await blob.read(0, blob.size)), manifest.layers[1]!.digest);
  await blob.close();
});

test('multi-platform image with attestations is an index; skopeo accepts the layout', async (t) => {
  const dir = await tmp(t);
  const built: BuiltImage = await buildImage(
    dir,
    {
      layers: [{ files: FILES }],
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
      attestations: true,
      annotations: { 'org.opencontainers.image.source': 'https://example.invalid/x' },
    },
    'multi',
  );
  const src = await OciLayoutSource.open(dir, 'multi');
  const { descriptor, bytes } = await src.resolveRoot();
  const index = parseIndex(bytes, descriptor.mediaType);
  assert.equal(index.manifests.length, 4);
  assert.equal(index.manifests.filter((m) => m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest').length, 2);
  assert.equal(built.manifests[1]!.config.architecture, 'arm64');

  const { stdout } = await run('skopeo', ['inspect', '--override-arch', 'arm64', `oci:${dir}:multi`]);
  const info = JSON.parse(stdout) as { Architecture: string; Layers: string[] };
  assert.equal(info.Architecture, 'arm64');
  assert.deepEqual(info.Layers, [built.layers[0]!.descriptor.digest]);
  const raw = await run('skopeo', ['inspect', '--raw', `oci:${dir}:multi`]);
  assert.equal(sha256(raw.stdout), built.root.digest);
});

test('zstd and uncompressed layers, Docker media types', async (t) => {
  const dir = await tmp(t);
  const z = await buildImage(dir, { layers: [{ files: FILES }], compression: 'zstd' }, 'zstd');
  assert.equal(z.layers[0]!.descriptor.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
  const n = await buildImage(dir, { layers: [{ files: FILES }], compression: 'none' }, 'none');
  assert.equal(n.layers[0]!.descriptor.digest, n.layers[0]!.diffID);
  const d = await buildImage(dir, { layers: [{ files: FILES }], docker: true }, 'docker');
  assert.equal(d.root.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  // Three tags side by side in one index.json; the zstd blob decompresses to the same tar.
  const src = await OciLayoutSource.open(dir);
  assert.deepEqual(src.tags().sort(), ['docker', 'none', 'zstd']);
  assert.equal(z.layers[0]!.diffID, n.layers[0]!.diffID);
  // (skopeo 1.9 ignores index.json entries with Docker media types, so only our reader checks this one.)
  const docker = await (await OciLayoutSource.open(dir, 'docker')).resolveRoot();
  const m = parseManifest(docker.bytes, docker.descriptor.mediaType);
  assert.equal(m.config.mediaType, 'application/vnd.docker.container.image.v1+json');
  assert.equal(m.layers[0]!.mediaType, 'application/vnd.docker.image.rootfs.diff.tar.gzip');
  const { stdout } = await run('skopeo', ['inspect', `oci:${dir}:zstd`]);
  assert.equal((JSON.parse(stdout) as { Layers: string[] }).Layers[0], z.layers[0]!.descriptor.digest);
});

test('a tampered or truncated blob is refused with a clear error', async (t) => {
  const dir = await tmp(t);
  const built = await buildImage(dir, { layers: [{ files: FILES }] }, 'x');
  const layer = built.layers[0]!.descriptor;
  const path = join(dir, 'blobs/sha256', digestHex(layer.digest));
  const good = await readFile(path);
  const src = await OciLayoutSource.open(dir, 'x');

  // Same size, one byte flipped: the stream errors at its end naming the digest.
  const bad = Buffer.from(good);
  bad[bad.length - 5]! ^= 0xff;
  await writeFile(path, bad);
  await assert.rejects(drain(await src.openBlobStream(layer)), /blob sha256:[0-9a-f]{64}: digest mismatch: expected sha256:/);

  // Truncated: refused before reading.
  await truncate(path, good.length - 10);
  await assert.rejects(src.openBlobStream(layer), new RegExp(`file has ${good.length - 10} bytes, its descriptor declares ${good.length}`));
  await assert.rejects(src.openBlobSource(layer), /its descriptor declares/);

  // Missing.
  await rm(path);
  await assert.rejects(src.openBlobStream(layer), /missing from/);

  // A tampered config is refused by fetchJSONBytes.
  const configDesc = built.manifests[0]!.manifest.config;
  const configPath = join(dir, 'blobs/sha256', digestHex(configDesc.digest));
  const config = await readFile(configPath, 'utf8');
  await writeFile(configPath, config.replace('amd64', 'arm64'));
  await assert.rejects(src.fetchJSONBytes(configDesc), /digest mismatch/);
  await appendFile(configPath, ' ');
  await assert.rejects(src.fetchJSONBytes(configDesc), /descriptor declares/);
});

test('a blob longer than its descriptor fails as soon as it overflows', async (t) => {
  const dir = await tmp(t);
  const built = await buildImage(dir, { layers: [{ files: FILES }] }, 'x');
  const layer = built.layers[0]!.descriptor;
  const src = await OciLayoutSource.open(dir, 'x');
  const short: Descriptor = { ...layer, size: layer.size - 1 };
  // statBlob refuses a size disagreement up front; the streaming check is the second line of defence.
  await assert.rejects(src.openBlobStream(short), /descriptor declares/);
});

test('resolveRoot: tag selection and clear errors', async (t) => {
  const dir = await tmp(t);
  await buildImage(dir, { layers: [{ files: { a: 'a' } }] }, 'one');
  await buildImage(dir, { layers: [{ files: { b: 'b' } }] }, 'two');
  await assert.rejects((await OciLayoutSource.open(dir, 'three')).resolveRoot(), /no image tagged "three" in index.json \(tags: one, two\)/);
  await assert.rejects((await OciLayoutSource.open(dir)).resolveRoot(), /index.json has 2 images; name one as oci:DIR:TAG/);
  // Re-tagging replaces the entry with the same name.
  const again = await buildImage(dir, { layers: [{ files: { c: 'c' } }] }, 'one');
  const idx = parseIndex(await readFile(join(dir, 'index.json')));
  assert.equal(idx.manifests.length, 2);
  assert.equal((await (await OciLayoutSource.open(dir, 'one')).resolveRoot()).descriptor.digest, again.root.digest);

  await assert.rejects(OciLayoutSource.open(join(dir, 'nope')), /does not exist/);
  const empty = join(dir, 'emptydir');
  await mkdir(empty);
  await assert.rejects(OciLayoutSource.open(empty), /is not an OCI layout \(no oci-layout file\)/);
  await writeFile(join(empty, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}');
  await assert.rejects(OciLayoutSource.open(empty), /unsupported imageLayoutVersion "2.0.0"/);
  await writeFile(join(empty, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(join(empty, 'index.json'), '{"schemaVersion":2,"manifests":[{"mediaType":"x/y","digest":"sha256:zz","size":1}]}');
  await assert.rejects(OciLayoutSource.open(empty), /index.json.manifests\[0\].digest: not a sha256 digest: "sha256:zz"/);
});

test('an untagged multi-entry index.json is itself the root index', async (t) => {
  const dir = await tmp(t);
  const built = await buildImage(dir, { layers: [{ files: { a: 'a' } }], platforms: [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }] }, 'multi');
  // Rewrite index.json the way BuildKit's OCI exporter does: the platform manifests, no ref names.
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: built.manifests.map((m) => m.descriptor) }));
  const root = await (await OciLayoutSource.open(dir)).resolveRoot();
  assert.equal(parseIndex(root.bytes).manifests.length, 2);
  assert.equal(root.descriptor.digest, sha256(root.bytes));
});

test('OciLayoutDestination: refuses foreign directories, verifies manifests, writes index.json only at setRoot', async (t) => {
  const dir = await tmp(t);
  const foreign = join(dir, 'foreign');
  await mkdir(foreign);
  await writeFile(join(foreign, 'notes.txt'), 'mine');
  await assert.rejects(OciLayoutDestination.open(foreign), /exists, is not empty and is not an OCI layout/);
  await writeFile(join(dir, 'file'), 'x');
  await assert.rejects(OciLayoutDestination.open(join(dir, 'file')), /not a directory/);

  const out = join(dir, 'out');
  const dst = await OciLayoutDestination.open(out, 'latest');
  const bytes = Buffer.from('{"schemaVersion":2}');
  await assert.rejects(dst.putManifest({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256('other'), size: bytes.length }, bytes), /do not match descriptor/);
  const desc: Descriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(bytes), size: bytes.length };
  await assert.rejects(dst.setRoot(desc), /was not stored before setRoot/);
  await dst.putManifest(desc, bytes);
  assert.deepEqual((await readdir(out)).sort(), ['blobs', 'oci-layout']);
  await dst.setRoot(desc);
  const index = parseIndex(await readFile(join(out, 'index.json')));
  assert.deepEqual(index.manifests, [{ ...desc, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }]);
  // No temporary files left behind.
  assert.deepEqual(await readdir(join(out, 'blobs/sha256')), [digestHex(desc.digest)]);
  // putBlobFile refuses a file whose size disagrees with the descriptor.
  await writeFile(join(dir, 'blob'), 'abc');
  const counter = new Sha256Counter();
  counter.update(Buffer.from('abc'));
  await assert.rejects(dst.putBlobFile({ mediaType: 'x/y', digest: counter.digest(), size: 4 }, join(dir, 'blob')), /has 3 bytes/);
});

test('concurrent writers into one layout keep every tag (index.json updates are locked)', async (t) => {
  const dir = await tmp(t);
  const bytes = (i: number) => Buffer.from(JSON.stringify({ schemaVersion: 2, n: i }));
  const writers = await Promise.all(Array.from({ length: 12 }, (_, i) => OciLayoutDestination.open(dir, `t${i}`)));
  await Promise.all(
    writers.map(async (dst, i) => {
      const b = bytes(i);
      const desc: Descriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(b), size: b.length };
      await dst.putManifest(desc, b);
      await dst.setRoot(desc);
    }),
  );
  const tags = parseIndex(await readFile(join(dir, 'index.json'))).manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']);
  assert.deepEqual(tags.sort(), Array.from({ length: 12 }, (_, i) => `t${i}`).sort());
  assert.ok(!(await readdir(dir)).includes('index.json.lock'));
  // A stale lock (its writer died) is broken after a while rather than blocking forever.
  await writeFile(join(dir, 'index.json.lock'), '1\n');
  const old = new Date(Date.now() - 60_000);
  await utimes(join(dir, 'index.json.lock'), old, old);
  const b = bytes(99);
  const desc: Descriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(b), size: b.length };
  await writers[0]!.putManifest(desc, b);
  await writers[0]!.setRoot(desc);
  assert.equal(parseIndex(await readFile(join(dir, 'index.json'))).manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === 't0')?.digest, desc.digest);
});
