// Prefetch profiles in a registry (Distribution 2.8, tag schema; and our referrers-API proxy in front
// of it): push, list and remove by name; a mount's choice (newest, by name); the same profile by
// either discovery path; the image never changes. Profiles that are bad for the image are ignored
// with a reason: another platform's, other layers', corrupted, oversized, hostile paths.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestHex, sha256, type Digest } from '../../src/oci/digest.js';
import { OciLayoutSource } from '../../src/oci/layout.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import type { Platform } from '../../src/oci/types.js';
import { openRegistryDestination } from '../../src/registry/image.js';
import { resolveManifest } from '../../src/registry/resolve.js';
import { openImageSource } from '../../src/registry/transport.js';
import { serializeProfile, type PrefetchProfile } from '../../src/image/profile.js';
import { findPrefetchProfile, listProfiles, openProfileTarget, profileArtifact, pushProfile, removeProfiles, type ProfileTarget } from '../../src/image/profile-registry.js';
import { listReferrers, pushReferrer, referrersTag } from '../../src/image/referrers.js';
import { buildImage, type BuiltImage } from '../fixtures/image.js';
import { copyImage } from '../registry/copy.js';
import { startReferrersProxy, type ReferrersProxy } from '../helpers/referrers-proxy.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const AMD64: Platform = { os: 'linux', architecture: 'amd64' };
const ARM64: Platform = { os: 'linux', architecture: 'arm64' };

let reg: RunningRegistry;
let proxy: ReferrersProxy;
let work: string;
let built: BuiltImage;
let amd: ProfileTarget & { close(): Promise<void> };
let arm: ProfileTarget & { close(): Promise<void> };
const ref = (host: string) => `docker://${host}/prof/img:v1`;

before(async () => {
  reg = await startRegistry();
  proxy = await startReferrersProxy(reg.url);
  work = await mkdtemp(join(tmpdir(), 'starling-profile-registry-'));
  built = await buildImage(join(work, 'img'), { layers: [{ files: { 'bin/sh': 'shell\n', 'etc/passwd': 'root\n' } }, { files: { 'app/main': 'main\n' } }], platforms: [AMD64, ARM64] }, 'v1');
  const src = await OciLayoutSource.open(join(work, 'img'), 'v1');
  const dst = await openRegistryDestination(ref(reg.host));
  await copyImage(src, dst);
  await dst.close();
  await src.close();
  amd = await openProfileTarget(ref(reg.host), { platform: AMD64 });
  arm = await openProfileTarget(ref(reg.host), { platform: ARM64 });
});

after(async () => {
  await amd?.close();
  await arm?.close();
  await proxy?.stop();
  await reg?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const L0 = () => built.layers[0]!.descriptor.digest;
const L1 = () => built.layers[1]!.descriptor.digest;
const goodProfile = (): PrefetchProfile => ({
  version: 1,
  layers: [
    { digest: L0(), files: [{ path: 'bin/sh', ranges: [[0, 6]] }] },
    { digest: L1(), files: [{ path: 'app/main', ranges: [[0, 5]] }] },
  ],
});

/** What a mount of the amd64 image through `host` would use. */
async function mountChoice(host: string, name?: string) {
  const source = await openImageSource(ref(host), { platform: AMD64 });
  try {
    const image = await resolveManifest(source, AMD64);
    return await findPrefetchProfile(source, image, name);
  } finally {
    await source.close();
  }
}

const rootDigest = async () => (await amd.client.headManifest(amd.repository, 'v1'))!.digest;

test('push, list newest first, choose by default and by name, the same by the API; remove by name; the image is unchanged', async () => {
  const root = await rootDigest();
  assert.equal(root, built.root.digest);
  const web = await pushProfile(amd, goodProfile(), { name: 'web', command: ['python3', '-c', 'print(1)'], created: new Date('2026-01-01T00:00:00Z') });
  const batch = await pushProfile(amd, { version: 1, layers: [goodProfile().layers[0]!] }, { name: 'batch', created: new Date('2026-02-01T00:00:00Z') });
  assert.equal(web.via, 'tag');
  const { via, profiles } = await listProfiles(amd);
  assert.equal(via, 'tag');
  assert.deepEqual(profiles, [
    { digest: batch.descriptor.digest, name: 'batch', created: '2026-02-01T00:00:00.000Z', command: null },
    { digest: web.descriptor.digest, name: 'web', created: '2026-01-01T00:00:00.000Z', command: ['python3', '-c', 'print(1)'] },
  ]);
  assert.deepEqual((await listProfiles(arm)).profiles, [], "the other platform's manifest has none");

  const newest = await mountChoice(reg.host);
  assert.deepEqual(newest.status, { state: 'used', name: 'batch', digest: batch.descriptor.digest, via: 'tag', reason: null });
  const named = await mountChoice(reg.host, 'web');
  assert.equal(named.status.state, 'used');
  assert.deepEqual(named.profile, goodProfile());
  const api = await mountChoice(proxy.host, 'web');
  assert.deepEqual(api.status, { ...named.status, via: 'api' });
  assert.deepEqual(api.profile, named.profile);
  assert.deepEqual(await mountChoice(reg.host, 'nope'), { status: { state: 'none', name: null, digest: null, via: 'tag', reason: `no prefetch profile named "nope" refers to ${amd.subject.digest}` } });

  const removed = await removeProfiles(amd, { name: 'batch' });
  assert.deepEqual(removed, [{ digest: batch.descriptor.digest, untagged: true, manifest: 'deleted' }]);
  assert.deepEqual((await listProfiles(amd)).profiles.map((p) => p.name), ['web']);
  assert.equal((await mountChoice(reg.host)).status.name, 'web');
  // A newer profile that cannot be used is skipped for the next, with its reason.
  const broken = await pushReferrer(amd.client, amd.repository, profileArtifact(amd.subject, Buffer.from('{"version":1,'), { name: 'broken' }));
  const skipping = await mountChoice(reg.host);
  assert.equal(skipping.status.state, 'used');
  assert.equal(skipping.status.name, 'web');
  assert.match(skipping.status.reason!, new RegExp(`^skipped newer: ${broken.descriptor.digest} \\(broken\\): profile: not JSON`));
  assert.deepEqual(skipping.profile, goodProfile());
  await removeProfiles(amd, { name: 'broken' });
  assert.equal(await rootDigest(), root, 'the image is the same');
});

test('profiles that are bad for the image are ignored with a reason', async () => {
  const push = (name: string, blob: Buffer) => pushReferrer(amd.client, amd.repository, profileArtifact(amd.subject, blob, { name }));
  // Another platform's profile listed under this manifest (a broken or hostile tag index).
  const other = await pushProfile(arm, goodProfile(), { name: 'other-platform' });
  const index = JSON.parse((await amd.client.getManifest(amd.repository, referrersTag(amd.subject.digest))).bytes.toString()) as { manifests: unknown[] };
  index.manifests.push(other.descriptor);
  await amd.client.putManifest(amd.repository, referrersTag(amd.subject.digest), MediaType.ociIndex, Buffer.from(JSON.stringify(index)));
  // For layers the image does not have.
  await push('other-layers', serializeProfile({ version: 1, layers: [{ digest: sha256('another image'), files: [{ path: 'a', ranges: [[0, 1]] }] }] }));
  // Corrupted in the registry's storage after the push.
  const corrupt = serializeProfile(goodProfile());
  await push('corrupted', corrupt);
  const stored = join(reg.dir, 'data/docker/registry/v2/blobs/sha256', digestHex(sha256(corrupt)).slice(0, 2), digestHex(sha256(corrupt)), 'data');
  const bytes = await readFile(stored);
  bytes[10] ^= 1;
  await writeFile(stored, bytes);
  // Too large to fetch, and hostile paths.
  await push('oversized', Buffer.alloc(5 << 20, 0x20));
  await push('hostile-paths', Buffer.from(JSON.stringify({ version: 1, layers: [{ digest: L0(), files: [{ path: '../../etc/shadow', ranges: [[0, 1]] }] }] })));

  const cases: Array<[string, RegExp]> = [
    ['other-platform', new RegExp(`its subject is ${arm.subject.digest}, not the image's manifest ${amd.subject.digest}`)],
    ['other-layers', new RegExp(`layer ${sha256('another image')} of the profile is not a layer of the image`)],
    ['corrupted', /hashes to/],
    ['oversized', /its blob is 5242880 bytes, more than the 4194304 allowed/],
    ['hostile-paths', /files\[0\]\.path: .*"\.\.\/\.\.\/etc\/shadow"/],
  ];
  for (const [name, why] of cases) {
    for (const host of [reg.host, proxy.host]) {
      const got = await mountChoice(host, name);
      assert.equal(got.status.state, 'ignored', `${name} via ${host}: ${JSON.stringify(got.status)}`);
      assert.equal(got.status.name, name);
      assert.match(got.status.reason!, why, name);
      assert.equal(got.profile, undefined);
    }
  }
  assert.equal(await rootDigest(), built.root.digest);
});

test('an oci: layout has no referrers here: the reason says so', async () => {
  const source = await OciLayoutSource.open(join(work, 'img'), 'v1');
  try {
    const got = await findPrefetchProfile(source, await resolveManifest(source, AMD64));
    assert.equal(got.status.state, 'unavailable');
    assert.match(got.status.reason!, /registries only/);
  } finally {
    await source.close();
  }
});

test('removing by digest', async () => {
  const p = await pushProfile(amd, goodProfile(), { name: 'by-digest' });
  assert.deepEqual((await removeProfiles(amd, { digest: p.descriptor.digest as Digest })).map((r) => r.manifest), ['deleted']);
  assert.ok(!(await listReferrers(amd.client, amd.repository, amd.subject.digest)).manifests.some((d) => d.digest === p.descriptor.digest));
});
