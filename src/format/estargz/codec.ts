// eStargz in the codec table (formats.md §1a), and stargz-snapshotter's eStargz-over-zstd variant,
// which is recognised by its annotation so that it is named and converted, never mounted lazily.
import { isDigest } from '../../oci/digest.js';
import { Annotation } from '../../oci/mediatypes.js';
import type { SeekableCodec } from '../codec.js';
import { TocError } from '../toc.js';
import { claimsEstargzToc, tocOffsetHint } from './first-read.js';
import { ESTARGZ_FOOTER_SIZE, parseFooter } from './footer.js';
import { openEstargz } from './reader.js';

const ANNOTATION_KEYS = [Annotation.estargzTocDigest, Annotation.estargzUncompressedSize, Annotation.estargzTocOffset];
const claimsToc = (a: Readonly<Record<string, string>>) => (claimsEstargzToc(a) ? 'current' : undefined);

/** Whether the blob's last bytes are an eStargz (or legacy stargz) footer. */
function hasFooter(tail: Buffer): boolean {
  try {
    parseFooter(tail);
    return true;
  } catch (err) {
    if (err instanceof TocError) return false;
    throw err;
  }
}

export const estargzCodec: SeekableCodec = {
  role: 'seekable',
  kind: 'estargz',
  title: 'eStargz',
  compression: 'gzip',
  tocDigestKey: Annotation.estargzTocDigest,
  annotationKeys: ANNOTATION_KEYS,
  staleAnnotationKeys: [],
  ownTarEntries: true,
  claim: claimsToc,
  describeClaim: (a) => `eStargz, TOC digest ${a[Annotation.estargzTocDigest]}`,
  footer: { size: ESTARGZ_FOOTER_SIZE, detect: hasFooter },
  async open(blob, annotations, { requireDigest }) {
    const tocDigest = annotations[Annotation.estargzTocDigest];
    if (tocDigest === undefined && requireDigest) throw new TocError(`${blob.description}: no ${Annotation.estargzTocDigest} annotation: the TOC cannot be verified`);
    if (tocDigest !== undefined && !isDigest(tocDigest)) throw new TocError(`${blob.description}: annotation ${Annotation.estargzTocDigest} is not a sha256 digest: ${JSON.stringify(tocDigest)}`);
    // Written by `starling convert`: footer and TOC then come in one exact read. Only a hint (see first-read.ts).
    const hint = tocOffsetHint(annotations);
    return openEstargz(blob, { ...(tocDigest !== undefined ? { tocDigest } : {}), ...(hint !== undefined ? { tocOffsetHint: hint } : {}) });
  },
};

/** stargz-snapshotter's "zstdchunked": eStargz TOC JSON in a zstd blob (formats.md §1a.9). */
export const estargzZstdCodec: SeekableCodec = {
  role: 'seekable',
  kind: 'estargz-zstd',
  title: 'eStargz over zstd',
  compression: 'zstd',
  tocDigestKey: Annotation.estargzTocDigest,
  annotationKeys: ANNOTATION_KEYS,
  staleAnnotationKeys: [],
  ownTarEntries: true,
  claim: claimsToc,
  describeClaim: () => "zstd layer with an eStargz TOC (stargz-snapshotter's zstdchunked variant) is not supported for lazy mounts",
};
