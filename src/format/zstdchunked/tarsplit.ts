// tar-split (vbatts/tar-split `storage.Entry` JSON lines, formats.md §1b.5): the raw tar bytes
// that are not file payload, plus one entry per tar header with the payload's size and CRC-64
// (ISO), so a puller can rebuild the exact tar — and so its diffID — from extracted files.
import { isUtf8 } from 'node:buffer';
import { BLOCK, blockPadding, RawTarParser, type TarHeader } from './rawtar.js';

// --- CRC-64 with the ISO polynomial (Go's hash/crc64 crc64.ISO), as two 32-bit halves ----------

// Slicing-by-8 tables: T[k][i] is the CRC of byte i followed by k zero bytes; hi/lo 32-bit halves.
const CRC_HI = new Uint32Array(256 * 8);
const CRC_LO = new Uint32Array(256 * 8);
{
  const polyHi = 0xd8000000; // ISO polynomial 0xD800000000000000, reflected form
  for (let i = 0; i < 256; i++) {
    let hi = 0;
    let lo = i;
    for (let k = 0; k < 8; k++) {
      const lsb = lo & 1;
      lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
      hi = hi >>> 1;
      if (lsb) hi = (hi ^ polyHi) >>> 0;
    }
    CRC_HI[i] = hi;
    CRC_LO[i] = lo;
  }
  for (let t = 1; t < 8; t++) {
    for (let i = 0; i < 256; i++) {
      const hi = CRC_HI[(t - 1) * 256 + i]!;
      const lo = CRC_LO[(t - 1) * 256 + i]!;
      const idx = lo & 0xff;
      CRC_LO[t * 256 + i] = (((lo >>> 8) | (hi << 24)) ^ CRC_LO[idx]!) >>> 0;
      CRC_HI[t * 256 + i] = ((hi >>> 8) ^ CRC_HI[idx]!) >>> 0;
    }
  }
}

export class Crc64 {
  private hi = 0xffffffff;
  private lo = 0xffffffff;
  update(buf: Uint8Array): void {
    let hi = this.hi;
    let lo = this.lo;
    let i = 0;
    const n = buf.length;
    const T = CRC_LO;
    const H = CRC_HI;
    for (; i + 8 <= n; i += 8) {
      lo ^= buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24);
      hi ^= buf[i + 4]! | (buf[i + 5]! << 8) | (buf[i + 6]! << 16) | (buf[i + 7]! << 24);
      const a = 7 * 256 + (lo & 0xff);
      const b = 6 * 256 + ((lo >>> 8) & 0xff);
      const c = 5 * 256 + ((lo >>> 16) & 0xff);
      const d = 4 * 256 + (lo >>> 24);
      const e = 3 * 256 + (hi & 0xff);
      const f = 2 * 256 + ((hi >>> 8) & 0xff);
      const g = 256 + ((hi >>> 16) & 0xff);
      const h = hi >>> 24;
      lo = T[a]! ^ T[b]! ^ T[c]! ^ T[d]! ^ T[e]! ^ T[f]! ^ T[g]! ^ T[h]!;
      hi = H[a]! ^ H[b]! ^ H[c]! ^ H[d]! ^ H[e]! ^ H[f]! ^ H[g]! ^ H[h]!;
    }
    for (; i < n; i++) {
      const idx = (lo ^ buf[i]!) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ T[idx]!;
      hi = (hi >>> 8) ^ H[idx]!;
    }
    this.hi = hi;
    this.lo = lo;
  }
  /** The 8-byte big-endian sum, as Go's `Sum(nil)`. */
  sum(): Buffer {
    const out = Buffer.alloc(8);
    out.writeUInt32BE(~this.hi >>> 0, 0);
    out.writeUInt32BE(~this.lo >>> 0, 4);
    return out;
  }
}

// --- Writing -------------------------------------------------------------------------------------

/** Go's encoding/json escapes these even in strings (HTML safety); done too for byte-identical JSON. */
export function goJsonString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Builds tar-split JSON lines; hands them out in pieces so they can be compressed as they come. */
export class TarSplitBuilder {
  private position = 0;
  private lines: string[] = [];
  private pendingBytes = 0;

  constructor(
    /** Called with a piece of the JSON lines once enough have accumulated (and at the end). */
    private readonly emit: (text: Buffer) => void,
    private readonly pieceSize = 1 << 20,
  ) {}

  segment(payload: Buffer): void {
    this.push(`{"type":2,"payload":"${payload.toString('base64')}","position":${this.position++}}\n`);
  }

  file(nameBytes: Buffer, size: number, crc: Buffer | undefined): void {
    const name = isUtf8(nameBytes) ? `"name":${goJsonString(nameBytes.toString('utf8'))}` : `"name_raw":"${nameBytes.toString('base64')}"`;
    const sizeField = size > 0 ? `"size":${size},` : '';
    const payload = crc ? `"${crc.toString('base64')}"` : 'null';
    this.push(`{"type":1,${name},${sizeField}"payload":${payload},"position":${this.position++}}\n`);
  }

  /** Bytes after the end-of-archive marker: tar-split stores them in segments of at most 1 MiB. */
  trailing(bytes: Buffer): void {
    for (let off = 0; off < bytes.length; off += 1 << 20) this.segment(bytes.subarray(off, off + (1 << 20)));
  }

  /** Ends with the empty segment tar-split writes when it reads the end of the stream. */
  finish(): void {
    this.segment(Buffer.alloc(0));
    this.flush();
  }

  private push(line: string): void {
    this.lines.push(line);
    this.pendingBytes += line.length;
    if (this.pendingBytes >= this.pieceSize) this.flush();
  }

  private flush(): void {
    if (this.lines.length === 0) return;
    this.emit(Buffer.from(this.lines.join(''), 'utf8'));
    this.lines = [];
    this.pendingBytes = 0;
  }
}

// --- Reading -------------------------------------------------------------------------------------

export class TarSplitError extends Error {}

/**
 * Parses decompressed tar-split JSON lines and decodes the tar header in each segment, skipping
 * the previous entry's padding first (the layout tar-split's NewInputTarStream produces): the
 * headers in order, as containers/storage's IterateHeaders yields them.
 */
export function readTarSplit(text: Buffer): TarHeader[] {
  const headers: TarHeader[] = [];
  let pendingPadding = 0;
  /** Past the end-of-archive marker, or a tar that ended inside its last padding: only trailing bytes follow. */
  let ended = false;
  let lineNo = 0;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf(0x0a, start);
    if (end < 0) end = text.length;
    const line = text.toString('utf8', start, end);
    start = end + 1;
    lineNo++;
    if (line.trim() === '') continue;
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch {
      throw new TarSplitError(`tar-split line ${lineNo}: not JSON`);
    }
    if (typeof entry !== 'object' || entry === null) throw new TarSplitError(`tar-split line ${lineNo}: not an object`);
    const e = entry as Record<string, unknown>;
    if (e.type === 1) {
      const size = e.size ?? 0;
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new TarSplitError(`tar-split line ${lineNo}: bad size`);
      continue;
    }
    if (e.type !== 2) throw new TarSplitError(`tar-split line ${lineNo}: unknown entry type ${JSON.stringify(e.type)}`);
    if (typeof e.payload !== 'string' && e.payload !== null) throw new TarSplitError(`tar-split line ${lineNo}: bad payload`);
    let payload = Buffer.from(e.payload ?? '', 'base64');
    if (ended) continue;
    if (payload.length < pendingPadding) {
      // Go's tar reader (and our writer) accept a tar that ends inside its last entry's padding.
      ended = true;
      continue;
    }
    payload = payload.subarray(pendingPadding);
    pendingPadding = 0;
    const hdr = firstHeader(payload, lineNo);
    if (hdr) {
      headers.push(hdr);
      pendingPadding = blockPadding(hdr.size);
    } else if (payload.length > 0) ended = true;
  }
  return headers;
}

/** The entry header at the start of a segment, or undefined when it holds only end-of-archive blocks. */
function firstHeader(payload: Buffer, lineNo: number): TarHeader | undefined {
  let found: TarHeader | undefined;
  const parser = new RawTarParser({
    entry: (hdr) => {
      found ??= hdr;
    },
    payload: () => undefined,
    entryEnd: () => undefined,
    end: () => undefined,
    trailing: () => undefined,
  });
  try {
    // Only whole blocks can hold headers; a tail shorter than a block is trailing padding.
    parser.feed(payload.subarray(0, payload.length - (payload.length % BLOCK)));
  } catch (err) {
    throw new TarSplitError(`tar-split line ${lineNo}: ${(err as Error).message}`);
  }
  return found;
}
