// Which format a layer is in, decided by the codec table (codecs.ts) from its descriptor (media
// type + annotations) and, only when that leaves it open, the blob's tail; and opening it. Lazy
// pulling needs a TOC that the manifest authenticates (eStargz by its TOC digest annotation,
// zstd:chunked by its manifest checksum) or a gzip index verified against the layer. A layer
// without one is "not lazy-capable" (a reason, not an error); a TOC that is there but fails
// verification is an error (thrown).
import type { BlobSource } from '../blob/source.js';
import type { Digest } from '../oci/digest.js';
import { layerCompression, type LayerCompression } from '../oci/mediatypes.js';
import type { Descriptor } from '../oci/types.js';
import type { LayerKind, SeekableCodec } from './codec.js';
import { claimedCodec, seekableCodecs, sideIndexCodecOf } from './codecs.js';
import type { GzipIndex } from './gzipindex/model.js';
import { MAGIC_SIZE, plainCodec, plainCodecByMagic } from './plain-codecs.js';
import type { LayerToc } from './toc.js';

export type { LayerKind } from './codec.js';

export interface LayerFormatInfo {
  kind: LayerKind;
  /** The descriptor carries the digest that authenticates the TOC: the layer can be mounted lazily. */
  lazy: boolean;
  /** For people: what the layer is and, when not lazy-capable, why. */
  detail: string;
}

async function tail(blob: BlobSource, n: number): Promise<Buffer> {
  const size = Math.min(blob.size, n);
  return blob.read(blob.size - size, size);
}

/** The first seekable format of `compression` whose footer ends the blob. */
async function footerCodec(blob: BlobSource, compression: LayerCompression): Promise<SeekableCodec | undefined> {
  for (const codec of seekableCodecs(compression)) if (codec.footer?.detect(await tail(blob, codec.footer.size))) return codec;
  return undefined;
}

/**
 * Classifies a layer. Reads the blob's last bytes (at most 72), and only for layers whose
 * descriptor does not already say how they are authenticated (to tell "plain gzip" from "footer
 * without digest").
 */
export async function describeLayerFormat(blob: BlobSource, desc: Descriptor): Promise<LayerFormatInfo> {
  const compression = layerCompression(desc.mediaType);
  if (compression === undefined) return { kind: 'unknown', lazy: false, detail: `media type ${desc.mediaType} is not a layer type Starling knows` };
  const annotations = desc.annotations ?? {};
  const claimed = claimedCodec(desc);
  if (claimed) return { kind: claimed.codec.kind, lazy: claimed.codec.open !== undefined, detail: claimed.codec.describeClaim(annotations) };
  const footer = await footerCodec(blob, compression);
  if (footer) return { kind: footer.kind, lazy: false, detail: `${footer.title} footer but no ${footer.tocDigestKey} annotation: the TOC cannot be verified` };
  const plain = plainCodec(compression);
  return { kind: plain.kind, lazy: false, detail: plain.detail };
}

/** Whether a layer can be lazy only through a gzip index (a gzip layer without an eStargz TOC annotation): worth looking for indexes. */
export function mayUseGzipIndex(desc: Descriptor): boolean {
  return sideIndexCodecOf(desc) !== undefined;
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
  if (info.lazy) return { ok: true, toc: await claimedCodec(desc)!.codec.open!(blob, desc.annotations ?? {}, { requireDigest: true }) };
  const sideIndex = sideIndexCodecOf(desc);
  // A layer with a format's footer (but no digest for it) is not plain: no side index serves it.
  if (!sideIndex || info.kind !== plainCodec(sideIndex.compression).kind || !gzipIndex) return { ok: false, reason: info.detail };
  const found = await gzipIndex;
  return 'index' in found ? { ok: true, toc: sideIndex.open(found.index) } : { ok: false, reason: `${info.detail}; ${found.reason}` };
}

export interface LayerBlobInfo {
  compression: LayerCompression;
  kind: Exclude<LayerKind, 'unknown'>;
  /** For people: what the blob is. */
  detail: string;
  /** The TOC read from the footer, when the blob has one. */
  toc?: LayerToc;
}

/**
 * A bare layer blob (no descriptor, so no annotation): its compression by magic, its format by
 * footer, and its TOC, verified against `tocDigest` (the digest a descriptor would carry) when given.
 */
export async function openLayerBlob(blob: BlobSource, tocDigest?: Digest): Promise<LayerBlobInfo> {
  const { compression, bareDetail, kind } = plainCodecByMagic(await blob.read(0, Math.min(MAGIC_SIZE, blob.size)));
  const codec = await footerCodec(blob, compression);
  if (!codec?.open) return { compression, kind, detail: bareDetail };
  const annotations = tocDigest !== undefined ? { [codec.tocDigestKey]: tocDigest } : {};
  return { compression, kind: codec.kind, detail: codec.title, toc: await codec.open(blob, annotations, { requireDigest: false }) };
}
