// Which seekable format a layer descriptor claims (by its annotations and media type), and the
// annotation keys each format owns, so a converted layer never carries stale keys of another.
import { Annotation, layerCompression } from '../oci/mediatypes.js';
import type { Descriptor } from '../oci/types.js';

/**
 * What a layer descriptor says it is:
 * - `estargz`: gzip layer with the eStargz TOC digest;
 * - `zstd:chunked`: zstd layer with the current `io.github.containers.*` checksum;
 * - `zstd:chunked-legacy`: zstd layer with only the pre-2022 `io.containers.*` keys (containers/storage ≤ 1.43);
 * - `estargz-zstd`: stargz-snapshotter's eStargz-over-zstd (TOC digest on a zstd layer, formats.md §1a.9);
 * - `plain`: an ordinary layer.
 */
export type ClaimedFormat = 'estargz' | 'zstd:chunked' | 'zstd:chunked-legacy' | 'estargz-zstd' | 'plain';

/** containerd's content label some tools also put on descriptors: the diffID, stale after eStargz conversion. */
const CONTAINERD_UNCOMPRESSED = 'containerd.io/uncompressed';

const FORMAT_KEYS: readonly string[] = [
  Annotation.estargzTocDigest,
  Annotation.estargzUncompressedSize,
  Annotation.estargzTocOffset,
  Annotation.zstdChunkedManifestChecksum,
  Annotation.zstdChunkedManifestPosition,
  Annotation.zstdChunkedTarSplitPosition,
  Annotation.legacyZstdChunkedManifestChecksum,
  Annotation.legacyZstdChunkedManifestPosition,
  'io.github.containers.zstd-chunked.tarsplit-checksum',
  CONTAINERD_UNCOMPRESSED,
];

export function claimedFormat(desc: Descriptor): ClaimedFormat {
  const a = desc.annotations ?? {};
  const compression = layerCompression(desc.mediaType);
  const hasToc = a[Annotation.estargzTocDigest] !== undefined;
  if (compression === 'zstd') {
    if (a[Annotation.zstdChunkedManifestChecksum] !== undefined && !hasToc) return 'zstd:chunked';
    if (hasToc) return 'estargz-zstd';
    if (a[Annotation.legacyZstdChunkedManifestChecksum] !== undefined) return 'zstd:chunked-legacy';
    return 'plain';
  }
  if (compression === 'gzip' && hasToc) return 'estargz';
  return 'plain';
}

/** Whether the decompressed tar of such a layer holds eStargz's own entries (TOC, landmarks) to drop. */
export function hasEstargzEntries(format: ClaimedFormat): boolean {
  return format === 'estargz' || format === 'estargz-zstd';
}

/** `annotations` without any seekable-format key (and without containerd's stale uncompressed digest). */
export function withoutFormatAnnotations(annotations: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(annotations ?? {})) if (!FORMAT_KEYS.includes(k)) out[k] = v;
  return out;
}

/** The annotations of a layer already in `format`, without the keys that belong to the other format. */
export function keepOwnFormatAnnotations(annotations: Record<string, string> | undefined, format: 'estargz' | 'zstd:chunked'): Record<string, string> {
  const own: readonly string[] =
    format === 'estargz'
      ? [Annotation.estargzTocDigest, Annotation.estargzUncompressedSize, Annotation.estargzTocOffset, CONTAINERD_UNCOMPRESSED]
      : [Annotation.zstdChunkedManifestChecksum, Annotation.zstdChunkedManifestPosition, Annotation.zstdChunkedTarSplitPosition, CONTAINERD_UNCOMPRESSED];
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(annotations ?? {})) if (!FORMAT_KEYS.includes(k) || own.includes(k)) out[k] = v;
  return out;
}
