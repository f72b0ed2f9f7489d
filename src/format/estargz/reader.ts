// eStargz reader: footer → TOC member → verified, validated LayerToc (formats.md §1a.2–1a.7).
// Every byte of the TOC is untrusted: sizes are bounded, paths normalised (escapes rejected),
// chunks checked to cover each file exactly and to lie before the TOC, and each chunk is later
// decoded with a streaming gunzip that stops after the bytes it needs and checks its digest.
import { Readable } from 'node:stream';
import { createGunzip, gunzip } from 'node:zlib';
import type { BlobSource } from '../../blob/source.js';
import { isDigest, sha256, type Digest } from '../../oci/digest.js';
import { normalizeEntryPath, TarEntryError } from '../tar-entry.js';
import { ChunkVerifyError, TocError, type ChunkRef, type EntryType, type FileEntry, type FileType, type LayerToc } from '../toc.js';
import { isObject, parseTocText, tocFieldReaders, type Json } from '../toc-fields.js';
import { firstRead, MAX_TOC_BYTES } from './first-read.js';
import { parseFooter } from './footer.js';
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, TOC_TAR_NAME } from './order.js';
import { TarReader } from './tar-reader.js';
import { chunkDigest, inflateChunk } from '../native.js';

export { MAX_TOC_BYTES };

export interface OpenEstargzOptions {
  /** The TOC digest from the layer descriptor's annotation; the TOC is refused if it differs. */
  tocDigest?: Digest;
  /** Where the descriptor says the TOC starts: the first read then takes exactly the TOC and footer. */
  tocOffsetHint?: number;
}

const ENTRY_TYPES: ReadonlySet<string> = new Set<EntryType>(['dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo', 'chunk']);

/**
 * Gunzips one gzip member of at most `limit` bytes. The trailer's ISIZE (its size mod 2^32) sizes
 * the output buffer, so a large TOC comes out in one piece instead of 16 KiB pieces joined into a
 * second copy (34 MB more at the peak of mounting a 100k-file layer). A wrong ISIZE only costs that copy.
 */
function gunzipMember(data: Buffer, limit: number): Promise<Buffer> {
  const isize = data.length >= 4 ? data.readUInt32LE(data.length - 4) : 0;
  // Deflate expands at most ~1032:1, so a lying ISIZE cannot make this allocate more than the data could become.
  const chunkSize = Math.max(64 << 10, Math.min(limit, isize, data.length * 1032));
  return new Promise((resolve, reject) => gunzip(data, { maxOutputLength: limit, chunkSize }, (err, out) => (err ? reject(err) : resolve(out))));
}

/** The JSON bytes of the TOC member: gunzip, then the payload of its first tar entry, which must be stargz.index.json. */
async function tocJsonBytes(compressed: Buffer, where: string): Promise<Buffer> {
  let tar: Buffer;
  try {
    tar = await gunzipMember(compressed, MAX_TOC_BYTES + 2048);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new TocError(`${where}: TOC is larger than ${MAX_TOC_BYTES} bytes uncompressed`);
    throw new TocError(`${where}: TOC member does not decompress: ${(err as Error).message}`);
  }
  const reader = new TarReader(Readable.from([tar]));
  try {
    const entry = await reader.next();
    if (!entry) throw new TocError(`${where}: TOC member holds no tar entry`);
    if (entry.header.name !== TOC_TAR_NAME) throw new TocError(`${where}: TOC tar entry is named ${JSON.stringify(entry.header.name)}, not ${TOC_TAR_NAME}`);
    if (entry.payloadSize > MAX_TOC_BYTES) throw new TocError(`${where}: TOC is larger than ${MAX_TOC_BYTES} bytes`);
    const parts: Buffer[] = [];
    for (let p = await reader.readPayload(entry.payloadSize); p; p = await reader.readPayload(entry.payloadSize)) parts.push(p);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts); // a view: no second copy of a TOC of up to 150 MiB
  } catch (err) {
    if (err instanceof TocError) throw err;
    throw new TocError(`${where}: TOC member is not a valid tar: ${(err as Error).message}`);
  }
}

/** Reads the footer and the TOC of an eStargz (or legacy stargz) blob and validates every entry. */
export async function openEstargz(blob: BlobSource, opts: OpenEstargzOptions = {}): Promise<LayerToc> {
  const where = blob.description;
  const { offset: tailStart, length: tailSize } = firstRead(blob.size, opts.tocOffsetHint);
  const tail = await blob.read(tailStart, tailSize);
  let footer;
  try {
    footer = parseFooter(tail);
  } catch (err) {
    throw new TocError(`${where}: ${(err as Error).message}`);
  }
  const tocEnd = blob.size - footer.footerSize;
  if (footer.tocOffset >= tocEnd) throw new TocError(`${where}: TOC offset ${footer.tocOffset} is outside the blob (size ${blob.size})`);
  if (tocEnd - footer.tocOffset > MAX_TOC_BYTES) throw new TocError(`${where}: compressed TOC of ${tocEnd - footer.tocOffset} bytes exceeds ${MAX_TOC_BYTES}`);
  const compressedToc = footer.tocOffset >= tailStart ? tail.subarray(footer.tocOffset - tailStart, tocEnd - tailStart) : await blob.read(footer.tocOffset, tocEnd - footer.tocOffset);
  const { parsed, tocDigest } = await readTocJson(compressedToc, opts, where);
  const { entries, prefetchEnd } = buildEntries(parsed, footer.tocOffset, where);
  return { format: 'estargz', tocDigest, tocOffset: footer.tocOffset, entries, prefetchEnd, decodeChunk };
}

/**
 * The TOC as parsed JSON, verified against the expected digest. A function of its own so that the
 * JSON bytes and text (twice 34 MB for 100k files) are garbage once it returns, while the entries
 * are built.
 */
async function readTocJson(compressedToc: Buffer, opts: OpenEstargzOptions, where: string): Promise<{ parsed: unknown; tocDigest: Digest }> {
  const json = await tocJsonBytes(compressedToc, where);
  const tocDigest = sha256(json);
  if (opts.tocDigest !== undefined && tocDigest !== opts.tocDigest) {
    throw new TocError(`${where}: TOC digest mismatch: the layer descriptor says ${opts.tocDigest}, the TOC hashes to ${tocDigest}`);
  }
  return { parsed: parseTocText(json, where), tocDigest };
}

/** Validates the TOC JSON and turns it into normalised FileEntries with resolved chunks. */
export function buildEntries(toc: unknown, tocOffset: number, where: string): { entries: FileEntry[]; prefetchEnd?: number } {
  if (!isObject(toc)) throw new TocError(`${where}: TOC is not a JSON object`);
  if (toc.version !== 1) throw new TocError(`${where}: TOC version ${JSON.stringify(toc.version)} is not supported (want 1)`);
  if (!Array.isArray(toc.entries)) throw new TocError(`${where}: TOC has no entries array`);
  const raw: unknown[] = toc.entries;

  const { fail, int, str, xattrs: readXattrs } = tocFieldReaders(raw, where);

  // Compressed end of each data entry: the offset of the next member start (formats.md §1a.4).
  const nextOffset: number[] = new Array(raw.length);
  let last = tocOffset;
  for (let i = raw.length - 1; i >= 0; i--) {
    const e = raw[i];
    if (!isObject(e)) fail(i, 'not a JSON object');
    const { offset, innerOffset } = e as Json;
    nextOffset[i] = last;
    if (typeof offset === 'number' && offset > 0 && !innerOffset) last = offset;
  }

  const userNames = new Map<number, string>();
  const groupNames = new Map<number, string>();
  /** Parsed modtimes: entries of one package or one build share a few (Date.parse is ~1 µs). */
  const times = new Map<string, number>();
  const files: (FileEntry | undefined)[] = [];
  const byPath = new Map<string, number>();
  let prefetchEnd: number | undefined;
  let current: { file: FileEntry; index: number } | undefined;

  const addChunk = (file: FileEntry, e: Json, i: number, fileDigest: string) => {
    const offset = int(e, i, 'offset');
    const fileOffset = int(e, i, 'chunkOffset');
    const size = int(e, i, 'chunkSize') || file.size - fileOffset;
    const innerOffset = int(e, i, 'innerOffset');
    const chunkDigest = str(e, i, 'chunkDigest');
    if (offset === 0) fail(i, 'data entry has no offset');
    if (size <= 0) fail(i, `chunk at ${fileOffset} is empty or beyond the file size ${file.size}`);
    const end = nextOffset[i]!;
    if (offset >= end || end > tocOffset) fail(i, `compressed range ${offset}..${end} is empty or runs into the TOC at ${tocOffset}`);
    // One string for a single-chunk file's digest and chunk digest (100k-entry TOCs hold many).
    const digest = chunkDigest && chunkDigest !== fileDigest ? chunkDigest : fileDigest;
    if (!isDigest(digest)) fail(i, chunkDigest ? `chunkDigest ${JSON.stringify(chunkDigest)} is not a sha256 digest` : 'no chunkDigest: the chunk cannot be verified');
    file.chunks.push({ fileOffset, size, start: offset, end, innerOffset, digest: digest as Digest, zeros: false });
  };

  for (let i = 0; i < raw.length; i++) {
    const e = raw[i] as Json;
    const type = str(e, i, 'type');
    if (!ENTRY_TYPES.has(type)) fail(i, `unknown type ${JSON.stringify(type)}`);
    if (type === 'chunk') {
      if (!current || current.file.type !== 'reg') fail(i, 'chunk entry does not follow a regular file');
      addChunk(current!.file, e, i, '');
      continue;
    }
    const name = str(e, i, 'name');
    let path: string;
    try {
      path = normalizeEntryPath(name, 'TOC entry');
    } catch (err) {
      if (err instanceof TarEntryError) fail(i, err.message);
      throw err;
    }
    const uid = int(e, i, 'uid');
    const gid = int(e, i, 'gid');
    let userName = str(e, i, 'userName');
    if (userName) userNames.set(uid, userName);
    else userName = userNames.get(uid) ?? '';
    let groupName = str(e, i, 'groupName');
    if (groupName) groupNames.set(gid, groupName);
    else groupName = groupNames.get(gid) ?? '';
    const modtime = str(e, i, 'modtime');
    let mtimeMs = modtime ? times.get(modtime) : 0;
    if (mtimeMs === undefined) times.set(modtime, (mtimeMs = Date.parse(modtime)));
    if (Number.isNaN(mtimeMs)) fail(i, `modtime ${JSON.stringify(modtime)} is not an RFC 3339 time`);
    const xattrs = readXattrs(e, i);
    const digest = str(e, i, 'digest');
    if (digest && !isDigest(digest)) fail(i, `digest ${JSON.stringify(digest)} is not a sha256 digest`);
    let linkName = str(e, i, 'linkName');
    if (type === 'hardlink') {
      try {
        linkName = normalizeEntryPath(linkName, 'hardlink target');
      } catch (err) {
        if (err instanceof TarEntryError) fail(i, err.message);
        throw err;
      }
    }
    const file: FileEntry = {
      path,
      type: type as FileType,
      mode: int(e, i, 'mode') & 0o7777,
      uid,
      gid,
      userName: userName || undefined,
      groupName: groupName || undefined,
      mtimeMs,
      size: type === 'reg' ? int(e, i, 'size') : 0,
      linkName: type === 'symlink' || type === 'hardlink' ? linkName : '',
      devMajor: int(e, i, 'devMajor'),
      devMinor: int(e, i, 'devMinor'),
      xattrs,
      digest: digest ? (digest as Digest) : undefined,
      chunks: [],
    };
    if (path === '' && type !== 'dir') fail(i, `the root must be a directory, not ${type}`);
    current = { file, index: i };
    if (type === 'reg' && file.size > 0) addChunk(file, e, i, digest);
    const hidden = path === TOC_TAR_NAME || path === PREFETCH_LANDMARK || path === NO_PREFETCH_LANDMARK;
    if (path === PREFETCH_LANDMARK && file.chunks[0]) prefetchEnd = file.chunks[0].start;
    if (hidden) continue;
    const earlier = byPath.get(path);
    if (earlier !== undefined) files[earlier] = undefined; // a later duplicate wins, as in Go's reader
    byPath.set(path, files.length);
    files.push(file);
  }

  const entries = files.filter((f): f is FileEntry => f !== undefined);
  for (const f of entries) {
    if (f.type === 'reg') {
      checkCoverage(f, where);
      f.chunks = f.chunks.slice(); // exact length: push() left room for 16 more chunks in every file
    }
    if (f.type === 'hardlink') {
      const target = byPath.get(f.linkName);
      if (target === undefined || files[target] === undefined) throw new TocError(`${where}: hardlink ${JSON.stringify(f.path)} points to ${JSON.stringify(f.linkName)}, which is not in the layer`);
    }
  }
  return { entries, prefetchEnd };
}

/** Throws unless the chunks of `f` cover [0, size) in order without gaps or overlaps. */
function checkCoverage(f: FileEntry, where: string): void {
  let pos = 0;
  for (const c of f.chunks) {
    if (c.fileOffset !== pos) throw new TocError(`${where}: ${JSON.stringify(f.path)}: chunk at ${c.fileOffset}, expected one at ${pos}`);
    pos += c.size;
  }
  if (pos !== f.size) throw new TocError(`${where}: ${JSON.stringify(f.path)}: chunks cover ${pos} bytes of ${f.size}`);
}

/** Largest single output buffer of a chunk inflate (bigger chunks come in several). */
const MAX_INFLATE_OUTPUT = 16 << 20;

/** Inflates `compressed` (one or more gzip members) but stops once `want` bytes have come out. */
function inflatePrefix(compressed: Buffer, want: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // Output buffers the size of the chunk: one 'data' event and no concatenation for a whole chunk.
    const gz = createGunzip({ chunkSize: Math.min(MAX_INFLATE_OUTPUT, Math.max(64 << 10, want)) });
    const parts: Buffer[] = [];
    let got = 0;
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      if (err) {
        gz.destroy();
        reject(err);
      } else resolve(parts.length === 1 ? parts[0]!.subarray(0, want) : Buffer.concat(parts, Math.min(got, want)).subarray(0, want));
    };
    gz.on('data', (d: Buffer) => {
      // More output than the chunk needs (a member holding more, or a bomb): stop inflating. Not
      // destroyed as soon as `want` is reached: the member usually ends there, and destroying a
      // stream with its write pending creates an error object per chunk (measured: 2 % of a walk).
      if (settled) return void gz.destroy();
      parts.push(d);
      got += d.length;
      if (got >= want) finish();
    });
    gz.once('end', () => finish(got >= want ? undefined : new ChunkVerifyError(`chunk does not decompress: compressed input ends after ${got} of ${want} uncompressed bytes`)));
    gz.once('error', (err) => finish(new ChunkVerifyError(`chunk does not decompress: ${err.message}`)));
    gz.end(compressed);
  });
}

async function decodeChunk(chunk: ChunkRef, compressed: Buffer): Promise<Buffer> {
  if (compressed.length !== chunk.end - chunk.start) {
    throw new ChunkVerifyError(`chunk ${chunk.start}..${chunk.end}: got ${compressed.length} compressed bytes`);
  }
  const want = chunk.innerOffset + chunk.size;
  let data: Buffer;
  let actual: Digest;
  const native = inflateChunk(compressed, want, chunk.innerOffset);
  if (native) {
    [data, actual] = await native.catch((err: Error) => {
      throw new ChunkVerifyError(`chunk ${chunk.start}..${chunk.end} does not decompress: ${err.message}`);
    });
    data = data.subarray(chunk.innerOffset);
  } else {
    data = (await inflatePrefix(compressed, want)).subarray(chunk.innerOffset);
    actual = await chunkDigest(data);
  }
  if (actual !== chunk.digest) {
    throw new ChunkVerifyError(`chunk ${chunk.start}..${chunk.end} (file offset ${chunk.fileOffset}): digest ${actual}, TOC says ${chunk.digest}`);
  }
  return data;
}

/**
 * Reads `length` bytes at `offset` of a regular file (or a hardlink to one) through the layer's
 * chunks, fetching from `blob` and verifying each chunk; fewer bytes at the end of the file.
 */
export async function readFileRange(layer: LayerToc, blob: BlobSource, entry: FileEntry, offset: number, length: number): Promise<Buffer> {
  let file = entry;
  if (file.type === 'hardlink') {
    const target = layer.entries.find((f) => f.path === entry.linkName && f.type !== 'hardlink');
    if (!target) throw new TocError(`hardlink ${JSON.stringify(entry.path)}: target ${JSON.stringify(entry.linkName)} not found`);
    file = target;
  }
  if (file.type !== 'reg') throw new TocError(`${JSON.stringify(entry.path)} is not a regular file`);
  const end = Math.min(file.size, offset + length);
  const pieces: Buffer[] = [];
  for (const c of file.chunks) {
    if (c.fileOffset + c.size <= offset || c.fileOffset >= end) continue;
    const data = await layer.decodeChunk(c, await blob.read(c.start, c.end - c.start));
    pieces.push(data.subarray(Math.max(0, offset - c.fileOffset), Math.min(c.size, end - c.fileOffset)));
  }
  return Buffer.concat(pieces);
}
