// A streaming tar parser that keeps every entry's raw header blocks (PAX, GNU long names and the
// ustar block) so a writer can pass them through byte for byte, and hands out payloads piecewise
// so large files are never held whole. Parses ustar, PAX (x and g) and GNU (L, K, base-256) headers.
import type { Readable } from 'node:stream';
import { detectCompression } from '../compression.js';
import { TarEntryError, type TarEntryType, type TarHeader } from '../tar-entry.js';

export const BLOCK = 512;

/** The input is not a tar, or ends in the middle of an entry. */
export class TarFormatError extends Error {}

export interface RawTarEntry {
  header: TarHeader;
  /** Every header block of the entry as read (PAX/GNU extension blocks and the ustar block). */
  raw: Buffer;
  /** Payload bytes that follow the header (regular files only; padding not included). */
  payloadSize: number;
}

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'contiguous-file',
  '1': 'link',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
};

function cstring(buf: Buffer, start: number, len: number, encoding: BufferEncoding = 'utf8'): string {
  const end = buf.indexOf(0, start);
  return buf.toString(encoding, start, end === -1 || end > start + len ? start + len : end);
}

/** Octal (NUL/space padded) or GNU base-256 numeric field. */
function numeric(buf: Buffer, start: number, len: number, field: string): number {
  if (buf[start]! & 0x80) {
    if (buf[start] === 0xff) throw new TarFormatError(`tar header: negative ${field} is not supported`);
    let v = buf[start]! & 0x7f;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + buf[i]!;
    if (!Number.isSafeInteger(v)) throw new TarFormatError(`tar header: ${field} out of range`);
    return v;
  }
  const s = buf.toString('latin1', start, start + len).replace(/[\0 ]+$/, '').replace(/^[ ]+/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarFormatError(`tar header: ${field} field ${JSON.stringify(s)} is not a number`);
  return parseInt(s, 8);
}

function checksumOk(block: Buffer): boolean {
  let stored: number;
  try {
    stored = numeric(block, 148, 8, 'checksum');
  } catch {
    return false;
  }
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

/** PAX records `len key=value\n`; values kept as raw bytes in latin1 strings. */
function parsePax(data: Buffer, into: Record<string, string>): void {
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break;
    const space = data.indexOf(0x20, pos);
    const len = space === -1 ? NaN : Number(data.toString('latin1', pos, space));
    if (!Number.isSafeInteger(len) || len <= 0 || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw new TarFormatError('tar: malformed PAX extended header');
    }
    const record = data.subarray(space + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq === -1) throw new TarFormatError('tar: malformed PAX record (no "=")');
    const key = record.toString('utf8', 0, eq);
    const value = record.toString('latin1', eq + 1);
    if (value === '') delete into[key];
    else into[key] = value;
    pos += len;
  }
}

const utf8 = (latin1: string) => Buffer.from(latin1, 'latin1').toString('utf8');

function paxNumber(pax: Record<string, string>, key: string, name: string): number | undefined {
  const v = pax[key];
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new TarFormatError(`tar: PAX ${key}=${JSON.stringify(v)} of ${JSON.stringify(name)} is not a number`);
  return Number(v);
}

/** The error for input that is not a tar; compressed input gets a hint instead of `reason`. */
function notATar(head: Buffer, reason: string): TarFormatError {
  const compression = detectCompression(head);
  if (compression !== 'none') {
    return new TarFormatError(`not a tar: the input is ${compression}-compressed; decompress it first (decompressedTar in format/compression.ts)`);
  }
  return new TarFormatError(`not a tar: ${reason}`);
}

/** Pulls tar entries from a byte stream, one at a time; payloads are read with readPayload. */
export class TarReader {
  private readonly it: AsyncIterator<Buffer>;
  private bufs: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  /** Payload + padding bytes of the current entry not yet consumed. */
  private payloadLeft = 0;
  private padLeft = 0;
  private readonly globalPax: Record<string, string> = {};
  private finished = false;
  private currentName = '';
  /** Bytes consumed from the input so far. */
  position = 0;

  constructor(input: Readable) {
    this.it = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  private async fill(n: number): Promise<boolean> {
    while (this.buffered < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else if (r.value.length > 0) {
        const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
        this.bufs.push(chunk);
        this.buffered += chunk.length;
      }
    }
    return this.buffered >= n;
  }

  /** Up to `max` bytes already buffered (at least 1 unless the input ended), without copying. */
  private take(max: number): Buffer {
    const head = this.bufs[0]!;
    if (head.length <= max) {
      this.bufs.shift();
      this.buffered -= head.length;
      this.position += head.length;
      return head;
    }
    this.bufs[0] = head.subarray(max);
    this.buffered -= max;
    this.position += max;
    return head.subarray(0, max);
  }

  private async exact(n: number, what: string): Promise<Buffer> {
    if (!(await this.fill(n))) {
      throw new TarFormatError(`truncated tar: input ended inside ${what} (at byte ${this.position + this.buffered})`);
    }
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const b = this.take(need);
      parts.push(b);
      need -= b.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  private async skip(n: number, what: string): Promise<void> {
    while (n > 0) {
      if (!(await this.fill(1))) throw new TarFormatError(`truncated tar: input ended inside ${what}`);
      n -= this.take(n).length;
    }
  }

  /**
   * Reads the next up-to-`max` payload bytes of the current entry (a view into the input, valid
   * until the next call); null once the payload is exhausted.
   */
  async readPayload(max: number): Promise<Buffer | null> {
    if (this.payloadLeft === 0) return null;
    if (!(await this.fill(1))) {
      throw new TarFormatError(`truncated tar: input ended inside the content of ${JSON.stringify(this.currentName)}`);
    }
    const b = this.take(Math.min(max, this.payloadLeft));
    this.payloadLeft -= b.length;
    return b;
  }

  /** The next entry, or null at the end of the archive. Unread payload of the previous one is skipped. */
  async next(): Promise<RawTarEntry | null> {
    if (this.finished) return null;
    await this.skip(this.payloadLeft + this.padLeft, `the content of ${JSON.stringify(this.currentName)}`);
    this.payloadLeft = this.padLeft = 0;
    const raw: Buffer[] = [];
    const pax: Record<string, string> = { ...this.globalPax };
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const atStart = this.position === 0;
      if (atStart && this.buffered < BLOCK && (await this.fill(1)) && !(await this.fill(BLOCK))) {
        throw notATar(Buffer.concat(this.bufs), `the input is only ${this.buffered} bytes`);
      }
      if (!(await this.fill(1))) {
        // Go's tar reader also accepts an archive that ends cleanly without the zero blocks.
        if (atStart) throw new TarFormatError('not a tar: the input is empty');
        if (raw.length > 0) throw new TarFormatError('truncated tar: input ended after an extended header');
        this.finished = true;
        return null;
      }
      const block = await this.exact(BLOCK, 'a tar header');
      if (block.every((b) => b === 0)) {
        if (raw.length > 0) throw new TarFormatError('tar: extended header not followed by an entry');
        this.finished = true;
        return null;
      }
      if (!checksumOk(block)) {
        if (atStart) throw notATar(block, 'the first 512-byte block is not a valid tar header (checksum mismatch)');
        throw new TarFormatError(`tar: header checksum mismatch at byte ${this.position - BLOCK}`);
      }
      raw.push(block);
      const flag = String.fromCharCode(block[156]!);
      const size = numeric(block, 124, 12, 'size');
      if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
        if (size > 1 << 20) throw new TarFormatError(`tar: extended header of ${size} bytes is too large`);
        const padded = Math.ceil(size / BLOCK) * BLOCK;
        const body = await this.exact(padded, 'an extended header');
        raw.push(body);
        const data = body.subarray(0, size);
        if (flag === 'x') parsePax(data, pax);
        else if (flag === 'g') {
          parsePax(data, this.globalPax);
          parsePax(data, pax);
        } else if (flag === 'L') longName = cstring(data, 0, data.length);
        else longLink = cstring(data, 0, data.length);
        continue;
      }
      return this.entry(block, flag, size, Buffer.concat(raw), pax, longName, longLink);
    }
  }

  private entry(block: Buffer, flag: string, size: number, raw: Buffer, pax: Record<string, string>, longName?: string, longLink?: string): RawTarEntry {
    const ustar = block.toString('latin1', 257, 263) === 'ustar\0';
    let name = cstring(block, 0, 100);
    if (ustar) {
      const prefix = cstring(block, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    if (longName !== undefined) name = longName;
    if (pax.path !== undefined) name = utf8(pax.path);
    this.currentName = name;
    let type = TYPES[flag];
    if (type === undefined) {
      if (flag === 'S' || Object.keys(pax).some((k) => k.startsWith('GNU.sparse.'))) {
        throw new TarEntryError(`sparse tar entries are not supported: ${JSON.stringify(name)}`);
      }
      throw new TarEntryError(`unsupported tar entry type ${JSON.stringify(flag)} for ${JSON.stringify(name)}`);
    }
    if (Object.keys(pax).some((k) => k.startsWith('GNU.sparse.'))) {
      throw new TarEntryError(`sparse tar entries are not supported: ${JSON.stringify(name)}`);
    }
    // Old archives mark directories with a trailing slash on a regular-file type (Go does the same).
    if (flag === '\0' && name.endsWith('/')) type = 'directory';
    const header: TarHeader = {
      name,
      type,
      mode: numeric(block, 100, 8, 'mode'),
      uid: paxNumber(pax, 'uid', name) ?? numeric(block, 108, 8, 'uid'),
      gid: paxNumber(pax, 'gid', name) ?? numeric(block, 116, 8, 'gid'),
      size: paxNumber(pax, 'size', name) ?? size,
      mtime: new Date(numeric(block, 136, 12, 'mtime') * 1000),
      linkname: longLink ?? (pax.linkpath !== undefined ? utf8(pax.linkpath) : cstring(block, 157, 100)),
      uname: pax.uname !== undefined ? utf8(pax.uname) : cstring(block, 265, 32),
      gname: pax.gname !== undefined ? utf8(pax.gname) : cstring(block, 297, 32),
      devmajor: numeric(block, 329, 8, 'devmajor'),
      devminor: numeric(block, 337, 8, 'devminor'),
      pax: Object.keys(pax).length > 0 ? pax : null,
      paxEncoding: 'latin1',
    };
    // Header-only types carry no data whatever their size field says (as Go's reader).
    const payloadSize = type === 'file' || type === 'contiguous-file' ? header.size! : 0;
    this.payloadLeft = payloadSize;
    this.padLeft = (BLOCK - (payloadSize % BLOCK)) % BLOCK;
    return { header, raw, payloadSize };
  }
}
