// Images assembled from the blobs of others through the registry API, for tests of what a mount (or
// containerd's snapshotter) does with a layer that is not lazy: one plain gzip layer under lazy
// ones, or a lazy layer whose TOC digest annotation no longer matches its TOC.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { sha256 } from '../../src/oci/digest.js';
import type { Descriptor, ImageConfig, ImageManifest } from '../../src/oci/types.js';
import type { RunningRegistry } from './registry.js';

const run = promisify(execFile);
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** Pushes `bytes` as a blob of `repo` (POST, then PUT with the digest), described as an image config. */
async function putBlob(registry: RunningRegistry, repo: string, bytes: Buffer): Promise<Descriptor> {
  const digest = sha256(bytes);
  const start = await fetch(`${registry.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  const loc = new URL(start.headers.get('location')!, registry.url);
  loc.searchParams.set('digest', digest);
  const put = await fetch(loc, { method: 'PUT', body: new Uint8Array(bytes), headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(put.status, 201);
  return { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: bytes.length };
}

/** An image's manifest and config, through the registry API. */
export async function getImage(registry: RunningRegistry, repo: string, tag: string): Promise<{ m: ImageManifest; config: ImageConfig }> {
  const res = await fetch(`${registry.url}/v2/${repo}/manifests/${tag}`, { headers: { accept: MANIFEST } });
  const m = (await res.json()) as ImageManifest;
  const config = (await (await fetch(`${registry.url}/v2/${repo}/blobs/${m.config.digest}`)).json()) as ImageConfig;
  return { m, config };
}

async function putManifest(registry: RunningRegistry, repo: string, tag: string, config: ImageConfig, layers: Descriptor[]): Promise<void> {
  const configDesc = await putBlob(registry, repo, Buffer.from(JSON.stringify(config)));
  const manifest = { schemaVersion: 2, mediaType: MANIFEST, config: configDesc, layers };
  const res = await fetch(`${registry.url}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: JSON.stringify(manifest), headers: { 'content-type': MANIFEST } });
  assert.equal(res.status, 201);
}

/**
 * REPO:mixed — layer 0 plain gzip (the OCI layout `src`'s, pushed as REPO:gz), the layers above
 * from REPO:`lazyTag` (the same image converted); one repository, so one manifest can name both.
 */
export async function pushMixed(registry: RunningRegistry, src: string, repo: string, lazyTag: string): Promise<void> {
  await run('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${src}:v1`, `docker://${registry.host}/${repo}:gz`]);
  const gz = await getImage(registry, repo, 'gz');
  const lazy = await getImage(registry, repo, lazyTag);
  const config = { ...lazy.config, rootfs: { type: 'layers' as const, diff_ids: [gz.config.rootfs.diff_ids[0]!, ...lazy.config.rootfs.diff_ids.slice(1)] } };
  await putManifest(registry, repo, 'mixed', config, [gz.m.layers[0]!, ...lazy.m.layers.slice(1)]);
}

/** REPO:`tag` — REPO:`lazyTag` with layer `layer`'s TOC digest annotation pointing elsewhere (its TOC no longer verifies). */
export async function pushBadToc(registry: RunningRegistry, repo: string, lazyTag: string, tag: string, layer: number): Promise<void> {
  const lazy = await getImage(registry, repo, lazyTag);
  const layers = lazy.m.layers.map((l, i) => (i === layer ? { ...l, annotations: { ...l.annotations, 'containerd.io/snapshot/stargz/toc.digest': sha256('not the TOC') } } : l));
  await putManifest(registry, repo, tag, lazy.config, layers);
}
