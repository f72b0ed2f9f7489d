// Gzip indexes in a registry (docs/gzip-index.md, "The referrer"): one artifact per image platform
// manifest, one blob per indexed layer, pushed and found through the shared referrers code. What is
// found is untrusted: subject, type, sizes and digests are checked, and each index is decoded
// against the layer it claims to be of.
import { decodeGzipIndex, GzipIndexError, MAX_INDEX_BYTES } from '../format/gzipindex/encoding.js';
import { GZIP_INDEX_ARTIFACT_TYPE, GZIP_INDEX_LAYER_ANNOTATION, GZIP_INDEX_MEDIA_TYPE } from '../format/gzipindex/media-types.js';
import type { GzipIndex } from '../format/gzipindex/model.js';
import { sha256, type Digest } from '../oci/digest.js';
import { Annotation, MediaType } from '../oci/mediatypes.js';
import type { ImageSource } from '../oci/store.js';
import type { Descriptor, ImageManifest } from '../oci/types.js';
import { parseManifest } from '../oci/validate.js';
import type { RegistryClient } from '../registry/client.js';
import { limiter } from '../blob/limiter.js';
import { registryOf } from './profile-registry.js';
import { EMPTY_CONFIG, listReferrers, pushReferrer, type Artifact, type FetchCounter } from './referrers.js';

/** A manifest listing a blob per layer: a few hundred bytes per layer. */
const MAX_ARTIFACT_MANIFEST_BYTES = 256 << 10;

export interface StoredLayerIndex {
  /** The gzip layer the index is of. */
  layer: Descriptor;
  /** The index in its stored form (encodeGzipIndex). */
  stored: Buffer;
}

/** The artifact carrying `indexes` for the image manifest `subject`. */
export function gzipIndexArtifact(subject: Descriptor, indexes: readonly StoredLayerIndex[], created = new Date()): Artifact {
  const blobs = indexes.map(({ layer, stored }) => ({
    descriptor: { mediaType: GZIP_INDEX_MEDIA_TYPE, digest: sha256(stored), size: stored.length, annotations: { [GZIP_INDEX_LAYER_ANNOTATION]: layer.digest } } as Descriptor,
    bytes: stored,
  }));
  const { mediaType, digest, size } = subject;
  return {
    manifest: {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      artifactType: GZIP_INDEX_ARTIFACT_TYPE,
      config: EMPTY_CONFIG,
      layers: blobs.map((b) => b.descriptor),
      subject: { mediaType, digest, size },
      annotations: { [Annotation.ociCreated]: created.toISOString() },
    },
    blobs: [{ descriptor: EMPTY_CONFIG, bytes: Buffer.from('{}') }, ...blobs],
  };
}

/** Pushes the indexes of an image as a referrer of its platform manifest `subject`. */
export function pushGzipIndexes(registry: { client: RegistryClient; repository: string }, subject: Descriptor, indexes: readonly StoredLayerIndex[]): Promise<{ descriptor: Descriptor; via: 'api' | 'tag' }> {
  if (indexes.length === 0) throw new GzipIndexError('no layer was indexed: nothing to push');
  return pushReferrer(registry.client, registry.repository, gzipIndexArtifact(subject, indexes));
}

export interface FoundGzipIndexes {
  /** The artifact used, when one was found. */
  digest?: Digest;
  via?: 'api' | 'tag';
  /** Verified indexes by layer digest. */
  indexes: Map<Digest, GzipIndex>;
  /** Why the index of a layer was refused, by layer digest. */
  refused: Map<Digest, string>;
  /** The index blob of each layer in `indexes` or `refused`, by layer digest. */
  blobs: Map<Digest, Descriptor>;
  /** Why the artifact `digest` was refused as a whole (its size, type or subject), if it was. */
  refusedArtifact?: string;
  /** Why there are none, or which blobs were refused. */
  problems: string[];
  /**
   * What finding them fetched from the registry, for a mount's metadata totals (as its manifest
   * and config): the referrers listing (API pages or the tag schema's index), the artifact's
   * manifest and every index blob read; requests include answers without a body (404).
   */
  fetched: FetchCounter;
}

/** The verified index of one layer among those found, or why it has none. */
export function layerGzipIndex(found: FoundGzipIndexes, layer: Digest): { index: GzipIndex } | { reason: string } {
  const index = found.indexes.get(layer);
  if (index) return { index };
  const refused = found.refused.get(layer);
  if (refused) return { reason: `its gzip index was refused: ${refused}` };
  if (found.digest) return { reason: `gzip index ${found.digest} has none for this layer${found.problems.length ? ` (${found.problems.join('; ')})` : ''}` };
  return { reason: found.problems.join('; ') || 'no gzip index' };
}

const created = (d: Descriptor) => d.annotations?.[Annotation.ociCreated] ?? '';

/** Index blobs read at once: each may be up to MAX_INDEX_BYTES, and an artifact may list many. */
const PARALLEL_BLOB_READS = 4;

export interface GzipIndexSearch {
  /**
   * The verified index of `layer`, or why it has none, as soon as that layer's own blob is read
   * (or the artifact is known to have none for it): a layer does not wait for the others' indexes.
   */
  layer(layer: Digest): Promise<{ index: GzipIndex } | { reason: string }>;
  /** Everything found, once every blob is read. Never rejects. */
  all: Promise<FoundGzipIndexes>;
}

/**
 * Looks for the gzip indexes of `image` (from a docker:// source): the newest artifact that refers
 * to its platform manifest, its blobs read in parallel, each checked (size bound, digest, decoded
 * against the layer it names). Never fails for a registry or content problem: a refused blob
 * leaves its layer without index.
 */
export function findGzipIndexes(source: ImageSource, image: { manifestDescriptor: Descriptor; manifest: ImageManifest }): GzipIndexSearch {
  const found: FoundGzipIndexes = { indexes: new Map(), refused: new Map(), blobs: new Map(), problems: [], fetched: { bytes: 0, requests: 0 } };
  const subject = image.manifestDescriptor.digest;
  const fail = (err: unknown) => {
    found.problems.push(`gzip index of ${subject}: ${(err as Error).message}`);
    if (found.digest) found.refusedArtifact = (err as Error).message;
  };
  const listed = listIndexBlobs(source, image, found).catch((err: unknown) => {
    fail(err);
    return new Map<Digest, Descriptor>();
  });
  const reads = listed.then((blobs) => {
    const limit = limiter(PARALLEL_BLOB_READS);
    return new Map([...blobs].map(([layer, blob]) => [layer, limit(() => readIndexBlob(source, image, layer, blob, found))]));
  });
  return {
    layer: async (layer) => {
      await (await reads).get(layer);
      return layerGzipIndex(found, layer);
    },
    all: reads.then(async (r) => {
      await Promise.all(r.values());
      return found;
    }),
  };
}

/**
 * The newest artifact's index blobs by the image layer each names, checked as a whole (size,
 * type, subject); blobs naming no layer of the image, or a layer named before, are problems.
 */
async function listIndexBlobs(source: ImageSource, image: { manifestDescriptor: Descriptor; manifest: ImageManifest }, found: FoundGzipIndexes): Promise<Map<Digest, Descriptor>> {
  const blobs = new Map<Digest, Descriptor>();
  const registry = registryOf(source);
  if (!registry) {
    found.problems.push('gzip indexes are found in registries only (docker:// references)');
    return blobs;
  }
  const subject = image.manifestDescriptor.digest;
  const { via, manifests } = await listReferrers(registry.client, registry.repository, subject, GZIP_INDEX_ARTIFACT_TYPE, found.fetched);
  found.via = via;
  const newest = [...manifests].sort((a, b) => (created(a) < created(b) ? 1 : created(a) > created(b) ? -1 : 0))[0];
  if (!newest) {
    found.problems.push(`no gzip index refers to ${subject}`);
    return blobs;
  }
  found.digest = newest.digest;
  if (newest.size > MAX_ARTIFACT_MANIFEST_BYTES) throw new GzipIndexError(`manifest of ${newest.size} bytes is larger than the ${MAX_ARTIFACT_MANIFEST_BYTES} allowed`);
  found.fetched.requests++;
  const manifestBytes = await source.fetchJSONBytes({ mediaType: MediaType.ociManifest, digest: newest.digest, size: newest.size });
  found.fetched.bytes += manifestBytes.length;
  const m = parseManifest(manifestBytes, MediaType.ociManifest, `gzip index ${newest.digest}`);
  if (m.artifactType !== GZIP_INDEX_ARTIFACT_TYPE) throw new GzipIndexError(`artifactType ${JSON.stringify(m.artifactType)} is not ${GZIP_INDEX_ARTIFACT_TYPE}`);
  if (m.subject?.digest !== subject) throw new GzipIndexError(`its subject is ${m.subject?.digest ?? 'missing'}, not the image's manifest ${subject}`);
  for (const blob of m.layers.filter((l) => l.mediaType === GZIP_INDEX_MEDIA_TYPE)) {
    const named = blob.annotations?.[GZIP_INDEX_LAYER_ANNOTATION];
    const layer = image.manifest.layers.find((l) => l.digest === named);
    if (!layer) found.problems.push(`index blob ${blob.digest}: it names no layer of the image (${GZIP_INDEX_LAYER_ANNOTATION}: ${named ?? 'missing'})`);
    else if (blobs.has(layer.digest)) found.problems.push(`index blob ${blob.digest}: a second index of layer ${layer.digest}, ignored`);
    else blobs.set(layer.digest, blob);
  }
  return blobs;
}

/** Reads, bounds and decodes the index `blob` of `layer` into `found` (its index, or why it was refused). */
async function readIndexBlob(source: ImageSource, image: { manifest: ImageManifest }, layer: Digest, blob: Descriptor, found: FoundGzipIndexes): Promise<void> {
  found.blobs.set(layer, blob);
  try {
    if (blob.size > MAX_INDEX_BYTES) throw new GzipIndexError(`${blob.size} bytes is more than the ${MAX_INDEX_BYTES} allowed`);
    found.indexes.set(layer, await decodeGzipIndex(await readBlob(source, blob, found.fetched), image.manifest.layers.find((l) => l.digest === layer)!));
  } catch (err) {
    const why = `index blob ${blob.digest}: ${(err as Error).message}`;
    found.problems.push(why);
    found.refused.set(layer, why);
  }
}

/** A blob whose descriptor was bounded already; the stream checks size and digest at its end. */
async function readBlob(source: ImageSource, desc: Descriptor, counter: FetchCounter): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  counter.requests++;
  for await (const chunk of await source.openBlobStream(desc)) {
    size += (chunk as Buffer).length;
    counter.bytes += (chunk as Buffer).length;
    if (size > desc.size) throw new GzipIndexError(`blob ${desc.digest} is longer than its ${desc.size} bytes`);
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts, size);
}
