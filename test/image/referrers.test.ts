// Referrers against a real Distribution 2.8 (no referrers API: the tag schema) and through a proxy
// of ours that has the API: pushing keeps the tag index, both paths list the same artifacts, the
// API is preferred when present, filtering and paging, deleting, hostile tag contents.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sha256, type Digest } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import type { Descriptor } from '../../src/oci/types.js';
import { RegistryClient } from '../../src/registry/client.js';
import { uploadBlobFile } from '../../src/registry/upload.js';
import { deleteReferrer, EMPTY_CONFIG, listReferrers, pushReferrer, referrersTag, type Artifact } from '../../src/image/referrers.js';
import { startReferrersProxy, type ReferrersProxy } from '../helpers/referrers-proxy.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const TYPE_A = 'application/vnd.example.a+json';
const TYPE_B = 'application/vnd.example.b+json';

let reg: RunningRegistry;
let proxy: ReferrersProxy;
let direct: RegistryClient;
let viaProxy: RegistryClient;

before(async () => {
  reg = await startRegistry();
  proxy = await startReferrersProxy(reg.url);
  direct = new RegistryClient(reg.host);
  viaProxy = new RegistryClient(proxy.host);
});

after(async () => {
  await direct?.close();
  await viaProxy?.close();
  await proxy?.stop();
  await reg?.stop();
});

/** A small image manifest in `repo` (tagged `v1`): the subject. */
async function pushSubject(repo: string): Promise<Descriptor> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const configDesc = { mediaType: MediaType.ociConfig, digest: sha256(config), size: config.length };
  await uploadBlobFile(direct, repo, configDesc, config);
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: configDesc, layers: [] }));
  await direct.putManifest(repo, 'v1', MediaType.ociManifest, bytes);
  return { mediaType: MediaType.ociManifest, digest: sha256(bytes), size: bytes.length };
}

function artifact(subject: Descriptor, type: string, text: string): Artifact {
  const bytes = Buffer.from(text);
  const layer = { mediaType: type, digest: sha256(bytes), size: bytes.length };
  return {
    manifest: { schemaVersion: 2, mediaType: MediaType.ociManifest, artifactType: type, config: EMPTY_CONFIG, layers: [layer], subject, annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z', note: text } },
    blobs: [
      { descriptor: EMPTY_CONFIG, bytes: Buffer.from('{}') },
      { descriptor: layer, bytes },
    ],
  };
}

const digests = (ds: Descriptor[]) => ds.map((d) => d.digest).sort();

test('the referrers tag of a digest', () => {
  const d = sha256('x');
  assert.equal(referrersTag(d), `sha256-${d.slice(7)}`);
});

test('Distribution 2.8: the API answers 404, pushing maintains the tag schema index, the subject is unchanged', async () => {
  const repo = 'ref/tag';
  const subject = await pushSubject(repo);
  assert.deepEqual(await listReferrers(direct, repo, subject.digest), { via: 'tag', manifests: [] });
  const a = await pushReferrer(direct, repo, artifact(subject, TYPE_A, 'first'));
  const b = await pushReferrer(direct, repo, artifact(subject, TYPE_B, 'second'));
  assert.equal(a.via, 'tag');
  assert.equal(b.via, 'tag');
  // Pushing the same artifact again does not list it twice.
  await pushReferrer(direct, repo, artifact(subject, TYPE_A, 'first'));
  const all = await listReferrers(direct, repo, subject.digest);
  assert.equal(all.via, 'tag');
  assert.deepEqual(digests(all.manifests), digests([a.descriptor, b.descriptor]));
  const listedA = all.manifests.find((d) => d.digest === a.descriptor.digest)!;
  assert.equal(listedA.artifactType, TYPE_A);
  assert.equal(listedA.annotations?.note, 'first');
  // Filtered by artifactType on our side (the tag index holds everything).
  assert.deepEqual(digests((await listReferrers(direct, repo, subject.digest, TYPE_B)).manifests), [b.descriptor.digest]);
  // The tag holds an OCI index; the image's tag still names the same manifest.
  const tagged = await direct.getManifest(repo, referrersTag(subject.digest));
  assert.equal(tagged.mediaType, MediaType.ociIndex);
  assert.equal((await direct.getManifest(repo, 'v1')).digest, subject.digest);
});

test('a registry with the API: preferred to the tag, the same artifacts either way; pushes answered with OCI-Subject', async () => {
  const repo = 'ref/api';
  const subject = await pushSubject(repo);
  const a = await pushReferrer(direct, repo, artifact(subject, TYPE_A, 'pushed directly'));
  const b = await pushReferrer(viaProxy, repo, artifact(subject, TYPE_A, 'pushed through the API registry'));
  assert.equal(a.via, 'tag');
  assert.equal(b.via, 'api', 'the registry tracks the subject itself: no tag maintained by the client');
  const before = { ...proxy.counts };
  const api = await listReferrers(viaProxy, repo, subject.digest, TYPE_A);
  assert.equal(api.via, 'api');
  assert.equal(proxy.counts.referrers, before.referrers + 1);
  assert.equal(proxy.counts.tagReads, before.tagReads, 'the tag is not read when the API answers');
  const tag = await listReferrers(direct, repo, subject.digest, TYPE_A);
  assert.equal(tag.via, 'tag');
  assert.deepEqual(api.manifests, tag.manifests);
  assert.deepEqual(digests(api.manifests), digests([a.descriptor, b.descriptor]));
});

test('API answers in pages are followed (Link rel="next"); a registry that does not filter is filtered here', async () => {
  const repo = 'ref/paged';
  const subject = await pushSubject(repo);
  const pushed = [];
  for (const n of ['one', 'two', 'three']) pushed.push((await pushReferrer(direct, repo, artifact(subject, TYPE_A, n))).descriptor);
  await pushReferrer(direct, repo, artifact(subject, TYPE_B, 'other type'));
  const paged = await startReferrersProxy(reg.url, { pageSize: 1 });
  const client = new RegistryClient(paged.host);
  try {
    const got = await listReferrers(client, repo, subject.digest, TYPE_A);
    assert.equal(got.via, 'api');
    assert.deepEqual(digests(got.manifests), digests(pushed));
    assert.equal(paged.counts.referrers, 3);
    assert.equal((await listReferrers(client, repo, subject.digest)).manifests.length, 4);
  } finally {
    await client.close();
    await paged.stop();
  }
});

test('deleting a referrer takes it out of the tag index and deletes its manifest', async () => {
  const repo = 'ref/delete';
  const subject = await pushSubject(repo);
  const keep = await pushReferrer(direct, repo, artifact(subject, TYPE_A, 'keep'));
  const gone = await pushReferrer(direct, repo, artifact(subject, TYPE_A, 'gone'));
  assert.deepEqual(await deleteReferrer(direct, repo, subject.digest, gone.descriptor.digest), { untagged: true, manifest: 'deleted' });
  assert.deepEqual(digests((await listReferrers(direct, repo, subject.digest)).manifests), [keep.descriptor.digest]);
  assert.deepEqual(digests((await listReferrers(viaProxy, repo, subject.digest)).manifests), [keep.descriptor.digest]);
  assert.equal((await direct.headManifest(repo, gone.descriptor.digest)), undefined);
  // Again: nothing to untag, nothing to delete.
  assert.deepEqual(await deleteReferrer(direct, repo, subject.digest, gone.descriptor.digest), { untagged: false, manifest: 'absent' });
  assert.equal((await direct.getManifest(repo, 'v1')).digest, subject.digest);
});

test('a referrers tag that does not hold an index means no referrers; pushing replaces it', async () => {
  const repo = 'ref/hostile';
  const subject = await pushSubject(repo);
  // The tag names an image manifest instead of an index.
  const bogus = await direct.getManifest(repo, 'v1');
  await direct.putManifest(repo, referrersTag(subject.digest), MediaType.ociManifest, bogus.bytes);
  assert.deepEqual(await listReferrers(direct, repo, subject.digest), { via: 'tag', manifests: [] });
  const a = await pushReferrer(direct, repo, artifact(subject, TYPE_A, 'after the bogus tag'));
  assert.deepEqual(digests((await listReferrers(direct, repo, subject.digest)).manifests), [a.descriptor.digest as Digest]);
});
