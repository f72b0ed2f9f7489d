// The layers without a seekable format, and the magic bytes that tell their compression apart.
// A module of its own, below the codec table: compression.ts (and through it the tar reader) needs
// the magic without importing the seekable formats' readers.
import type { LayerCompression } from '../oci/mediatypes.js';
import type { PlainCodec } from './codec.js';

export const PLAIN_CODECS: readonly PlainCodec[] = [
  {
    role: 'plain',
    kind: 'gzip',
    compression: 'gzip',
    magic: Uint8Array.of(0x1f, 0x8b),
    detail: 'plain gzip layer (no eStargz TOC annotation and no eStargz footer)',
    bareDetail: 'plain gzip layer (no eStargz footer)',
  },
  {
    role: 'plain',
    kind: 'zstd',
    compression: 'zstd',
    magic: Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd),
    detail: 'plain zstd layer (no zstd:chunked annotations and no zstd:chunked footer)',
    bareDetail: 'plain zstd layer (no zstd:chunked footer)',
  },
  { role: 'plain', kind: 'tar', compression: 'none', magic: new Uint8Array(), detail: 'uncompressed tar layer: no TOC to mount it lazily', bareDetail: 'uncompressed tar layer' },
];

/** Bytes of a blob's start that tell its compression. */
export const MAGIC_SIZE = Math.max(...PLAIN_CODECS.map((c) => c.magic.length));

/** The plain codec of a compression. */
export function plainCodec(compression: LayerCompression): PlainCodec {
  return PLAIN_CODECS.find((c) => c.compression === compression)!;
}

/** The plain codec whose magic `head` (a blob's first bytes) starts with; the uncompressed tar when none does. */
export function plainCodecByMagic(head: Uint8Array): PlainCodec {
  const starts = (c: PlainCodec) => c.magic.length > 0 && head.length >= c.magic.length && c.magic.every((b, i) => head[i] === b);
  return PLAIN_CODECS.find(starts) ?? plainCodec('none');
}
