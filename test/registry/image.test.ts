// docker:// source and destination against a real Distribution: pushing multi-platform images made
// by Starling, reading them back, skopeo reading what Starling pushed and Starling reading what
// skopeo pushed, platform resolution, cross-repository mounts and chunked uploads.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sha256 } from '../../src/oci/digest.js';
import { OciLayoutDestination, OciLayoutSource } from '../../src/oci/layout.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import { RegistryClient } from '../../src/registry/client.js';
import { openRegistryDestination, openRegistrySource, RegistryImageDestination } from '../../src/registry/image.js';
import { uploadBlobFile } from '../../src/registry/upload.js';
import { resolveImage } from '../../src/registry/resolve.js';
import { buildImage, type BuiltImage } from '../fixtures/image.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { copyImage } from './copy.js';

const run = promisify(execFile);

let reg: RunningRegistry;
let work: string;
let built: BuiltImage;
let layoutDir: string;
const big = Buffer.alloc(3 << 20);

before(async () => {
  reg = await startRegistry();
  work = await mkdtemp(join(tmpdir(), 'starling-regimg-'));
  layoutDir = join(work, 'layout');
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
  built = await buildImage(
    layoutDir,
    {
      layers: [{ files: { 'etc/hello': 'hello\n', 'bin/tool': 'tool v1\n' } }, { files: { 'data/big': big } }],
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
      attestations: true,
    },
    'v1',
  );
});

after(async () => {
  await reg?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

test('pushes a multi-platform image with attestations and reads every part back verified', async () => {
  const src = await OciLayoutSource.open(layoutDir, 'v1');
  const dst = await openRegistryDestination(`docker://${reg.host}/starling/multi:v1`);
  const root = await copyImage(src, dst);
  await dst.close();
  assert.equal(root.digest, built.root.digest);

  const rs = await openRegistrySource(`docker://${reg.host}/starling/multi:v1`);
  try {
    const r = await rs.resolveRoot();
    assert.equal(r.descriptor.digest, built.root.digest);
    assert.equal(r.descriptor.mediaType, MediaType.ociIndex);
    assert.equal(sha256(r.bytes), built.root.digest);
    const arm = await resolveImage(rs, { os: 'linux', architecture: 'arm64', variant: 'v8' });
    assert.equal(arm.manifestDescriptor.digest, built.manifests[1]!.descriptor.digest);
    assert.equal(arm.config.architecture, 'arm64');
    const amd = await resolveImage(rs, { os: 'linux', architecture: 'amd64' });
    assert.equal(amd.manifestDescriptor.digest, built.manifests[0]!.descriptor.digest);
    await assert.rejects(resolveImage(rs, { os: 'linux', architecture: 's390x' }), /no image for platform linux\/s390x \(available: linux\/amd64, linux\/arm64\)/);
    // The layer stream verifies size and digest as it goes.
    const layer = built.layers[1]!.descriptor;
    const chunks: Buffer[] = [];
    for await (const c of await rs.openBlobStream(layer)) chunks.push(c as Buffer);
    assert.equal(sha256(Buffer.concat(chunks)), layer.digest);
  } finally {
    await rs.close();
  }

  // skopeo (containers/image) reads what Starling pushed.
  const { stdout: raw } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/starling/multi:v1`]);
  assert.equal(sha256(raw.replace(/\n$/, '')), built.root.digest);
  const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--override-arch', 'arm64', `docker://${reg.host}/starling/multi:v1`]);
  const info = JSON.parse(stdout) as { Digest: string; Architecture: string; Layers: string[] };
  assert.equal(info.Digest, built.root.digest); // skopeo 1.9 reports the digest of the top-level manifest
  assert.equal(info.Architecture, 'arm64');
  assert.deepEqual(info.Layers, built.layers.map((l) => l.descriptor.digest));
});

test('pulling by digest into an OCI layout reproduces the image exactly', async () => {
  const rs = await openRegistrySource(`docker://${reg.host}/starling/multi@${built.root.digest}`);
  const out = join(work, 'pulled');
  const dst = await OciLayoutDestination.open(out, 'copy');
  await copyImage(rs, dst);
  await rs.close();
  const back = await OciLayoutSource.open(out, 'copy');
  const root = await back.resolveRoot();
  assert.equal(root.descriptor.digest, built.root.digest);
  const layer = built.layers[1]!.descriptor;
  const blob = await back.openBlobSource(layer);
  assert.deepEqual(await blob.read(0, 16), (await readFile(join(layoutDir, 'blobs/sha256', layer.digest.slice(7)))).subarray(0, 16));
  await blob.close();
});

test('a second push finds every blob present; a push to another repository mounts them', async () => {
  const again = (await openRegistryDestination(`docker://${reg.host}/starling/multi:v1`)) as RegistryImageDestination;
  await copyImage(await OciLayoutSource.open(layoutDir, 'v1'), again);
  // copyImage skips blobs hasBlob reports, so nothing was uploaded at all.
  assert.deepEqual(again.uploads, []);
  await again.close();

  // Reading from starling/multi teaches the process where the blobs are; pushing to starling/other mounts them.
  const rs = await openRegistrySource(`docker://${reg.host}/starling/multi:v1`);
  const other = (await openRegistryDestination(`docker://${reg.host}/starling/other:v2`)) as RegistryImageDestination;
  await copyImage(rs, other);
  await rs.close();
  await other.close();
  const hows = new Set(other.uploads.map((u) => u.how));
  assert.deepEqual([...hows], ['mounted']);
  const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/starling/other:v2`]);
  assert.equal(sha256(stdout.replace(/\n$/, '')), built.root.digest);
});

test('blobs larger than the chunk size go up in PATCH chunks', async () => {
  // A layer no repository has yet (else it would be mounted): the big file, shifted.
  const chunkedLayout = join(work, 'chunked-layout');
  const c = await buildImage(chunkedLayout, { layers: [{ files: { 'data/big2': Buffer.concat([Buffer.from('x'), big]) } }], compression: 'none' }, 'c1');
  const dst = (await openRegistryDestination(`docker://${reg.host}/starling/chunked:v1`, { upload: { chunkSize: 1 << 20 } })) as RegistryImageDestination;
  await copyImage(await OciLayoutSource.open(chunkedLayout, 'c1'), dst);
  await dst.close();
  const layer = c.layers[0]!.descriptor;
  assert.ok(layer.size > 1 << 20);
  assert.equal(dst.uploads.find((u) => u.digest === layer.digest)?.how, 'chunked');
  const rs = await openRegistrySource(`docker://${reg.host}/starling/chunked:v1`);
  const chunks: Buffer[] = [];
  for await (const c of await rs.openBlobStream(layer)) chunks.push(c as Buffer);
  assert.equal(sha256(Buffer.concat(chunks)), layer.digest);
  await rs.close();
});

test('reads an image that skopeo copied into the registry (Docker v2.2 types)', async () => {
  // skopeo 1.9 reads only OCI-typed manifests from a layout; `--format v2s2` makes it push Docker types.
  const skopeoLayout = join(work, 'skopeo-layout');
  const d = await buildImage(skopeoLayout, { layers: [{ files: { 'x/y': 'z\n' } }] }, 'd1');
  await run('skopeo', ['copy', '--format', 'v2s2', '--dest-tls-verify=false', `oci:${skopeoLayout}:d1`, `docker://${reg.host}/skopeo/img:d1`]);
  const rs = await openRegistrySource(`docker://${reg.host}/skopeo/img:d1`);
  const img = await resolveImage(rs, { os: 'linux', architecture: 'amd64' });
  assert.equal(img.manifestDescriptor.mediaType, MediaType.dockerManifest);
  assert.equal(img.manifest.layers[0]!.digest, d.layers[0]!.descriptor.digest);
  assert.deepEqual(img.config.rootfs.diff_ids, [d.layers[0]!.diffID]);
  await rs.close();
});

test('skopeo copy --all of a multi-platform image: Starling picks each platform', async () => {
  await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', `oci:${layoutDir}:v1`, `docker://${reg.host}/skopeo/multi:v1`]);
  const rs = await openRegistrySource(`docker://${reg.host}/skopeo/multi:v1`);
  for (const [i, arch] of ['amd64', 'arm64'].entries()) {
    const img = await resolveImage(rs, { os: 'linux', architecture: arch });
    assert.equal(img.manifestDescriptor.digest, built.manifests[i]!.descriptor.digest);
    const blob = await rs.openBlobSource(img.manifest.layers[1]!);
    const whole = await blob.read(0, blob.size);
    assert.equal(sha256(whole), img.manifest.layers[1]!.digest);
  }
  await rs.close();
});

test('an artifact is refused with its artifactType named', async () => {
  const c = new RegistryClient(reg.host);
  const empty = Buffer.from('{}');
  const emptyDigest = sha256(empty);
  const f = join(work, 'empty.json');
  await writeFile(f, empty);
  await uploadBlobFile(c, 'art/sbom', { digest: emptyDigest, size: 2 }, f);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      artifactType: 'application/vnd.example.sbom.v1+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: emptyDigest, size: 2 },
      layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', digest: emptyDigest, size: 2 }],
    }),
  );
  await c.putManifest('art/sbom', 'v1', MediaType.ociManifest, manifest);
  await c.close();
  const rs = await openRegistrySource(`docker://${reg.host}/art/sbom:v1`);
  await assert.rejects(resolveImage(rs), /is an artifact of type application\/vnd\.example\.sbom\.v1\+json, not a container image/);
  await rs.close();
});

test('a missing tag and a missing repository name registry, repository and tag', async () => {
  const rs = await openRegistrySource(`docker://${reg.host}/starling/multi:nope`);
  await assert.rejects(rs.resolveRoot(), (err: Error) => {
    assert.match(err.message, new RegExp(`registry ${reg.host.replace(/\./g, '\\.')}, repository starling/multi, tag nope`));
    return true;
  });
  await rs.close();
});
