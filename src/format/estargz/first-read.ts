// Where an eStargz reader's first read goes: the footer and, when the descriptor's TOC offset
// annotation (written by `starling convert`) is plausible, the whole TOC with it; else a guessed
// tail. A module with nothing heavy behind it, so that a mount can send that request as soon as the
// manifest is in, while the format code is still compiling.
import { layerCompression, Annotation } from '../../oci/mediatypes.js';
import type { Descriptor } from '../../oci/types.js';
import type { ByteRange } from '../../blob/source.js';

/** Largest TOC accepted, compressed or uncompressed. */
export const MAX_TOC_BYTES = 150 << 20;
/**
 * Without a hint the first read takes this much of the blob's end: the footer and, for most layers
 * (up to a few thousand files), the whole TOC, so opening costs one round trip instead of two. A
 * larger TOC is read again whole (not joined with the tail: a 30 MB TOC would be held twice).
 */
const TAIL_GUESS = 64 << 10;

/** The TOC offset an annotation gives, if it is a number at all (it is only a hint: see `firstRead`). */
export function tocOffsetHint(annotations: Readonly<Record<string, string>>): number | undefined {
  const hint = annotations[Annotation.estargzTocOffset];
  return hint !== undefined && /^\d{1,15}$/.test(hint) ? Number(hint) : undefined;
}

/** The first read of a blob of `size` bytes. A hint is believed only as far as it is plausible: a wrong one costs bytes or a second read, never trust. */
export function firstRead(size: number, hint: number | undefined): ByteRange {
  const length = hint !== undefined && hint < size && size - hint <= MAX_TOC_BYTES + TAIL_GUESS ? size - hint : Math.min(size, TAIL_GUESS);
  return { offset: size - length, length };
}

/** Whether a descriptor's annotations claim an eStargz TOC (the codec table's claim, for either compression). */
export function claimsEstargzToc(annotations: Readonly<Record<string, string>>): boolean {
  return annotations[Annotation.estargzTocDigest] !== undefined;
}

/** The first read of a layer that is eStargz by its descriptor (gzip, TOC digest annotation) and says where its TOC is; undefined for any other. */
export function hintedTocRead(desc: Descriptor): ByteRange | undefined {
  const annotations = desc.annotations ?? {};
  if (layerCompression(desc.mediaType) !== 'gzip' || !claimsEstargzToc(annotations)) return undefined;
  const hint = tocOffsetHint(annotations);
  return hint === undefined ? undefined : firstRead(desc.size, hint);
}
