// zstd:chunked footers and position annotations (formats.md §1b.2, §1b.6, §1a.9): the current
// 64-byte footer (magic "GNUlInUx"), the 40-byte one of older writers (magic "GnUlInUx"), and the
// `off:len:ulen[:type]` annotation values. Parsers take untrusted bytes and never throw anything
// but FooterError.

/** Current magic "GNUlInUx". */
export const FOOTER_MAGIC = Buffer.from('GNUlInUx', 'latin1');
/** Pre-2023 magic "GnUlInUx" (containers/storage 1.43, stargz-snapshotter). */
export const LEGACY_FOOTER_MAGIC = Buffer.from('GnUlInUx', 'latin1');
export const FOOTER_SIZE = 64;
export const LEGACY_FOOTER_SIZE = 40;
/** Skippable-frame header + footer: what a reader fetches from the end of the blob. */
export const FOOTER_FRAME_SIZE = 8 + FOOTER_SIZE;
/** `ManifestTypeCRFS`, the only manifest type. */
export const MANIFEST_TYPE_CRFS = 1;

export class FooterError extends Error {}

export interface BlobRange {
  offset: number;
  length: number;
  uncompressedLength: number;
}

export interface ZstdChunkedFooter {
  /** 64 for the current layout, 40 for the legacy one. */
  size: 64 | 40;
  manifest: BlobRange;
  /** Absent in the legacy footer. */
  tarSplit?: BlobRange;
}

function u64(buf: Buffer, off: number, what: string): number {
  const v = buf.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FooterError(`zstd:chunked footer: ${what} ${v} is out of range`);
  return Number(v);
}

export function encodeFooter(manifest: BlobRange, tarSplit: BlobRange): Buffer {
  const out = Buffer.alloc(FOOTER_SIZE);
  const vals = [manifest.offset, manifest.length, manifest.uncompressedLength, MANIFEST_TYPE_CRFS, tarSplit.offset, tarSplit.length, tarSplit.uncompressedLength];
  vals.forEach((v, i) => out.writeBigUInt64LE(BigInt(v), i * 8));
  FOOTER_MAGIC.copy(out, 56);
  return out;
}

function checkType(type: number): void {
  if (type !== MANIFEST_TYPE_CRFS) throw new FooterError(`zstd:chunked footer: manifest type ${type}, expected ${MANIFEST_TYPE_CRFS}`);
}

/** Parses the 64-byte footer (the last 64 bytes of a blob); undefined when the magic is absent. */
export function parseFooter64(footer: Buffer): ZstdChunkedFooter | undefined {
  if (footer.length !== FOOTER_SIZE || !footer.subarray(56).equals(FOOTER_MAGIC)) return undefined;
  checkType(u64(footer, 24, 'manifest type'));
  return {
    size: 64,
    manifest: { offset: u64(footer, 0, 'manifest offset'), length: u64(footer, 8, 'manifest length'), uncompressedLength: u64(footer, 16, 'manifest uncompressed length') },
    tarSplit: { offset: u64(footer, 32, 'tar-split offset'), length: u64(footer, 40, 'tar-split length'), uncompressedLength: u64(footer, 48, 'tar-split uncompressed length') },
  };
}

/** Parses the legacy 40-byte footer (the last 40 bytes of a blob); undefined when the magic is absent. */
export function parseFooter40(footer: Buffer): ZstdChunkedFooter | undefined {
  if (footer.length !== LEGACY_FOOTER_SIZE || !footer.subarray(32).equals(LEGACY_FOOTER_MAGIC)) return undefined;
  checkType(u64(footer, 24, 'manifest type'));
  return {
    size: 40,
    manifest: { offset: u64(footer, 0, 'manifest offset'), length: u64(footer, 8, 'manifest length'), uncompressedLength: u64(footer, 16, 'manifest uncompressed length') },
  };
}

/** Finds a footer of either generation at the end of `tail` (the last bytes of a blob). */
export function parseFooter(tail: Buffer): ZstdChunkedFooter | undefined {
  if (tail.length >= FOOTER_SIZE) {
    const f = parseFooter64(tail.subarray(tail.length - FOOTER_SIZE));
    if (f) return f;
  }
  if (tail.length >= LEGACY_FOOTER_SIZE) return parseFooter40(tail.subarray(tail.length - LEGACY_FOOTER_SIZE));
  return undefined;
}

function parseDecimals(value: string, count: number, key: string): number[] {
  const parts = value.split(':');
  if (parts.length !== count || parts.some((p) => !/^\d{1,16}$/.test(p))) {
    throw new FooterError(`annotation ${key}: expected ${count} decimal numbers separated by ':', got ${JSON.stringify(value)}`);
  }
  const nums = parts.map(Number);
  if (nums.some((n) => !Number.isSafeInteger(n))) throw new FooterError(`annotation ${key}: number out of range in ${JSON.stringify(value)}`);
  return nums;
}

/** `manifest-position` = `offset:length:uncompressedLength:type` (type must be 1). */
export function parseManifestPosition(value: string, key: string): BlobRange {
  const [offset, length, uncompressedLength, type] = parseDecimals(value, 4, key) as [number, number, number, number];
  checkType(type);
  return { offset, length, uncompressedLength };
}

/** `tarsplit-position` = `offset:length:uncompressedLength`. */
export function parseTarSplitPosition(value: string, key: string): BlobRange {
  const [offset, length, uncompressedLength] = parseDecimals(value, 3, key) as [number, number, number];
  return { offset, length, uncompressedLength };
}

export function formatManifestPosition(r: BlobRange): string {
  return `${r.offset}:${r.length}:${r.uncompressedLength}:${MANIFEST_TYPE_CRFS}`;
}

export function formatTarSplitPosition(r: BlobRange): string {
  return `${r.offset}:${r.length}:${r.uncompressedLength}`;
}
