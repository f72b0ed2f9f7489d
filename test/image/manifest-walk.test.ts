// The manifest walker on an in-memory source: order, paths, attestations, artifacts, which
// documents are fetched (entries not selected and configs not asked for are not), the depth bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { walkImage, type ImageManifestNode } from '../../src/image/manifest-walk.js';
import { sha256 } from '../../src/oci/digest.js';
import { Annotation, MediaType } from '../../src/oci/mediatypes.js';
import type { ImageSource } from '../../src/oci/store.js';
import type { Descriptor, Platform } from '../../src/oci/types.js';

/** Documents by digest; the root is the last one put. Counts what is fetched. */
class MemorySource implements ImageSource {
  readonly description = 'memory';
  readonly docs = new Map<string, Buffer>();
  readonly fetched: string[] = [];
  private root?: Descriptor;

  put(mediaType: string, doc: object, extra: Partial<Descriptor> = {}): Descriptor {
    const bytes = Buffer.from(JSON.stringify(doc));
    const desc: Descriptor = { mediaType, digest: sha256(bytes), size: bytes.length, ...extra };
    this.docs.set(desc.digest, bytes);
    this.root = desc;
    return desc;
  }

  async resolveRoot() {
    return { descriptor: this.root!, bytes: this.docs.get(this.root!.digest)! };
  }

  async fetchJSONBytes(desc: Descriptor) {
    this.fetched.push(desc.digest);
    return this.docs.get(desc.digest)!;
  }

  openBlobStream(): never {
    throw new Error('no blobs');
  }

  openBlobSource(): never {
    throw new Error('no blobs');
  }

  async close() {}
}

function image(src: MemorySource, platform: Platform, extra: Partial<Descriptor> = {}): Descriptor {
  const config = src.put(MediaType.ociConfig, { ...platform, rootfs: { type: 'layers', diff_ids: [] } });
  return src.put(MediaType.ociManifest, { schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers: [] }, { platform, ...extra });
}

function index(src: MemorySource, manifests: Descriptor[], extra: Partial<Descriptor> = {}): Descriptor {
  return src.put(MediaType.ociIndex, { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }, extra);
}

test('walkImage: depth first in index order, paths, attestations and artifacts; configs only when asked for', { timeout: 10_000 }, async () => {
  const src = new MemorySource();
  const amd = image(src, { os: 'linux', architecture: 'amd64' });
  const arm = image(src, { os: 'linux', architecture: 'arm64' });
  const artifact = src.put(MediaType.ociManifest, { schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: 'application/vnd.example+json', digest: sha256('x'), size: 1 }, layers: [] });
  const attestation = { ...artifact, annotations: { [Annotation.dockerReferenceType]: 'attestation-manifest', [Annotation.dockerReferenceDigest]: amd.digest } };
  const nested = index(src, [arm, artifact]);
  const root = index(src, [amd, nested, attestation]);
  src.fetched.length = 0;

  const seen: Array<[string, string]> = [];
  const manifest = async (node: ImageManifestNode) => {
    const what = node.attestationFor !== undefined ? `attestation for ${node.attestationFor}` : node.isImage ? (await node.readConfig()).architecture : 'artifact';
    seen.push([node.path, what]);
    return node.descriptor.digest.slice(7, 11);
  };
  const top = await walkImage<string>(src, { manifest, index: (node, children) => `${node.path}(${children.map((c) => c.value).join(',')})` });
  assert.deepEqual(seen, [
    ['root.manifests[0]', 'amd64'],
    ['root.manifests[1].manifests[0]', 'arm64'],
    ['root.manifests[1].manifests[1]', 'artifact'],
    ['root.manifests[2]', `attestation for ${amd.digest}`],
  ]);
  const short = (d: Descriptor) => d.digest.slice(7, 11);
  assert.equal(top, `root(${short(amd)},root.manifests[1](${short(arm)},${short(artifact)}),${short(artifact)})`);
  const configOf = (d: Descriptor) => (JSON.parse(src.docs.get(d.digest)!.toString()) as { config: Descriptor }).config.digest;
  assert.deepEqual(src.fetched, [amd.digest, configOf(amd), nested.digest, arm.digest, configOf(arm), artifact.digest, artifact.digest]);

  // Only the entries chosen are fetched; the root is reached through no entry.
  src.fetched.length = 0;
  const entries: Array<string | undefined> = [];
  await walkImage<void>(src, {
    select: (node) => node.index.manifests.slice(0, 1),
    manifest: (node) => void entries.push(node.entry?.digest),
    index: (node) => void entries.push(node.entry?.digest ?? 'root'),
  });
  assert.deepEqual(src.fetched, [amd.digest]);
  assert.deepEqual(entries, [amd.digest, 'root']);
  assert.equal(root.digest, (await src.resolveRoot()).descriptor.digest);
});

test('walkImage: indexes nested more than 4 deep are refused', { timeout: 10_000 }, async () => {
  const src = new MemorySource();
  let d = image(src, { os: 'linux', architecture: 'amd64' });
  for (let i = 0; i < 4; i++) d = index(src, [d]);
  const fold = { manifest: () => 1, index: (_: unknown, c: Array<{ value: number }>) => c[0]!.value + 1 };
  assert.equal(await walkImage<number>(src, fold), 5);
  index(src, [d]);
  await assert.rejects(walkImage<number>(src, fold), /memory: indexes nested more than 4 deep/);
});
