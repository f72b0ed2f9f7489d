// What `starling inspect` says of an image manifest's gzip indexes (docs/gzip-index.md): the
// referrer found, and per layer whether it has an index, its spans, and whether it verifies against
// the layer as a mount checks it (the referrer's subject is the manifest, the index names the
// layer's digest and size and decodes).
import { mayUseGzipIndex } from '../format/open.js';
import { findGzipIndexes, layerGzipIndex } from '../image/gzip-index-registry.js';
import type { Digest } from '../oci/digest.js';
import type { ImageSource } from '../oci/store.js';
import type { Descriptor, ImageManifest } from '../oci/types.js';

export interface GzipIndexSummary {
  /** The referrer manifest used (the newest), when one was found. */
  referrer: Digest | null;
  via: 'api' | 'tag' | null;
  /** Why there is none, why it was refused as a whole, or which of its blobs were refused. */
  problems: string[];
}

/** An index blob: digest and size. */
export type IndexBlob = Pick<Descriptor, 'digest' | 'size'>;

export type LayerGzipIndexReport =
  | { state: 'verified'; blob: IndexBlob; spans: number; spanSize: number; entries: number }
  /** `blob` when the referrer as a whole passed and the layer's blob did not. */
  | { state: 'refused'; blob?: IndexBlob; reason: string }
  | { state: 'none'; reason: string };

/**
 * The gzip indexes of one image manifest of `source` (a registry): the summary, and a report for
 * each layer that has an index or could be lazy only through one (a plain gzip layer).
 */
export async function inspectGzipIndexes(source: ImageSource, image: { manifestDescriptor: Descriptor; manifest: ImageManifest }): Promise<{ summary: GzipIndexSummary; layers: Map<Digest, LayerGzipIndexReport> }> {
  const found = await findGzipIndexes(source, image).all;
  const layers = new Map<Digest, LayerGzipIndexReport>();
  for (const layer of image.manifest.layers) {
    // The reasons are those a mount gives in `starling stats`.
    const lookup = layerGzipIndex(found, layer.digest);
    const stored = found.blobs.get(layer.digest);
    if (stored) {
      const blob = { digest: stored.digest, size: stored.size };
      if ('index' in lookup) {
        const { checkpoints, spanSize, entries } = lookup.index;
        layers.set(layer.digest, { state: 'verified', blob, spans: checkpoints.length, spanSize, entries: entries.length });
      } else layers.set(layer.digest, { state: 'refused', blob, reason: lookup.reason });
    } else if (mayUseGzipIndex(layer) && 'reason' in lookup) {
      const refused = found.refusedArtifact;
      layers.set(layer.digest, refused === undefined ? { state: 'none', reason: lookup.reason } : { state: 'refused', reason: `gzip index ${found.digest} was refused: ${refused}` });
    }
  }
  return { summary: { referrer: found.digest ?? null, via: found.via ?? null, problems: found.problems }, layers };
}
