// Decides per layer whether it can be mounted lazily: a chunked format with a TOC that verifies
// against the manifest annotation. Otherwise the answer says why not, and the mount falls back to
// fetching the layer whole (whole-layer.ts).
import type { BlobSource } from '../blob/source.js';
import { openEstargz } from '../format/estargz/reader.js';
import { TocError, type LayerToc } from '../format/toc.js';
import { openZstdChunked } from '../format/zstdchunked/reader.js';
import { parseDigest } from '../oci/digest.js';
import { Annotation, layerCompression } from '../oci/mediatypes.js';
import type { Descriptor } from '../oci/types.js';

export type LazyLayerResult = { ok: true; toc: LayerToc } | { ok: false; reason: string };

export async function openLazyLayer(blob: BlobSource, desc: Descriptor): Promise<LazyLayerResult> {
  const ann = desc.annotations ?? {};
  const compression = layerCompression(desc.mediaType);
  try {
    if (ann[Annotation.estargzTocDigest] !== undefined && compression === 'gzip') {
      const tocDigest = parseDigest(ann[Annotation.estargzTocDigest], `${Annotation.estargzTocDigest} annotation`);
      return { ok: true, toc: await openEstargz(blob, { tocDigest }) };
    }
    if (compression === 'zstd' && (ann[Annotation.zstdChunkedManifestChecksum] ?? ann[Annotation.legacyZstdChunkedManifestChecksum]) !== undefined) {
      return { ok: true, toc: await openZstdChunked(blob, ann, { requireChecksum: true }) };
    }
  } catch (err) {
    if (err instanceof TocError || (err as Error).name === 'DigestError') return { ok: false, reason: `TOC unusable: ${(err as Error).message}` };
    throw err;
  }
  if (compression === undefined) return { ok: false, reason: `unknown layer media type ${desc.mediaType}` };
  const what = compression === 'none' ? 'uncompressed tar' : `plain ${compression}`;
  return { ok: false, reason: `${what} layer without a TOC annotation (not eStargz or zstd:chunked)` };
}
