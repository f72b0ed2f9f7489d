// The eStargz footer (51 bytes) and the legacy stargz footer (47 bytes): empty gzip members whose
// FEXTRA field carries the TOC offset as 16 hex digits + "STARGZ" (formats.md §1a.2).
import { TocError } from '../toc.js';

export const ESTARGZ_FOOTER_SIZE = 51;
export const LEGACY_FOOTER_SIZE = 47;

/** gzip header with FLG=FEXTRA, MTIME=0, XFL=0, OS=255 (as Go writes it at NoCompression). */
const HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff]);
/** An empty final stored deflate block, CRC32 = 0 and ISIZE = 0. */
const EMPTY_BODY = Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
const MAGIC = 'STARGZ';
const MAX_OFFSET = Number.MAX_SAFE_INTEGER;

function offsetField(tocOffset: number): string {
  if (!Number.isSafeInteger(tocOffset) || tocOffset < 0) throw new RangeError(`invalid TOC offset ${tocOffset}`);
  return tocOffset.toString(16).padStart(16, '0') + MAGIC;
}

/** The 51-byte eStargz footer pointing at `tocOffset`. */
export function estargzFooter(tocOffset: number): Buffer {
  const extra = Buffer.alloc(4);
  extra.write('SG', 0, 'latin1');
  extra.writeUInt16LE(22, 2);
  const xlen = Buffer.alloc(2);
  xlen.writeUInt16LE(26);
  return Buffer.concat([HEADER, xlen, extra, Buffer.from(offsetField(tocOffset), 'latin1'), EMPTY_BODY]);
}

/** The 47-byte legacy (CRFS) stargz footer pointing at `tocOffset`. */
export function legacyStargzFooter(tocOffset: number): Buffer {
  const xlen = Buffer.alloc(2);
  xlen.writeUInt16LE(22);
  return Buffer.concat([HEADER, xlen, Buffer.from(offsetField(tocOffset), 'latin1'), EMPTY_BODY]);
}

function parseOffset(buf: Uint8Array, start: number, what: string): number {
  const text = Buffer.from(buf.subarray(start, start + 22)).toString('latin1');
  if (text.slice(16) !== MAGIC) throw new TocError(`${what}: STARGZ magic not found`);
  if (!/^[0-9a-fA-F]{16}$/.test(text.slice(0, 16))) throw new TocError(`${what}: TOC offset ${JSON.stringify(text.slice(0, 16))} is not hexadecimal`);
  const offset = parseInt(text.slice(0, 16), 16);
  if (offset > MAX_OFFSET) throw new TocError(`${what}: TOC offset out of range`);
  return offset;
}

function checkGzipHeader(buf: Uint8Array, xlen: number, what: string): void {
  if (buf[0] !== 0x1f || buf[1] !== 0x8b || buf[2] !== 0x08) throw new TocError(`${what}: not a gzip header`);
  if (buf[3] !== 0x04) throw new TocError(`${what}: gzip flags ${buf[3]} (want FEXTRA only)`);
  const actual = buf[10]! | (buf[11]! << 8);
  if (actual !== xlen) throw new TocError(`${what}: extra field length ${actual} (want ${xlen})`);
}

/** TOC offset from a 51-byte eStargz footer; throws TocError when `buf` is not one. */
export function parseEstargzFooter(buf: Uint8Array): number {
  const what = 'eStargz footer';
  if (buf.length !== ESTARGZ_FOOTER_SIZE) throw new TocError(`${what}: ${buf.length} bytes (want ${ESTARGZ_FOOTER_SIZE})`);
  checkGzipHeader(buf, 26, what);
  if (buf[12] !== 0x53 || buf[13] !== 0x47) throw new TocError(`${what}: subfield ID is not "SG"`);
  const len = buf[14]! | (buf[15]! << 8);
  if (len !== 22) throw new TocError(`${what}: subfield length ${len} (want 22)`);
  return parseOffset(buf, 16, what);
}

/** TOC offset from a 47-byte legacy stargz footer; throws TocError when `buf` is not one. */
export function parseLegacyStargzFooter(buf: Uint8Array): number {
  const what = 'legacy stargz footer';
  if (buf.length !== LEGACY_FOOTER_SIZE) throw new TocError(`${what}: ${buf.length} bytes (want ${LEGACY_FOOTER_SIZE})`);
  checkGzipHeader(buf, 22, what);
  return parseOffset(buf, 12, what);
}

export interface ParsedFooter {
  tocOffset: number;
  footerSize: number;
}

/**
 * Parses the footer at the end of `tail` (the last bytes of a blob): the 51-byte form first, then the
 * legacy 47-byte form, as the reference reader does. The error names both failures.
 */
export function parseFooter(tail: Uint8Array): ParsedFooter {
  const errors: string[] = [];
  for (const [size, parse] of [
    [ESTARGZ_FOOTER_SIZE, parseEstargzFooter],
    [LEGACY_FOOTER_SIZE, parseLegacyStargzFooter],
  ] as const) {
    if (tail.length < size) {
      errors.push(`blob shorter than the ${size}-byte footer`);
      continue;
    }
    try {
      return { tocOffset: parse(tail.subarray(tail.length - size)), footerSize: size };
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  throw new TocError(`no eStargz footer: ${errors.join('; ')}`);
}
