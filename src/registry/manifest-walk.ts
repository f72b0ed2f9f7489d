// The descent every walk over an image reference shares: root → index entries → manifests, each
// document fetched, verified (ImageSource) and parsed once, indexes nested at most MAX_DEPTH deep.
// A fold chooses which entries of an index to walk into and what each document becomes; resolve.ts
// (one platform's manifest) and image/manifest-walk.ts (every manifest, for convert and inspect) are
// built on it.
import { MediaType } from '../oci/mediatypes.js';
import type { ImageSource } from '../oci/store.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from '../oci/types.js';
import { parseManifestOrIndex } from '../oci/validate.js';

export class ResolveError extends Error {}

// Nested indexes are allowed, but not without end.
const MAX_DEPTH = 4;

interface DocumentNode {
  descriptor: Descriptor;
  /** The document's bytes, verified against `descriptor`. */
  bytes: Buffer;
  /** Where it is from the root: `root`, `root.manifests[1]`, … */
  path: string;
  /** The index entry it was reached through; undefined for the root. */
  entry?: Descriptor;
}

export interface IndexNode extends DocumentNode {
  kind: 'index';
  index: ImageIndex;
}

export interface ManifestNode extends DocumentNode {
  kind: 'manifest';
  manifest: ImageManifest;
}

export interface ManifestFold<T> {
  /** The entries of `node.index.manifests` to walk into, in order (default: all). May throw (nothing fits). */
  select?(node: IndexNode): readonly Descriptor[];
  manifest(node: ManifestNode): T | Promise<T>;
  /** An index, once the entries chosen have been walked, with what each became. */
  index(node: IndexNode, children: Array<{ entry: Descriptor; value: T }>): T | Promise<T>;
}

export interface WalkFrom {
  /** Where to start (default: the source's root). */
  from?: { descriptor: Descriptor; bytes: Buffer };
  /** How a document is named in parse errors (default: its path). */
  field?(node: DocumentNode): string;
}

/** Folds the documents under `source`'s root (or `opts.from`), depth first, entries in the order chosen. */
export async function walkManifests<T>(source: ImageSource, fold: ManifestFold<T>, opts: WalkFrom = {}): Promise<T> {
  const root = opts.from ?? (await source.resolveRoot());
  const visit = async (doc: DocumentNode, depth: number): Promise<T> => {
    const parsed = parseManifestOrIndex(doc.bytes, doc.descriptor.mediaType, opts.field?.(doc) ?? doc.path);
    if (parsed.kind === 'manifest') return fold.manifest({ ...doc, kind: 'manifest', manifest: parsed.manifest });
    if (depth >= MAX_DEPTH) throw new ResolveError(`${source.description}: indexes nested more than ${MAX_DEPTH} deep`);
    const node: IndexNode = { ...doc, kind: 'index', index: parsed.index };
    const children: Array<{ entry: Descriptor; value: T }> = [];
    for (const entry of fold.select?.(node) ?? node.index.manifests) {
      const path = `${doc.path}.manifests[${node.index.manifests.indexOf(entry)}]`;
      children.push({ entry, value: await visit({ descriptor: entry, bytes: await source.fetchJSONBytes(entry), path, entry }, depth + 1) });
    }
    return fold.index(node, children);
  };
  return visit({ descriptor: root.descriptor, bytes: root.bytes, path: 'root' }, 0);
}

const IMAGE_CONFIG_TYPES: readonly string[] = [MediaType.ociConfig, MediaType.dockerConfig];

/** Whether a manifest's config makes it a container image (not an artifact such as a signature or a Helm chart). */
export function hasImageConfig(manifest: ImageManifest): boolean {
  return IMAGE_CONFIG_TYPES.includes(manifest.config.mediaType);
}

/** The platform an image config names. */
export function configPlatform(c: ImageConfig): Platform {
  return { os: c.os, architecture: c.architecture, ...(c.variant ? { variant: c.variant } : {}), ...(c['os.features'] ? { 'os.features': c['os.features'] } : {}) };
}
