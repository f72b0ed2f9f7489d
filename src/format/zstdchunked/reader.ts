// zstd:chunked reader (formats.md §1b): locate the TOC from the layer annotations (current
// io.github.* keys, or the legacy io.containers.* ones) or from a footer (64-byte "GNUlInUx" or
// 40-byte "GnUlInUx"), verify it against the manifest checksum, decode and validate every entry,
// verify the tar-split against the TOC's tarSplitDigest and check both list the same entries.
// Everything read from the blob is untrusted: sizes are bounded before anything is inflated.
import type { BlobSource } from '../../blob/source.js';
import { isDigest, sha256, type Digest } from '../../oci/digest.js';
import { Annotation } from '../../oci/mediatypes.js';
import { normalizeEntryPath, TarEntryError } from '../tar-entry.js';
import { ChunkVerifyError, TocError, type ChunkRef, type FileEntry, type FileType, type LayerToc, type TocEntry } from '../toc.js';
import { isObject, parseTocText, tocFieldReaders, type Json } from '../toc-fields.js';
import {
  FOOTER_FRAME_SIZE,
  FooterError,
  parseFooter,
  parseManifestPosition,
  parseTarSplitPosition,
  type BlobRange,
} from './footer.js';
import { decompressExact } from './frames.js';
import { parseGoTime, tocEntryFromHeader } from './manifest.js';
import type { TarTime } from './rawtar.js';
import { readTarSplit, TarSplitError } from './tarsplit.js';
import { chunkDigest } from '../native.js';

/** containers/storage `maxTocSize`: the TOC may not exceed this, compressed or uncompressed. */
export const MAX_TOC_BYTES = 150 << 20;
/** The decompressed tar-split is held in memory to cross-check it; refuse anything larger. */
export const MAX_TAR_SPLIT_BYTES = 512 << 20;

/** Where the TOC (and tar-split) of a zstd:chunked blob are, and what authenticates them. */
export interface ZstdChunkedLocation {
  manifest: BlobRange;
  tarSplit?: BlobRange;
  /** sha256 of the compressed TOC from the manifest-checksum annotation, when there is one. */
  checksum?: Digest;
  source: 'annotations' | 'footer' | 'legacy footer';
}

const ENTRY_TYPES: ReadonlySet<string> = new Set(['dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo', 'chunk']);

/** The annotation under the current key, else under the legacy key. */
function annotation(ann: Record<string, string>, current: string, legacy?: string): [string, string] | undefined {
  if (ann[current] !== undefined) return [current, ann[current]];
  if (legacy && ann[legacy] !== undefined) return [legacy, ann[legacy]];
  return undefined;
}

/** Finds the TOC: position annotations first, else the footer at the end of the blob. */
export async function locateZstdChunkedToc(blob: BlobSource, annotations: Record<string, string> = {}): Promise<ZstdChunkedLocation> {
  const where = blob.description;
  try {
    const checksumAnn = annotation(annotations, Annotation.zstdChunkedManifestChecksum, Annotation.legacyZstdChunkedManifestChecksum);
    let checksum: Digest | undefined;
    if (checksumAnn) {
      if (!isDigest(checksumAnn[1])) throw new TocError(`${where}: annotation ${checksumAnn[0]} is not a sha256 digest: ${JSON.stringify(checksumAnn[1])}`);
      checksum = checksumAnn[1];
    }
    const positionAnn = annotation(annotations, Annotation.zstdChunkedManifestPosition, Annotation.legacyZstdChunkedManifestPosition);
    const tarSplitAnn = annotation(annotations, Annotation.zstdChunkedTarSplitPosition);
    if (positionAnn) {
      const manifest = parseManifestPosition(positionAnn[1], positionAnn[0]);
      const tarSplit = tarSplitAnn ? parseTarSplitPosition(tarSplitAnn[1], tarSplitAnn[0]) : undefined;
      return { manifest, tarSplit, checksum, source: 'annotations' };
    }
    const tailSize = Math.min(blob.size, FOOTER_FRAME_SIZE);
    const footer = parseFooter(await blob.read(blob.size - tailSize, tailSize));
    if (!footer) throw new TocError(`${where}: no zstd:chunked position annotation and no zstd:chunked footer (GNUlInUx / GnUlInUx) at the end of the blob`);
    return { manifest: footer.manifest, tarSplit: footer.tarSplit, checksum, source: footer.size === 64 ? 'footer' : 'legacy footer' };
  } catch (err) {
    if (err instanceof FooterError) throw new TocError(`${where}: ${err.message}`);
    throw err;
  }
}

function checkRange(r: BlobRange, blobSize: number, what: string, where: string): void {
  if (r.offset < 8 || r.length <= 0 || r.offset + r.length > blobSize) {
    throw new TocError(`${where}: ${what} range ${r.offset}+${r.length} points outside the blob (size ${blobSize})`);
  }
}

export interface OpenZstdChunkedOptions {
  /** Refuse a layer whose TOC digest is not given by an annotation (default false). */
  requireChecksum?: boolean;
}

/** Opens a zstd:chunked blob: TOC located, verified, decoded; tar-split verified and cross-checked. */
export async function openZstdChunked(blob: BlobSource, annotations: Record<string, string> = {}, opts: OpenZstdChunkedOptions = {}): Promise<LayerToc> {
  const where = blob.description;
  const loc = await locateZstdChunkedToc(blob, annotations);
  if (opts.requireChecksum && !loc.checksum) throw new TocError(`${where}: no zstd:chunked manifest-checksum annotation: the TOC cannot be verified`);
  const { manifest } = loc;
  if (manifest.length > MAX_TOC_BYTES || manifest.uncompressedLength > MAX_TOC_BYTES) {
    throw new TocError(`${where}: TOC of ${manifest.length} bytes (${manifest.uncompressedLength} uncompressed) exceeds the ${MAX_TOC_BYTES}-byte limit`);
  }
  checkRange(manifest, blob.size, 'TOC', where);

  // With both positions known, fetch the TOC and the tar-split in one request (as containers/storage does).
  let tocCompressed: Buffer;
  let tarSplitBytes: Buffer | undefined;
  const ts = loc.tarSplit;
  if (ts && blob.readRanges && tarSplitRangeOk(ts, blob.size)) {
    [tocCompressed, tarSplitBytes] = (await blob.readRanges([
      { offset: manifest.offset, length: manifest.length },
      { offset: ts.offset, length: ts.length },
    ])) as [Buffer, Buffer];
  } else {
    tocCompressed = await blob.read(manifest.offset, manifest.length);
  }
  const tocDigest = sha256(tocCompressed);
  if (loc.checksum && tocDigest !== loc.checksum) {
    throw new TocError(`${where}: TOC checksum mismatch: the layer annotation says ${loc.checksum}, the TOC hashes to ${tocDigest}`);
  }
  const parsed = await parseTocJson(tocCompressed, manifest.uncompressedLength, where);
  // File data ends where the TOC's skippable frame header begins.
  const dataEnd = manifest.offset - 8;
  const { entries, rawEntries, tarSplitDigest } = decodeZstdChunkedToc(parsed, dataEnd, where);

  if (tarSplitDigest) {
    let tarSplit = loc.tarSplit;
    if (!tarSplit && loc.source === 'annotations') {
      // The position annotation did not say where the tar-split is; the 64-byte footer does.
      const tailSize = Math.min(blob.size, FOOTER_FRAME_SIZE);
      try {
        tarSplit = parseFooter(await blob.read(blob.size - tailSize, tailSize))?.tarSplit;
      } catch (err) {
        if (!(err instanceof FooterError)) throw err;
      }
    }
    if (!tarSplit) throw new TocError(`${where}: the TOC names a tar-split (${tarSplitDigest}) but neither annotations nor footer say where it is`);
    await verifyTarSplit(blob, tarSplit, tarSplitDigest, rawEntries, where, tarSplit === ts ? tarSplitBytes : undefined);
  }
  return { format: 'zstd:chunked', tocDigest, tocOffset: dataEnd, entries, decodeChunk };
}

/**
 * The TOC's JSON, parsed. A function of its own so that the decompressed bytes and the text (twice
 * the TOC's size) are garbage once it returns, while the entries are built.
 */
async function parseTocJson(compressed: Buffer, uncompressedLength: number, where: string): Promise<unknown> {
  return parseTocText(await decompressExact(compressed, uncompressedLength, (msg) => new TocError(`${where}: TOC: ${msg}`)), where);
}

function tarSplitRangeOk(r: BlobRange, blobSize: number): boolean {
  return r.offset >= 8 && r.length > 0 && r.offset + r.length <= blobSize && r.uncompressedLength <= MAX_TAR_SPLIT_BYTES;
}

/** Reads the tar-split (unless `fetched`), checks its digest and that it lists exactly the TOC's entries. */
async function verifyTarSplit(blob: BlobSource, range: BlobRange, digest: Digest, tocEntries: TocEntry[], where: string, fetched?: Buffer): Promise<void> {
  checkRange(range, blob.size, 'tar-split', where);
  if (range.uncompressedLength > MAX_TAR_SPLIT_BYTES) {
    throw new TocError(`${where}: tar-split of ${range.uncompressedLength} bytes uncompressed exceeds the ${MAX_TAR_SPLIT_BYTES}-byte limit`);
  }
  const compressed = fetched ?? (await blob.read(range.offset, range.length));
  const actual = sha256(compressed);
  if (actual !== digest) throw new TocError(`${where}: tar-split digest mismatch: the TOC says ${digest}, the tar-split hashes to ${actual}`);
  const text = await decompressExact(compressed, range.uncompressedLength, (msg) => new TocError(`${where}: tar-split: ${msg}`));
  let headers;
  try {
    headers = readTarSplit(text);
  } catch (err) {
    if (err instanceof TarSplitError) throw new TocError(`${where}: ${err.message}`);
    throw err;
  }
  crossCheck(tocEntries, headers.map(tocEntryFromHeader), where);
}

/** containers/storage `ensureTOCMatchesTarSplit`: same entries (by name), same metadata. */
function crossCheck(toc: TocEntry[], fromTarSplit: TocEntry[], where: string): void {
  const pending = new Map<string, TocEntry[]>();
  for (const e of toc) {
    if (e.type === 'chunk') continue;
    const list = pending.get(e.name);
    if (list) list.push(e);
    else pending.set(e.name, [e]);
  }
  const fail = (msg: string): never => {
    throw new TocError(`${where}: tar-split and TOC disagree: ${msg}`);
  };
  for (const want of fromTarSplit) {
    const got = pending.get(want.name)?.shift();
    if (!got) fail(`tar-split has an entry for ${JSON.stringify(want.name)} that the TOC lacks`);
    const diff = metadataDifference(got!, want);
    if (diff) fail(`${JSON.stringify(want.name)}: ${diff}`);
  }
  const left = [...pending.values()].flat();
  if (left.length > 0) fail(`the TOC has entries the tar-split lacks, e.g. ${JSON.stringify(left.slice(0, 5).map((e) => e.name))}`);
}

function sameTime(a: string | undefined, b: string | undefined): boolean {
  // Go treats a missing time and the Unix epoch alike (ensureTimePointersMatch).
  const norm = (s: string | undefined): TarTime | undefined => {
    if (!s) return undefined;
    const t = parseGoTime(s);
    return t && t.sec === 0 && t.nsec === 0 ? undefined : (t ?? { sec: NaN, nsec: 0 });
  };
  const x = norm(a);
  const y = norm(b);
  return x === undefined || y === undefined ? x === y : x.sec === y.sec && x.nsec === y.nsec;
}

function metadataDifference(a: TocEntry, b: TocEntry): string | undefined {
  for (const key of ['type', 'linkName', 'mode', 'size', 'uid', 'gid', 'devMajor', 'devMinor'] as const) {
    const x = a[key] || undefined;
    const y = b[key] || undefined;
    if (x !== y) return `${key} ${JSON.stringify(x)} != ${JSON.stringify(y)}`;
  }
  for (const key of ['modtime', 'accesstime', 'changetime'] as const) {
    if (!sameTime(a[key], b[key])) return `${key} ${JSON.stringify(a[key])} != ${JSON.stringify(b[key])}`;
  }
  const xa = a.xattrs ?? {};
  const xb = b.xattrs ?? {};
  const keys = new Set([...Object.keys(xa), ...Object.keys(xb)]);
  for (const k of keys) if (xa[k] !== xb[k]) return `xattr ${JSON.stringify(k)} differs`;
  return undefined;
}


/**
 * Validates a parsed zstd:chunked TOC and turns it into normalised FileEntries with their chunks
 * resolved to blob ranges below `dataEnd`. Returns the raw entries too (for the tar-split check).
 * A later entry for the same path replaces an earlier one, as when a tar is extracted.
 */
export function decodeZstdChunkedToc(toc: unknown, dataEnd: number, where = 'zstd:chunked TOC'): { entries: FileEntry[]; rawEntries: TocEntry[]; tarSplitDigest?: Digest } {
  if (!isObject(toc)) throw new TocError(`${where}: TOC is not a JSON object`);
  if (toc.version !== 1) throw new TocError(`${where}: TOC version ${JSON.stringify(toc.version)} is not supported (want 1)`);
  const raw: unknown[] = toc.entries === null ? [] : (toc.entries as unknown[]);
  if (!Array.isArray(raw)) throw new TocError(`${where}: TOC has no entries array`);
  let tarSplitDigest: Digest | undefined;
  if (toc.tarSplitDigest !== undefined && toc.tarSplitDigest !== '') {
    if (!isDigest(toc.tarSplitDigest)) throw new TocError(`${where}: tarSplitDigest ${JSON.stringify(toc.tarSplitDigest)} is not a sha256 digest`);
    tarSplitDigest = toc.tarSplitDigest;
  }

  const { fail, int, str, xattrs: readXattrs } = tocFieldReaders(raw, where);
  const path = (name: string, i: number, what: string): string => {
    try {
      return normalizeEntryPath(name, what);
    } catch (err) {
      if (err instanceof TarEntryError) fail(i, err.message);
      throw err;
    }
  };

  const rawEntries: TocEntry[] = [];
  const files: (FileEntry | undefined)[] = [];
  const byPath = new Map<string, number>();
  for (let i = 0; i < raw.length; i++) {
    const e = raw[i];
    if (!isObject(e)) fail(i, 'not a JSON object');
    const entry = e as Json;
    const type = str(entry, i, 'type');
    if (!ENTRY_TYPES.has(type)) fail(i, `unknown type ${JSON.stringify(type)}`);
    if (type === 'chunk') fail(i, 'chunk entry does not follow the regular file it belongs to');
    const name = str(entry, i, 'name');
    const modtime = str(entry, i, 'modtime');
    const mtime = modtime ? parseGoTime(modtime) : undefined;
    if (modtime && !mtime) fail(i, `modtime ${JSON.stringify(modtime)} is not an RFC 3339 time`);
    for (const key of ['accesstime', 'changetime']) {
      const t = str(entry, i, key);
      if (t && !parseGoTime(t)) fail(i, `${key} ${JSON.stringify(t)} is not an RFC 3339 time`);
    }
    const xattrs = readXattrs(entry, i);
    const digest = str(entry, i, 'digest');
    if (digest && !isDigest(digest)) fail(i, `digest ${JSON.stringify(digest)} is not a sha256 digest`);
    const linkName = str(entry, i, 'linkName');
    const file: FileEntry = {
      path: path(name, i, 'TOC entry'),
      type: type as FileType,
      mode: int(entry, i, 'mode') & 0o7777,
      uid: int(entry, i, 'uid'),
      gid: int(entry, i, 'gid'),
      mtimeMs: mtime ? mtime.sec * 1000 + Math.floor(mtime.nsec / 1e6) : 0,
      size: type === 'reg' ? int(entry, i, 'size') : 0,
      linkName: type === 'hardlink' ? path(linkName, i, 'hardlink target') : type === 'symlink' ? linkName : '',
      devMajor: int(entry, i, 'devMajor'),
      devMinor: int(entry, i, 'devMinor'),
      xattrs,
      digest: digest ? (digest as Digest) : undefined,
      chunks: [],
    };
    if (file.path === '' && type !== 'dir') fail(i, `the root must be a directory, not ${type}`);
    rawEntries.push(entry as unknown as TocEntry);

    // The chunk entries that follow a regular file (same name) are its further chunks.
    const parts: { e: Json; i: number }[] = [{ e: entry, i }];
    while (i + 1 < raw.length && isObject(raw[i + 1]) && (raw[i + 1] as Json).type === 'chunk') {
      i++;
      if (type !== 'reg') fail(i, 'chunk entry does not follow a regular file');
      if (str(raw[i] as Json, i, 'name') !== name) fail(i, `chunk entry names ${JSON.stringify((raw[i] as Json).name)}, not the file it follows`);
      parts.push({ e: raw[i] as Json, i });
      rawEntries.push(raw[i] as unknown as TocEntry);
    }
    if (type === 'reg' && file.size > 0) file.chunks = resolveChunks(file, parts, int(entry, i, 'endOffset'), dataEnd, fail, int, str);

    const earlier = byPath.get(file.path);
    if (earlier !== undefined) files[earlier] = undefined;
    byPath.set(file.path, files.length);
    files.push(file);
  }
  const entries = files.filter((f): f is FileEntry => f !== undefined);
  for (const f of entries) {
    if (f.type === 'hardlink' && !byPath.has(f.linkName)) {
      throw new TocError(`${where}: hardlink ${JSON.stringify(f.path)} points to ${JSON.stringify(f.linkName)}, which is not in the layer`);
    }
  }
  return { entries, rawEntries, tarSplitDigest };
}

/**
 * Chunks of one regular file: a single chunk [offset, endOffset) when the file has no chunk
 * metadata; otherwise one per part, each ending where the next begins, the last at endOffset.
 */
function resolveChunks(
  file: FileEntry,
  parts: { e: Json; i: number }[],
  endOffset: number,
  dataEnd: number,
  fail: (i: number, msg: string) => never,
  int: (e: Json, i: number, key: string) => number,
  str: (e: Json, i: number, key: string) => string,
): ChunkRef[] {
  const first = parts[0]!;
  if (!file.digest) fail(first.i, 'regular file with content has no digest');
  if (endOffset === 0) fail(first.i, 'regular file with content has no endOffset');
  if (endOffset > dataEnd) fail(first.i, `endOffset ${endOffset} runs into the TOC at ${dataEnd}`);
  const chunked = parts.length > 1 || int(first.e, first.i, 'chunkSize') > 0;
  const chunks: ChunkRef[] = [];
  let fileOffset = 0;
  for (let k = 0; k < parts.length; k++) {
    const { e, i } = parts[k]!;
    const start = int(e, i, 'offset');
    const end = k + 1 < parts.length ? int(parts[k + 1]!.e, parts[k + 1]!.i, 'offset') : endOffset;
    if (start === 0) fail(i, 'chunk has no offset');
    if (start >= end || end > dataEnd) fail(i, `compressed range ${start}..${end} is empty or runs into the TOC at ${dataEnd}`);
    const size = chunked ? int(e, i, 'chunkSize') : file.size;
    if (size <= 0) fail(i, 'chunk has no chunkSize');
    if (int(e, i, 'chunkOffset') !== fileOffset) fail(i, `chunk at file offset ${int(e, i, 'chunkOffset')}, expected ${fileOffset}`);
    const chunkDigest = chunked ? str(e, i, 'chunkDigest') : file.digest!;
    const digest = chunkDigest === file.digest ? file.digest : chunkDigest; // one string when they are equal
    if (!isDigest(digest)) fail(i, `chunkDigest ${JSON.stringify(digest)} is not a sha256 digest`);
    const chunkType = str(e, i, 'chunkType');
    if (chunkType !== '' && chunkType !== 'zeros') fail(i, `unknown chunkType ${JSON.stringify(chunkType)}`);
    chunks.push({ fileOffset, size, start, end, innerOffset: 0, digest: digest as Digest, zeros: chunkType === 'zeros' });
    fileOffset += size;
  }
  if (fileOffset !== file.size) fail(first.i, `chunks cover ${fileOffset} bytes of ${file.size}`);
  return chunks.slice(); // exact length: push() left room for 16 more chunks
}

/** sha256 of `size` zero bytes, per size (zeros chunks repeat sizes rarely; the map stays small). */
const zeroDigests = new Map<number, Digest>();

function zeroDigest(size: number): Digest {
  let d = zeroDigests.get(size);
  if (!d) {
    d = sha256(Buffer.alloc(size));
    if (zeroDigests.size > 256) zeroDigests.clear();
    zeroDigests.set(size, d);
  }
  return d;
}

/**
 * Decodes one chunk. A `zeros` chunk needs no fetched bytes: fs/ may pass an empty buffer for
 * `chunk.zeros` and gets `size` zero bytes, checked against the chunk digest.
 */
async function decodeChunk(chunk: ChunkRef, compressed: Buffer): Promise<Buffer> {
  const what = `chunk ${chunk.start}..${chunk.end} (file offset ${chunk.fileOffset})`;
  if (chunk.zeros) {
    if (zeroDigest(chunk.size) !== chunk.digest) throw new ChunkVerifyError(`${what}: zeros chunk whose digest is not that of ${chunk.size} zero bytes`);
    return Buffer.alloc(chunk.size);
  }
  if (compressed.length !== chunk.end - chunk.start) throw new ChunkVerifyError(`${what}: got ${compressed.length} compressed bytes`);
  const data = await decompressExact(compressed, chunk.size, (msg) => new ChunkVerifyError(`${what}: ${msg}`));
  const actual = await chunkDigest(data);
  if (actual !== chunk.digest) throw new ChunkVerifyError(`${what}: digest ${actual}, TOC says ${chunk.digest}`);
  return data;
}
