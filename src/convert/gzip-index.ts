// Indexing an image's layers (`starling index`): each gzip layer is streamed once through
// buildGzipIndex; the layers themselves are never changed.
import { claimedCodec } from '../format/codecs.js';
import { TarFormatError } from '../format/estargz/tar-reader.js';
import { buildGzipIndex } from '../format/gzipindex/build.js';
import { gzipIndexCodec } from '../format/gzipindex/codec.js';
import { encodeGzipIndex, MAX_SPAN_SIZE } from '../format/gzipindex/encoding.js';
import type { GzipIndex } from '../format/gzipindex/model.js';
import { TarEntryError } from '../format/tar-entry.js';
import { layerCompression } from '../oci/mediatypes.js';
import type { ImageSource } from '../oci/store.js';
import type { Descriptor } from '../oci/types.js';

/** `starling index`'s default minimum layer size: smaller layers are fetched whole, on their first read. */
export const DEFAULT_MIN_LAYER_SIZE = 10 << 20;

export interface IndexOptions {
  /** Uncompressed bytes between checkpoints. */
  span: number;
  /**
   * Smaller layers are indexed as one span (of up to MAX_SPAN_SIZE uncompressed bytes): a mount
   * fetches such a layer whole, but on its first read instead of before mounting, since the index
   * gives it the file table.
   */
  minLayerSize: number;
  /** Told before each layer is read. */
  onLayer?(layer: Descriptor, i: number): void;
}

export type LayerIndexResult =
  | { layer: Descriptor; indexed: true; index: GzipIndex; stored: Buffer; seconds: number }
  | { layer: Descriptor; indexed: false; reason: string };

/** Why `layer` gets no index, or undefined when it should get one. */
function skipReason(layer: Descriptor): string | undefined {
  const compression = layerCompression(layer.mediaType);
  if (compression !== gzipIndexCodec.compression) return `${compression ?? 'unknown'} layer (${layer.mediaType}): only ${gzipIndexCodec.compression} layers are indexed`;
  const claimed = claimedCodec(layer);
  if (claimed) return `${claimed.codec.title} layer: lazy through its own TOC`;
  return undefined;
}

/** Indexes the layers of one image manifest, in order; skipped layers say why. */
export async function indexImageLayers(source: ImageSource, layers: readonly Descriptor[], opts: IndexOptions): Promise<LayerIndexResult[]> {
  const out: LayerIndexResult[] = [];
  for (const [i, layer] of layers.entries()) {
    const reason = skipReason(layer);
    if (reason !== undefined) {
      out.push({ layer, indexed: false, reason });
      continue;
    }
    opts.onLayer?.(layer, i);
    const start = performance.now();
    // The stream checks the blob's digest at its end: an index is only ever built from the real layer.
    const stream = await source.openBlobStream(layer);
    let index: GzipIndex;
    try {
      index = await buildGzipIndex(stream, layer, layer.size < opts.minLayerSize ? MAX_SPAN_SIZE : opts.span);
    } catch (err) {
      stream.destroy();
      // A tar the file table cannot hold (sparse files, a path escaping the root) leaves that layer to be fetched whole.
      if (!(err instanceof TarEntryError || err instanceof TarFormatError)) throw err;
      out.push({ layer, indexed: false, reason: `cannot be indexed: ${err.message}` });
      continue;
    }
    out.push({ layer, indexed: true, index, stored: await encodeGzipIndex(index), seconds: (performance.now() - start) / 1000 });
  }
  return out;
}
