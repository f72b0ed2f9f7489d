// The binary form of a gzip index (docs/gzip-index.md, version 1): a 16-byte header, then the body
// compressed with zlib (RFC 1950). Read back as untrusted input: every count, size, offset and path
// is bounded and checked before it is used, and the index must be of the layer it is opened for.
import { promisify } from 'node:util';
import { deflate, inflate } from 'node:zlib';
import type { Digest } from '../../oci/digest.js';
import type { Descriptor } from '../../oci/types.js';
import { checkHardlinkTargets, normalizeEntryPath, TarEntryError } from '../tar-entry.js';
import { NO_XATTRS, TocError, type FileType } from '../toc.js';
import type { GzipIndex, GzipIndexEntry } from './model.js';
import type { Checkpoint } from './scan.js';

export const MAGIC = Buffer.from('STRLGZIX', 'latin1');
export const VERSION = 1;
const HEADER_SIZE = 16;

/** Largest index blob accepted (a caller checks a descriptor's size against it before fetching). */
export const MAX_INDEX_BYTES = 256 << 20;
/** Largest uncompressed body: ~15 000 windows of 32 KiB (60 GB of tar at 4 MiB spans) plus the file table. */
export const MAX_BODY_BYTES = 768 << 20;
/** Largest span size asked for, and largest span (it ends at the first block boundary past the span size). */
export const MAX_SPAN_SIZE = 64 << 20;
export const MAX_SPAN_BYTES = MAX_SPAN_SIZE + (64 << 20);
const MAX_ENTRIES = 4_000_000;
const MAX_PATH_BYTES = 4096;
const MAX_XATTRS = 256;
const MAX_XATTR_BYTES = 64 << 10;
const WINDOW_SIZE = 32768;

// Entry types by their code in the file table.
const TYPES: readonly FileType[] = ['reg', 'dir', 'symlink', 'hardlink', 'char', 'block', 'fifo'];

/** An index that is malformed, too large, or not of the layer it is opened for. */
export class GzipIndexError extends TocError {}

/** A growable little-endian byte buffer. */
class Writer {
  private buf = Buffer.allocUnsafe(1 << 16);
  private len = 0;
  private room(n: number): number {
    if (this.len + n > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    const at = this.len;
    this.len += n;
    return at;
  }
  u8(v: number): void {
    const at = this.room(1);
    this.buf.writeUInt8(v, at);
  }
  u16(v: number): void {
    const at = this.room(2);
    this.buf.writeUInt16LE(v, at);
  }
  u32(v: number): void {
    const at = this.room(4);
    this.buf.writeUInt32LE(v, at);
  }
  u64(v: number): void {
    const at = this.room(8);
    this.buf.writeBigUInt64LE(BigInt(v), at);
  }
  i64(v: number): void {
    const at = this.room(8);
    this.buf.writeBigInt64LE(BigInt(v), at);
  }
  bytes(b: Buffer): void {
    const at = this.room(b.length); // before this.buf is read: room() may replace it
    b.copy(this.buf, at);
  }
  /** A u16-length-prefixed UTF-8 string. */
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u16(b.length);
    this.bytes(b);
  }
  done(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

/** A bounds-checked cursor over the body; every failure names the byte offset. */
class Reader {
  pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly where: string,
  ) {}
  fail(msg: string): never {
    throw new GzipIndexError(`${this.where}: ${msg}`);
  }
  private need(n: number): number {
    if (this.pos + n > this.buf.length) this.fail(`truncated: needs ${n} more bytes at body offset ${this.pos} of ${this.buf.length}`);
    const at = this.pos;
    this.pos += n;
    return at;
  }
  u8(): number {
    return this.buf.readUInt8(this.need(1));
  }
  u16(): number {
    return this.buf.readUInt16LE(this.need(2));
  }
  u32(): number {
    return this.buf.readUInt32LE(this.need(4));
  }
  u64(what: string): number {
    const v = this.buf.readBigUInt64LE(this.need(8));
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} ${v} is too large`);
    return Number(v);
  }
  i64(what: string): number {
    const v = this.buf.readBigInt64LE(this.need(8));
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) this.fail(`${what} ${v} is out of range`);
    return Number(v);
  }
  bytes(n: number): Buffer {
    const at = this.need(n);
    return this.buf.subarray(at, at + n);
  }
  str(what: string, max: number): string {
    const n = this.u16();
    if (n > max) this.fail(`${what} of ${n} bytes exceeds ${max}`);
    const b = this.bytes(n);
    const s = b.toString('utf8');
    if (Buffer.byteLength(s) !== n) this.fail(`${what} is not valid UTF-8`);
    return s;
  }
  get left(): number {
    return this.buf.length - this.pos;
  }
}

/** The index in its stored form. */
export async function encodeGzipIndex(index: GzipIndex): Promise<Buffer> {
  const w = new Writer();
  w.bytes(Buffer.from(index.layerDigest.slice('sha256:'.length), 'hex'));
  w.u64(index.compressedSize);
  w.u64(index.uncompressedSize);
  w.u32(index.spanSize);
  w.u32(index.checkpoints.length);
  w.u32(index.entries.length);
  for (const c of index.checkpoints) {
    w.u64(c.in);
    w.u64(c.out);
    w.u8(c.bits);
    w.u16(c.window.length);
    w.bytes(c.window);
  }
  for (const d of index.spanDigests) w.bytes(Buffer.from(d.slice('sha256:'.length), 'hex'));
  for (const e of index.entries) {
    if (Buffer.byteLength(e.path) > MAX_PATH_BYTES || Buffer.byteLength(e.linkName) > MAX_PATH_BYTES) throw new GzipIndexError(`${index.layerDigest}: path of ${JSON.stringify(e.path)} longer than ${MAX_PATH_BYTES} bytes`);
    w.u8(TYPES.indexOf(e.type));
    w.u32(e.mode);
    w.u32(e.uid);
    w.u32(e.gid);
    w.i64(e.mtimeMs);
    w.u64(e.offset);
    w.u64(e.size);
    w.u32(e.devMajor);
    w.u32(e.devMinor);
    w.str(e.path);
    w.str(e.linkName);
    w.u16(e.xattrs.size);
    for (const [k, v] of e.xattrs) {
      w.str(k);
      w.u32(v.length);
      w.bytes(v);
    }
  }
  const body = w.done();
  if (body.length > MAX_BODY_BYTES) throw new GzipIndexError(`${index.layerDigest}: index body of ${body.length} bytes exceeds ${MAX_BODY_BYTES}`);
  const header = Buffer.alloc(HEADER_SIZE);
  MAGIC.copy(header, 0);
  header.writeUInt16LE(VERSION, 8);
  header.writeUInt32LE(body.length, 12);
  return Buffer.concat([header, await promisify(deflate)(body, { level: 9 })]);
}

/** Parses and validates a stored index; it must describe `layer` (digest and size). */
export async function decodeGzipIndex(stored: Buffer, layer: Descriptor): Promise<GzipIndex> {
  const where = `gzip index of ${layer.digest}`;
  const fail = (msg: string): never => {
    throw new GzipIndexError(`${where}: ${msg}`);
  };
  if (stored.length > MAX_INDEX_BYTES) fail(`${stored.length} bytes exceeds the ${MAX_INDEX_BYTES}-byte limit`);
  if (stored.length < HEADER_SIZE || !stored.subarray(0, 8).equals(MAGIC)) fail('not a Starling gzip index (bad magic)');
  const version = stored.readUInt16LE(8);
  if (version !== VERSION) fail(`version ${version} is not supported (want ${VERSION})`);
  if (stored.readUInt16LE(10) !== 0) fail('unknown flags');
  const bodyLength = stored.readUInt32LE(12);
  if (bodyLength > MAX_BODY_BYTES) fail(`body of ${bodyLength} bytes exceeds the ${MAX_BODY_BYTES}-byte limit`);
  let body: Buffer;
  try {
    // One byte more than announced, so that a body longer than its header says is caught.
    body = await promisify(inflate)(stored.subarray(HEADER_SIZE), { maxOutputLength: bodyLength + 1 });
  } catch (err) {
    return fail(`body does not decompress: ${(err as Error).message}`);
  }
  if (body.length !== bodyLength) fail(`body is ${body.length} bytes, the header says ${bodyLength}`);
  return readBody(new Reader(body, where), layer);
}

function readBody(r: Reader, layer: Descriptor): GzipIndex {
  const layerDigest = `sha256:${r.bytes(32).toString('hex')}` as Digest;
  if (layerDigest !== layer.digest) r.fail(`it is the index of ${layerDigest}`);
  const compressedSize = r.u64('compressed size');
  if (compressedSize !== layer.size) r.fail(`it is of a ${compressedSize}-byte blob, the layer is ${layer.size} bytes`);
  const uncompressedSize = r.u64('uncompressed size');
  const spanSize = r.u32();
  if (spanSize < 1 || spanSize > MAX_SPAN_SIZE) r.fail(`span size ${spanSize} is not within 1..${MAX_SPAN_SIZE}`);
  const count = r.u32();
  const entryCount = r.u32();
  // Each checkpoint takes at least 19 bytes and each entry 48: counts beyond the body are lies.
  if (count < 1 || count * 19 > r.left) r.fail(`checkpoint count ${count} does not fit the body`);
  if (entryCount > MAX_ENTRIES || entryCount * 48 > r.left) r.fail(`entry count ${entryCount} exceeds the limit or the body`);

  const checkpoints: Checkpoint[] = [];
  for (let i = 0; i < count; i++) {
    const c: Checkpoint = { in: r.u64('checkpoint offset'), out: r.u64('checkpoint offset'), bits: r.u8(), window: Buffer.alloc(0) };
    const windowLength = r.u16();
    if (windowLength > WINDOW_SIZE || windowLength > c.out) r.fail(`checkpoint ${i}: window of ${windowLength} bytes after ${c.out} bytes of output`);
    c.window = r.bytes(windowLength);
    if (c.bits > 7) r.fail(`checkpoint ${i}: bit count ${c.bits} is not 0-7`);
    // A gzip header is at least 10 bytes; with bits the block starts in the byte before `in`.
    if (c.in < 10 || c.in > compressedSize) r.fail(`checkpoint ${i}: compressed offset ${c.in} is outside the blob (${compressedSize} bytes)`);
    if (c.out > uncompressedSize) r.fail(`checkpoint ${i}: uncompressed offset ${c.out} is past the end of the tar (${uncompressedSize} bytes)`);
    const prev = checkpoints[i - 1];
    if (i === 0 && c.out !== 0) r.fail('the first checkpoint is not at the start of the output');
    if (prev && (c.in <= prev.in || c.out - prev.out < spanSize)) r.fail(`checkpoint ${i} is not after checkpoint ${i - 1} by at least the span size`);
    const end = i + 1 < count ? undefined : uncompressedSize;
    if (prev && c.out - prev.out > MAX_SPAN_BYTES) r.fail(`span ${i - 1} of ${c.out - prev.out} bytes exceeds ${MAX_SPAN_BYTES}`);
    if (end !== undefined && end - c.out > MAX_SPAN_BYTES) r.fail(`span ${i} of ${end - c.out} bytes exceeds ${MAX_SPAN_BYTES}`);
    checkpoints.push(c);
  }
  const spanDigests: Digest[] = [];
  for (let i = 0; i < count; i++) spanDigests.push(`sha256:${r.bytes(32).toString('hex')}`);

  const entries: GzipIndexEntry[] = [];
  let lastEnd = 0;
  for (let i = 0; i < entryCount; i++) {
    const fail = (msg: string): never => r.fail(`entry ${i}${entries[i - 1] ? ` (after ${JSON.stringify(entries[i - 1]!.path)})` : ''}: ${msg}`);
    const code = r.u8();
    const type = TYPES[code] ?? fail(`unknown type ${code}`);
    const mode = r.u32();
    if (mode > 0o7777) fail(`mode ${mode.toString(8)} has bits beyond 07777`);
    const e: GzipIndexEntry = {
      path: '',
      type,
      mode,
      uid: r.u32(),
      gid: r.u32(),
      mtimeMs: r.i64('mtime'),
      offset: r.u64('data offset'),
      size: r.u64('size'),
      devMajor: r.u32(),
      devMinor: r.u32(),
      linkName: '',
      xattrs: NO_XATTRS,
    };
    const path = r.str('path', MAX_PATH_BYTES);
    let linkName = r.str('link target', MAX_PATH_BYTES);
    try {
      e.path = normalizeEntryPath(path, 'index entry');
      if (type === 'hardlink') linkName = normalizeEntryPath(linkName, 'hardlink target');
    } catch (err) {
      if (err instanceof TarEntryError) fail(err.message);
      throw err;
    }
    e.linkName = type === 'symlink' || type === 'hardlink' ? linkName : '';
    if (e.path === '' && type !== 'dir') fail(`the root must be a directory, not ${type}`);
    if (type !== 'reg' && e.size !== 0) fail(`a ${type} has data (${e.size} bytes)`);
    // Tar order: each entry's data begins after the previous entry's data (and its own headers).
    if (e.offset < lastEnd || e.offset + e.size > uncompressedSize) fail(`data ${e.offset}+${e.size} is out of order or past the end of the tar (${uncompressedSize} bytes)`);
    lastEnd = e.offset + e.size;
    const xattrCount = r.u16();
    if (xattrCount > MAX_XATTRS) fail(`${xattrCount} xattrs exceed ${MAX_XATTRS}`);
    if (xattrCount > 0) {
      const xattrs = new Map<string, Buffer>();
      for (let j = 0; j < xattrCount; j++) {
        const key = r.str('xattr name', 255);
        const length = r.u32();
        if (length > MAX_XATTR_BYTES) fail(`xattr ${JSON.stringify(key)} of ${length} bytes exceeds ${MAX_XATTR_BYTES}`);
        if (key === '' || key.includes('\0')) fail(`xattr name ${JSON.stringify(key)} is empty or holds NUL`);
        xattrs.set(key, r.bytes(length));
      }
      e.xattrs = xattrs;
    }
    entries.push(e);
  }
  if (r.left !== 0) r.fail(`${r.left} bytes after the last entry`);
  try {
    checkHardlinkTargets(entries.map((e) => ({ name: e.path, type: e.type, linkName: e.linkName })));
  } catch (err) {
    if (err instanceof TarEntryError) r.fail(err.message);
    throw err;
  }
  return { layerDigest, compressedSize, uncompressedSize, spanSize, checkpoints, spanDigests, entries };
}
