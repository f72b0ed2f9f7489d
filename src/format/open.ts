// Which seekable format a layer is in, decided from its descriptor (media type + annotations) and,
// only when that leaves it open, the blob's tail; and opening it. Lazy pulling needs a TOC that the
// manifest authenticates: eStargz by `containerd.io/snapshot/stargz/toc.digest`, zstd:chunked by
// the manifest-checksum annotation. A layer without one is "not lazy-capable" (a reason, not an
// error); a TOC that is there but fails verification is an error (thrown).
import type { BlobSource } from '../blob/source.js';
import { isDigest } from '../oci/digest.js';
import { Annotation, layerCompression } from '../oci/mediatypes.js';
import type { Descriptor } from '../oci/types.js';
import { parseFooter as parseEstargzFooter } from './estargz/footer.js';
import { openEstargz } from './estargz/reader.js';
import { gzipIndexToc } from './gzipindex/layer.js';
import type { GzipIndex } from './gzipindex/model.js';
import { TocError, type LayerToc } from './toc.js';
import { FOOTER_FRAME_SIZE, parseFooter as parseZstdChunkedFooter } from './zstdchunked/footer.js';
import { openZstdChunked } from './zstdchunked/reader.js';

export type LayerKind =
  | 'estargz'
  | 'zstd:chunked'
  /** stargz-snapshotter's "zstdchunked": eStargz TOC JSON in a zstd blob (formats.md §1a.9). */
  | 'estargz-zstd'
  | 'gzip'
  | 'zstd'
  | 'tar'
  | 'unknown';

export interface LayerFormatInfo {
  kind: LayerKind;
  /** The descriptor carries the digest that authenticates the TOC: the layer can be mounted lazily. */
  lazy: boolean;
  /** For people: what the layer is and, when not lazy-capable, why. */
  detail: string;
}

const ESTARGZ_TAIL = 51;

function hasZstdChunkedChecksum(ann: Record<string, string>): boolean {
  return ann[Annotation.zstdChunkedManifestChecksum] !== undefined || ann[Annotation.legacyZstdChunkedManifestChecksum] !== undefined;
}

async function tail(blob: BlobSource, n: number): Promise<Buffer> {
  const size = Math.min(blob.size, n);
  return blob.read(blob.size - size, size);
}

/**
 * Classifies a layer. Reads at most the blob's last 72 bytes, and only for layers whose descriptor
 * does not already say how they are authenticated (to tell "plain gzip" from "footer without digest").
 */
export async function describeLayerFormat(blob: BlobSource, desc: Descriptor): Promise<LayerFormatInfo> {
  const ann = desc.annotations ?? {};
  const compression = layerCompression(desc.mediaType);
  const tocDigest = ann[Annotation.estargzTocDigest];
  if (compression === undefined) return { kind: 'unknown', lazy: false, detail: `media type ${desc.mediaType} is not a layer type Starling knows` };
  if (compression === 'none') return { kind: 'tar', lazy: false, detail: 'uncompressed tar layer: no TOC to mount it lazily' };
  if (compression === 'gzip') {
    if (tocDigest !== undefined) return { kind: 'estargz', lazy: true, detail: `eStargz, TOC digest ${tocDigest}` };
    try {
      parseEstargzFooter(await tail(blob, ESTARGZ_TAIL));
      return { kind: 'estargz', lazy: false, detail: `eStargz footer but no ${Annotation.estargzTocDigest} annotation: the TOC cannot be verified` };
    } catch (err) {
      if (!(err instanceof TocError)) throw err;
      return { kind: 'gzip', lazy: false, detail: 'plain gzip layer (no eStargz TOC annotation and no eStargz footer)' };
    }
  }
  if (tocDigest !== undefined) {
    return { kind: 'estargz-zstd', lazy: false, detail: "zstd layer with an eStargz TOC (stargz-snapshotter's zstdchunked variant) is not supported for lazy mounts" };
  }
  if (hasZstdChunkedChecksum(ann)) {
    const checksum = ann[Annotation.zstdChunkedManifestChecksum] ?? ann[Annotation.legacyZstdChunkedManifestChecksum];
    return { kind: 'zstd:chunked', lazy: true, detail: `zstd:chunked, TOC checksum ${checksum}` };
  }
  const footer = parseZstdChunkedFooterSafe(await tail(blob, FOOTER_FRAME_SIZE));
  if (footer) {
    return { kind: 'zstd:chunked', lazy: false, detail: `zstd:chunked footer but no ${Annotation.zstdChunkedManifestChecksum} annotation: the TOC cannot be verified` };
  }
  return { kind: 'zstd', lazy: false, detail: 'plain zstd layer (no zstd:chunked annotations and no zstd:chunked footer)' };
}

function parseZstdChunkedFooterSafe(buf: Buffer): boolean {
  try {
    return parseZstdChunkedFooter(buf) !== undefined;
  } catch {
    return true; // a footer magic with bad fields is still a zstd:chunked footer, just a broken one
  }
}

/** Whether a layer can be lazy only through a gzip index (a gzip layer without an eStargz TOC annotation): worth looking for indexes. */
export function mayUseGzipIndex(desc: Descriptor): boolean {
  return layerCompression(desc.mediaType) === 'gzip' && desc.annotations?.[Annotation.estargzTocDigest] === undefined;
}

/** A plain gzip layer's verified index (found beside the image, decoded against the layer), or why there is none. */
export type GzipIndexLookup = Promise<{ index: GzipIndex } | { reason: string }>;

/**
 * Opens a layer for lazy reading: its verified TOC, or the reason it cannot be mounted lazily.
 * A plain gzip layer is lazy through its index when `gzipIndex` gives one.
 * Throws (TocError) when the layer claims a TOC that fails verification.
 */
export async function openLayerToc(blob: BlobSource, desc: Descriptor, gzipIndex?: GzipIndexLookup): Promise<{ ok: true; toc: LayerToc } | { ok: false; reason: string }> {
  const info = await describeLayerFormat(blob, desc);
  if (!info.lazy) {
    if (info.kind !== 'gzip' || !gzipIndex) return { ok: false, reason: info.detail };
    const found = await gzipIndex;
    return 'index' in found ? { ok: true, toc: gzipIndexToc(found.index) } : { ok: false, reason: `${info.detail}; ${found.reason}` };
  }
  const ann = desc.annotations ?? {};
  if (info.kind === 'estargz') {
    const tocDigest = ann[Annotation.estargzTocDigest]!;
    if (!isDigest(tocDigest)) throw new TocError(`${blob.description}: annotation ${Annotation.estargzTocDigest} is not a sha256 digest: ${JSON.stringify(tocDigest)}`);
    const hint = ann[Annotation.estargzTocOffset];
    const tocOffsetHint = hint !== undefined && /^\d{1,15}$/.test(hint) ? Number(hint) : undefined;
    return { ok: true, toc: await openEstargz(blob, { tocDigest, ...(tocOffsetHint !== undefined ? { tocOffsetHint } : {}) }) };
  }
  return { ok: true, toc: await openZstdChunked(blob, ann, { requireChecksum: true }) };
}
