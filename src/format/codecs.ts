// The codec table: every layer format Starling knows, and the lookups the rest of Starling asks
// instead of telling formats apart itself (DESIGN.md "Seams that stay stable").
import { layerCompression, type LayerCompression } from '../oci/mediatypes.js';
import type { Descriptor } from '../oci/types.js';
import type { LayerCodec, SeekableCodec, SideIndexCodec } from './codec.js';
import { estargzCodec, estargzZstdCodec } from './estargz/codec.js';
import { gzipIndexCodec } from './gzipindex/codec.js';
import { PLAIN_CODECS } from './plain-codecs.js';
import type { LayerFormat } from './toc.js';
import { zstdChunkedCodec } from './zstdchunked/codec.js';

/**
 * Seekable codecs of one compression are in order of precedence: an eStargz TOC annotation on a
 * zstd layer makes it eStargz-over-zstd, whatever zstd:chunked keys it carries too.
 */
export const CODECS: readonly LayerCodec[] = [estargzCodec, estargzZstdCodec, zstdChunkedCodec, gzipIndexCodec, ...PLAIN_CODECS];

const SEEKABLE = CODECS.filter((c): c is SeekableCodec => c.role === 'seekable');
const SIDE_INDEX = CODECS.filter((c): c is SideIndexCodec => c.role === 'side-index');

/** The seekable formats a blob of `compression` may be in, in order of precedence. */
export function seekableCodecs(compression: LayerCompression): SeekableCodec[] {
  return SEEKABLE.filter((c) => c.compression === compression);
}

/** The codec of a format Starling converts to. */
export function seekableCodec(format: LayerFormat): SeekableCodec {
  return SEEKABLE.find((c) => c.kind === format)!;
}

/** The seekable format a layer descriptor claims through its annotations; undefined for an ordinary layer. */
export function claimedCodec(desc: Descriptor): { codec: SeekableCodec; claim: 'current' | 'legacy' } | undefined {
  const compression = layerCompression(desc.mediaType);
  if (compression === undefined) return undefined;
  for (const codec of seekableCodecs(compression)) {
    const claim = codec.claim(desc.annotations ?? {});
    if (claim !== undefined) return { codec, claim };
  }
  return undefined;
}

/** Whether a layer descriptor claims `format` with the format's current annotations. */
export function claimsFormat(desc: Descriptor, format: LayerFormat): boolean {
  const claimed = claimedCodec(desc);
  return claimed?.codec.kind === format && claimed.claim === 'current';
}

/** The side index a layer may be read lazily through: it is a plain layer (no format claimed) of a compression one indexes. */
export function sideIndexCodecOf(desc: Descriptor): SideIndexCodec | undefined {
  const compression = layerCompression(desc.mediaType);
  if (claimedCodec(desc) !== undefined) return undefined;
  return SIDE_INDEX.find((c) => c.compression === compression);
}

/** containerd's content label some tools also put on descriptors: the diffID, stale once a layer is converted. */
const CONTAINERD_UNCOMPRESSED = 'containerd.io/uncompressed';

const FORMAT_KEYS: ReadonlySet<string> = new Set([...SEEKABLE.flatMap((c) => [...c.annotationKeys, ...c.staleAnnotationKeys]), CONTAINERD_UNCOMPRESSED]);

/** `annotations` without any seekable format's key (and without containerd's stale uncompressed digest). */
export function withoutFormatAnnotations(annotations: Readonly<Record<string, string>> | undefined): Record<string, string> {
  return keepOnly(annotations, new Set());
}

/** The annotations of a layer already in `format`, without the keys of other formats and the stale ones of its own. */
export function keepOwnFormatAnnotations(annotations: Readonly<Record<string, string>> | undefined, format: LayerFormat): Record<string, string> {
  return keepOnly(annotations, new Set([...seekableCodec(format).annotationKeys, CONTAINERD_UNCOMPRESSED]));
}

function keepOnly(annotations: Readonly<Record<string, string>> | undefined, own: ReadonlySet<string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(annotations ?? {})) if (!FORMAT_KEYS.has(k) || own.has(k)) out[k] = v;
  return out;
}
