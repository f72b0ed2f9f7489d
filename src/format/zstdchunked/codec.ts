// zstd:chunked in the codec table (formats.md §1b): current `io.github.containers.*` annotations,
// and the pre-2022 `io.containers.*` ones that containers/storage ≤ 1.43 writes (read, never kept).
import { Annotation } from '../../oci/mediatypes.js';
import type { SeekableCodec } from '../codec.js';
import { FOOTER_FRAME_SIZE, parseFooter } from './footer.js';
import { openZstdChunked } from './reader.js';

/** Some writers add the tar-split's checksum; Starling neither writes nor needs it. */
const TAR_SPLIT_CHECKSUM = 'io.github.containers.zstd-chunked.tarsplit-checksum';

/** Whether the blob's last bytes are a zstd:chunked footer of either generation. */
function hasFooter(tail: Buffer): boolean {
  try {
    return parseFooter(tail) !== undefined;
  } catch {
    return true; // a footer magic with bad fields is still a zstd:chunked footer, just a broken one
  }
}

export const zstdChunkedCodec: SeekableCodec = {
  role: 'seekable',
  kind: 'zstd:chunked',
  title: 'zstd:chunked',
  compression: 'zstd',
  tocDigestKey: Annotation.zstdChunkedManifestChecksum,
  annotationKeys: [Annotation.zstdChunkedManifestChecksum, Annotation.zstdChunkedManifestPosition, Annotation.zstdChunkedTarSplitPosition],
  staleAnnotationKeys: [Annotation.legacyZstdChunkedManifestChecksum, Annotation.legacyZstdChunkedManifestPosition, TAR_SPLIT_CHECKSUM],
  ownTarEntries: false,
  claim(a) {
    if (a[Annotation.zstdChunkedManifestChecksum] !== undefined) return 'current';
    return a[Annotation.legacyZstdChunkedManifestChecksum] !== undefined ? 'legacy' : undefined;
  },
  describeClaim: (a) => `zstd:chunked, TOC checksum ${a[Annotation.zstdChunkedManifestChecksum] ?? a[Annotation.legacyZstdChunkedManifestChecksum]}`,
  footer: { size: FOOTER_FRAME_SIZE, detect: hasFooter },
  open: (blob, annotations, { requireDigest }) => openZstdChunked(blob, annotations, { requireChecksum: requireDigest }),
};
