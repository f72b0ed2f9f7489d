// Referrers of a manifest (OCI 1.1; spec/referrers.md): the artifacts whose `subject` it is.
// Listed through the referrers API, or through the referrers tag schema when the registry answers
// the API with 404 (Distribution 2.8); pushing or deleting an artifact maintains the tag schema's
// index unless the registry says (OCI-Subject) that it tracks subjects itself. Everything a registry
// answers here is untrusted: sizes, pages and entries are bounded, indexes validated.
import type { IncomingHttpHeaders } from 'node:http';
import { sha256, type Digest } from '../oci/digest.js';
import { MediaType } from '../oci/mediatypes.js';
import type { Descriptor, ImageIndex, ImageManifest } from '../oci/types.js';
import { parseIndex, ValidationError } from '../oci/validate.js';
import { readLimited, type RegistryClient } from '../registry/client.js';
import { RegistryError, RegistryNotFoundError } from '../registry/errors.js';
import { header } from '../registry/headers.js';
import { uploadBlobFile } from '../registry/upload.js';

/** OCI 1.1's empty descriptor: the config of an artifact without one (its blob is `{}`). */
export const EMPTY_CONFIG: Descriptor = { mediaType: MediaType.ociEmpty, digest: sha256('{}'), size: 2 };

// A referrers index is a list of descriptors: 4 MiB per page holds ~10k of them.
const MAX_PAGE_BYTES = 4 << 20;
const MAX_PAGES = 16;
const MAX_REFERRERS = 10_000;
// Read-modify-write rounds of the tag index when a concurrent writer wins (412 on If-Match).
const MAX_TAG_ATTEMPTS = 5;

export interface Referrers {
  /** 'api': the registry's referrers API; 'tag': the referrers tag schema. */
  via: 'api' | 'tag';
  manifests: Descriptor[];
}

/** What listing referrers cost: requests made and bytes of the answers' bodies (for a mount's metadata totals). */
export interface FetchCounter {
  bytes: number;
  requests: number;
}

/** The referrers tag of a digest: `<alg>-<encoded>`, cut to 32 and 64 characters, other characters as `-`. */
export function referrersTag(digest: Digest): string {
  const colon = digest.indexOf(':');
  const tag = `${digest.slice(0, colon).slice(0, 32)}-${digest.slice(colon + 1).slice(0, 64)}`;
  return tag.replace(/[^A-Za-z0-9_.-]/g, '-');
}

/**
 * The referrers of `subject` in `repository`, of `artifactType` when given: the API first, the tag
 * schema when the API answers 404.
 */
export async function listReferrers(client: RegistryClient, repository: string, subject: Digest, artifactType?: string, counter: FetchCounter = { bytes: 0, requests: 0 }): Promise<Referrers> {
  const fromApi = await listViaApi(client, repository, subject, artifactType, counter);
  const manifests = fromApi ?? (await readTagIndex(client, repository, subject, counter)).index?.manifests ?? [];
  // Filtered here whatever the registry did: OCI-Filters-Applied only says it may have.
  return { via: fromApi ? 'api' : 'tag', manifests: artifactType === undefined ? manifests : manifests.filter((d) => d.artifactType === artifactType) };
}

/** The API's answer, every page of it; undefined when the registry has no referrers API (404). */
async function listViaApi(client: RegistryClient, repository: string, subject: Digest, artifactType: string | undefined, counter: FetchCounter): Promise<Descriptor[] | undefined> {
  const object = `referrers of ${subject}`;
  const ctx = client.context(repository, object);
  const query = artifactType === undefined ? '' : `?artifactType=${encodeURIComponent(artifactType)}`;
  const out: Descriptor[] = [];
  let next: { path: string } | { url: string } = { path: `referrers/${subject}${query}` };
  for (let page = 0; ; page++) {
    const res = await client.fetch({ method: 'GET', repository, ...next, object, headers: { accept: MediaType.ociIndex }, expect: [200, 404] }, async (r) => ({
      status: r.status,
      headers: r.headers,
      bytes: r.status === 200 ? await readLimited(r.body, MAX_PAGE_BYTES, ctx) : undefined,
      url: r.url,
    }));
    counter.requests++;
    counter.bytes += res.bytes?.length ?? 0;
    if (!res.bytes) {
      if (page === 0) return undefined;
      throw new RegistryError(ctx, `page ${page + 1} of the referrers answered 404`, 404);
    }
    out.push(...validIndex(res.bytes, `${object} (page ${page + 1})`, ctx).manifests);
    if (out.length > MAX_REFERRERS) throw new RegistryError(ctx, `more than ${MAX_REFERRERS} referrers`);
    const link = nextLink(res.headers, res.url);
    if (!link) return out;
    if (link.origin !== client.baseUrl.origin) throw new RegistryError(ctx, `the next page of referrers is on another host (${link.origin})`);
    if (page + 1 >= MAX_PAGES) throw new RegistryError(ctx, `more than ${MAX_PAGES} pages of referrers`);
    next = { url: link.href };
  }
}

function validIndex(bytes: Buffer, what: string, ctx: ReturnType<RegistryClient['context']>): ImageIndex {
  try {
    return parseIndex(bytes, MediaType.ociIndex, what);
  } catch (err) {
    if (err instanceof ValidationError) throw new RegistryError(ctx, `not a valid referrers index: ${err.message}`);
    throw err;
  }
}

/** `Link: <url>; rel="next"` (RFC 8288), resolved against the URL that answered. */
function nextLink(headers: IncomingHttpHeaders, base: URL): URL | undefined {
  const value = header(headers, 'link');
  const m = value && /<([^>]*)>\s*;\s*rel="?next"?/i.exec(value);
  return m ? new URL(m[1]!, base) : undefined;
}

/**
 * The index under the referrers tag of `subject` and its ETag. No tag, or a tag that is not a
 * valid index, means no referrers (distribution-spec "Referrers Tag Schema").
 */
async function readTagIndex(client: RegistryClient, repository: string, subject: Digest, counter: FetchCounter = { bytes: 0, requests: 0 }): Promise<{ index?: ImageIndex; etag?: string }> {
  let fetched;
  counter.requests++;
  try {
    fetched = await client.getManifest(repository, referrersTag(subject));
  } catch (err) {
    if (err instanceof RegistryNotFoundError) return {};
    throw err;
  }
  counter.bytes += fetched.bytes.length;
  const etag = fetched.etag ? { etag: fetched.etag } : {};
  try {
    return { index: parseIndex(fetched.bytes, undefined, `referrers tag of ${subject}`), ...etag };
  } catch (err) {
    if (err instanceof ValidationError) return etag;
    throw err;
  }
}

/**
 * Changes the tag schema's index of `subject`: `edit` gets its descriptors and returns the new
 * list, or undefined to leave it as it is. Written back with If-Match when the registry gave an
 * ETag; a concurrent writer's 412 makes it read and edit again.
 */
async function editTagIndex(client: RegistryClient, repository: string, subject: Digest, edit: (manifests: Descriptor[]) => Descriptor[] | undefined): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    const { index, etag } = await readTagIndex(client, repository, subject);
    const manifests = edit(index?.manifests ?? []);
    if (!manifests) return false;
    const next: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
    try {
      await client.putManifest(repository, referrersTag(subject), MediaType.ociIndex, Buffer.from(JSON.stringify(next)), etag ? { 'if-match': etag } : {});
      return true;
    } catch (err) {
      if (!(err instanceof RegistryError) || err.status !== 412 || attempt >= MAX_TAG_ATTEMPTS) throw err;
    }
  }
}

export interface Artifact {
  /** An image manifest with `subject` and `artifactType`; its config and layers are in `blobs` (or already in the repository). */
  manifest: ImageManifest & { subject: Descriptor; artifactType: string };
  blobs: Array<{ descriptor: Descriptor; bytes: Buffer }>;
}

/**
 * Pushes an artifact next to its subject: the blobs the repository lacks, the manifest by digest,
 * then, unless the registry answered with OCI-Subject, its descriptor into the tag schema's index.
 * Resolves to the descriptor the referrers list shows.
 */
export async function pushReferrer(client: RegistryClient, repository: string, artifact: Artifact): Promise<{ descriptor: Descriptor; via: 'api' | 'tag' }> {
  for (const { descriptor, bytes } of artifact.blobs) {
    if (sha256(bytes) !== descriptor.digest || bytes.length !== descriptor.size) throw new Error(`artifact blob does not match its descriptor ${descriptor.digest}`);
    if ((await client.blobSize(repository, descriptor.digest)) === undefined) await uploadBlobFile(client, repository, descriptor, bytes);
  }
  const bytes = Buffer.from(JSON.stringify(artifact.manifest));
  const digest = sha256(bytes);
  const { subject, artifactType, annotations } = artifact.manifest;
  const descriptor: Descriptor = { mediaType: MediaType.ociManifest, digest, size: bytes.length, artifactType, ...(annotations ? { annotations } : {}) };
  const answer = await client.putManifest(repository, digest, MediaType.ociManifest, bytes);
  if (header(answer, 'oci-subject') !== undefined) return { descriptor, via: 'api' };
  await editTagIndex(client, repository, subject.digest, (manifests) => (manifests.some((d) => d.digest === digest) ? undefined : [...manifests, descriptor]));
  return { descriptor, via: 'tag' };
}

/**
 * Deletes the referrer `digest` of `subject`: out of the tag schema's index (if it is there), then
 * the manifest itself if the registry allows deletes. Nothing else refers to it: its blobs stay
 * for the registry's garbage collection.
 */
export async function deleteReferrer(client: RegistryClient, repository: string, subject: Digest, digest: Digest): Promise<{ untagged: boolean; manifest: 'deleted' | 'absent' | 'refused' }> {
  const untagged = await editTagIndex(client, repository, subject, (manifests) => (manifests.some((d) => d.digest === digest) ? manifests.filter((d) => d.digest !== digest) : undefined));
  return { untagged, manifest: await client.deleteManifest(repository, digest) };
}
