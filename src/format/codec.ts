// What a layer format is to the rest of Starling: one codec object (DESIGN.md "Seams that stay
// stable"). The table of them is codecs.ts; nothing outside format/ switches on format names.
import type { BlobSource } from '../blob/source.js';
import type { LayerCompression } from '../oci/mediatypes.js';
import type { GzipIndex } from './gzipindex/model.js';
import type { LayerToc } from './toc.js';

/** What a layer is, as `starling inspect` names it. */
export type LayerKind = SeekableCodec['kind'] | PlainCodec['kind'] | 'unknown';

/** A format with its TOC inside the blob, authenticated by a digest in the layer descriptor's annotations. */
export interface SeekableCodec {
  readonly role: 'seekable';
  readonly kind: 'estargz' | 'zstd:chunked' | 'estargz-zstd';
  /** The format's name for people. */
  readonly title: string;
  readonly compression: LayerCompression;
  /** The annotation holding the digest that authenticates the TOC. */
  readonly tocDigestKey: string;
  /** The annotations the format puts on a layer it wrote: kept when such a layer passes through a conversion. */
  readonly annotationKeys: readonly string[];
  /** Keys of the format that a conversion never carries over (older names, ones Starling does not write). */
  readonly staleAnnotationKeys: readonly string[];
  /** Whether its decompressed tar holds entries of the format's own (TOC, landmarks) besides the image's files. */
  readonly ownTarEntries: boolean;
  /** What a descriptor's annotations say: the format's current keys, only older ones (readable; a conversion rewrites them), or nothing of it. */
  claim(annotations: Readonly<Record<string, string>>): 'current' | 'legacy' | undefined;
  /** For people: a layer whose descriptor claims the format (its TOC digest; why not lazy when it cannot be opened). */
  describeClaim(annotations: Readonly<Record<string, string>>): string;
  /** How a blob shows the format without any annotation: the bytes of its end needed, and the check (a broken footer still counts). */
  readonly footer?: { size: number; detect(tail: Buffer): boolean };
  /**
   * Opens the blob's TOC, verified against the digest under `tocDigestKey` in `annotations`;
   * without one it is refused when `requireDigest`, else opened unverified (a bare blob). Absent:
   * recognised, but lazy mounts do not read the format.
   */
  open?(blob: BlobSource, annotations: Readonly<Record<string, string>>, opts: { requireDigest: boolean }): Promise<LayerToc>;
}

/** A format whose TOC travels beside the image: an index of an unchanged layer, found as a referrer. */
export interface SideIndexCodec {
  readonly role: 'side-index';
  readonly kind: 'gzip-index';
  /** The layers it indexes: plain ones of this compression (its referrer's media types: gzipindex/media-types.ts). */
  readonly compression: LayerCompression;
  /** The LayerToc of a layer read through its index (verified against the layer already). */
  open(index: GzipIndex): LayerToc;
}

/** A layer without a seekable format: gzip, zstd or an uncompressed tar, told apart by magic bytes. */
export interface PlainCodec {
  readonly role: 'plain';
  readonly kind: 'gzip' | 'zstd' | 'tar';
  readonly compression: LayerCompression;
  /** The blob's first bytes; empty for the uncompressed tar (whatever has no other magic). */
  readonly magic: Uint8Array;
  /** For people: why a layer of this kind is not lazy, told from its descriptor and its end. */
  readonly detail: string;
  /** The same for a bare blob (no descriptor: only the footers were looked for). */
  readonly bareDetail: string;
}

export type LayerCodec = SeekableCodec | SideIndexCodec | PlainCodec;
