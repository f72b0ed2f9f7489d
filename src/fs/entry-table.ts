// One layer's entries as a mount keeps them: in columns (typed arrays, and sparse maps for what few
// entries have), not as one object each. A 100k-file layer's FileEntry and ChunkRef objects and
// digest strings held ~36 MB of JS heap, which every full GC walked again while serving (a warm
// 1 GiB read makes ~25 of them). Rows are appended once (a reader's FileEntry objects then become
// garbage); a row is materialised as a FileEntry again only when its file is opened.
import { NO_XATTRS, type ChunkRef, type FileEntry, type FileType } from '../format/toc.js';
import type { Digest } from '../oci/digest.js';

const TYPES: readonly FileType[] = ['dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo'];
const TYPE_CODES = new Map(TYPES.map((t, i) => [t, i]));
const SHA256 = /^sha256:[0-9a-f]{64}$/;
const DIGEST_BYTES = 32;

type Column = Uint8Array | Uint16Array | Uint32Array | Float64Array;

/** `a` with room for at least `n` items (doubling, so appends stay amortised O(1)). */
function room<T extends Column>(a: T, n: number): T {
  if (n <= a.length) return a;
  const b = new (a.constructor as new (len: number) => T)(Math.max(n, a.length * 2, 16));
  b.set(a);
  return b;
}

export class EntryTable {
  private rows = 0;
  private chunkRows = 0;
  private readonly paths: string[] = [];
  private type = new Uint8Array(0);
  private mode = new Uint16Array(0);
  private uid = new Uint32Array(0);
  private gid = new Uint32Array(0);
  private sizes = new Float64Array(0);
  private mtimeMs = new Float64Array(0);
  private devMajor = new Uint32Array(0);
  private devMinor = new Uint32Array(0);
  private firstChunk = new Uint32Array(0);
  private chunkCount = new Uint32Array(0);
  private readonly linkNames = new Map<number, string>();
  private readonly xattrMaps = new Map<number, ReadonlyMap<string, Buffer>>();
  // Chunk columns (a row's chunks are consecutive).
  private cFileOffset = new Float64Array(0);
  private cSize = new Float64Array(0);
  private cStart = new Float64Array(0);
  private cEnd = new Float64Array(0);
  private cInnerOffset = new Float64Array(0);
  private cZeros = new Uint8Array(0);
  /** sha256 digests as raw bytes, 32 per chunk; a digest of any other form stays a string in `otherDigests`. */
  private cDigest = new Uint8Array(0);
  private readonly otherDigests = new Map<number, Digest>();

  /** Room for `rows` entries and `chunks` chunks up front: growing by doubling would copy every column a few times over. */
  constructor(rows = 0, chunks = 0) {
    if (rows > 0) {
      this.type = new Uint8Array(rows);
      this.mode = new Uint16Array(rows);
      this.uid = new Uint32Array(rows);
      this.gid = new Uint32Array(rows);
      this.sizes = new Float64Array(rows);
      this.mtimeMs = new Float64Array(rows);
      this.devMajor = new Uint32Array(rows);
      this.devMinor = new Uint32Array(rows);
      this.firstChunk = new Uint32Array(rows);
      this.chunkCount = new Uint32Array(rows);
    }
    if (chunks > 0) {
      this.cFileOffset = new Float64Array(chunks);
      this.cSize = new Float64Array(chunks);
      this.cStart = new Float64Array(chunks);
      this.cEnd = new Float64Array(chunks);
      this.cInnerOffset = new Float64Array(chunks);
      this.cZeros = new Uint8Array(chunks);
      this.cDigest = new Uint8Array(chunks * DIGEST_BYTES);
    }
  }

  /** A sealed table of `entries`, sized for them. */
  static from(entries: readonly FileEntry[]): EntryTable {
    const t = new EntryTable(entries.length, entries.reduce((n, e) => n + e.chunks.length, 0));
    for (const e of entries) t.add(e);
    return t.seal();
  }

  get length(): number {
    return this.rows;
  }

  /** Appends an entry; returns its row. */
  add(e: FileEntry): number {
    const r = this.rows++;
    const n = this.rows;
    this.type = room(this.type, n);
    this.mode = room(this.mode, n);
    this.uid = room(this.uid, n);
    this.gid = room(this.gid, n);
    this.sizes = room(this.sizes, n);
    this.mtimeMs = room(this.mtimeMs, n);
    this.devMajor = room(this.devMajor, n);
    this.devMinor = room(this.devMinor, n);
    this.firstChunk = room(this.firstChunk, n);
    this.chunkCount = room(this.chunkCount, n);
    this.paths.push(e.path);
    this.type[r] = TYPE_CODES.get(e.type)!;
    this.mode[r] = e.mode;
    this.uid[r] = e.uid;
    this.gid[r] = e.gid;
    this.sizes[r] = e.size;
    this.mtimeMs[r] = e.mtimeMs;
    this.devMajor[r] = e.devMajor;
    this.devMinor[r] = e.devMinor;
    if (e.linkName) this.linkNames.set(r, e.linkName);
    if (e.xattrs.size > 0) this.xattrMaps.set(r, e.xattrs);
    this.firstChunk[r] = this.chunkRows;
    this.chunkCount[r] = e.chunks.length;
    for (const c of e.chunks) this.addChunk(c);
    return r;
  }

  private addChunk(c: ChunkRef): void {
    const j = this.chunkRows++;
    const n = this.chunkRows;
    this.cFileOffset = room(this.cFileOffset, n);
    this.cSize = room(this.cSize, n);
    this.cStart = room(this.cStart, n);
    this.cEnd = room(this.cEnd, n);
    this.cInnerOffset = room(this.cInnerOffset, n);
    this.cZeros = room(this.cZeros, n);
    this.cDigest = room(this.cDigest, n * DIGEST_BYTES);
    this.cFileOffset[j] = c.fileOffset;
    this.cSize[j] = c.size;
    this.cStart[j] = c.start;
    this.cEnd[j] = c.end;
    this.cInnerOffset[j] = c.innerOffset;
    this.cZeros[j] = c.zeros ? 1 : 0;
    if (SHA256.test(c.digest)) Buffer.from(this.cDigest.buffer, this.cDigest.byteOffset).write(c.digest.slice(7), j * DIGEST_BYTES, 'hex');
    else this.otherDigests.set(j, c.digest);
  }

  /** Ends every column at the last row (views: the spare room of a table sized up front is small); returns this. */
  seal(): this {
    const n = this.rows;
    const m = this.chunkRows;
    this.type = this.type.subarray(0, n);
    this.mode = this.mode.subarray(0, n);
    this.uid = this.uid.subarray(0, n);
    this.gid = this.gid.subarray(0, n);
    this.sizes = this.sizes.subarray(0, n);
    this.mtimeMs = this.mtimeMs.subarray(0, n);
    this.devMajor = this.devMajor.subarray(0, n);
    this.devMinor = this.devMinor.subarray(0, n);
    this.firstChunk = this.firstChunk.subarray(0, n);
    this.chunkCount = this.chunkCount.subarray(0, n);
    this.cFileOffset = this.cFileOffset.subarray(0, m);
    this.cSize = this.cSize.subarray(0, m);
    this.cStart = this.cStart.subarray(0, m);
    this.cEnd = this.cEnd.subarray(0, m);
    this.cInnerOffset = this.cInnerOffset.subarray(0, m);
    this.cZeros = this.cZeros.subarray(0, m);
    this.cDigest = this.cDigest.subarray(0, m * DIGEST_BYTES);
    return this;
  }

  path(r: number): string {
    return this.paths[r]!;
  }
  typeOf(r: number): FileType {
    return TYPES[this.type[r]!]!;
  }
  modeOf(r: number): number {
    return this.mode[r]!;
  }
  uidOf(r: number): number {
    return this.uid[r]!;
  }
  gidOf(r: number): number {
    return this.gid[r]!;
  }
  sizeOf(r: number): number {
    return this.sizes[r]!;
  }
  mtimeMsOf(r: number): number {
    return this.mtimeMs[r]!;
  }
  devMajorOf(r: number): number {
    return this.devMajor[r]!;
  }
  devMinorOf(r: number): number {
    return this.devMinor[r]!;
  }
  linkNameOf(r: number): string {
    return this.linkNames.get(r) ?? '';
  }
  xattrsOf(r: number): ReadonlyMap<string, Buffer> {
    return this.xattrMaps.get(r) ?? NO_XATTRS;
  }

  /** The chunks of row `r`, as objects. */
  chunksOf(r: number): ChunkRef[] {
    const first = this.firstChunk[r]!;
    const out: ChunkRef[] = new Array(this.chunkCount[r]!);
    for (let k = 0; k < out.length; k++) out[k] = this.chunk(first + k);
    return out;
  }

  /** The chunks whose compressed bytes start before blob offset `end` (eStargz's prioritised prefix). */
  chunksBefore(end: number): ChunkRef[] {
    const out: ChunkRef[] = [];
    for (let j = 0; j < this.chunkRows; j++) if (this.cStart[j]! < end) out.push(this.chunk(j));
    return out;
  }

  /** Every chunk with its file's path, in row order (what a background fill walks). */
  chunksWithPaths(): Array<{ chunk: ChunkRef; path: string }> {
    const out: Array<{ chunk: ChunkRef; path: string }> = [];
    for (let r = 0; r < this.rows; r++) {
      const first = this.firstChunk[r]!;
      for (let k = 0; k < this.chunkCount[r]!; k++) out.push({ chunk: this.chunk(first + k), path: this.paths[r]! });
    }
    return out;
  }

  private chunk(j: number): ChunkRef {
    const digest = this.otherDigests.get(j) ?? (`sha256:${Buffer.from(this.cDigest.buffer, this.cDigest.byteOffset).toString('hex', j * DIGEST_BYTES, (j + 1) * DIGEST_BYTES)}` as Digest);
    return { fileOffset: this.cFileOffset[j]!, size: this.cSize[j]!, start: this.cStart[j]!, end: this.cEnd[j]!, innerOffset: this.cInnerOffset[j]!, digest, zeros: this.cZeros[j] === 1 };
  }

  /** Row `r` as a FileEntry (user and group names and the whole-file digest are not kept: a mount does not serve them). */
  entry(r: number): FileEntry {
    return {
      path: this.path(r),
      type: this.typeOf(r),
      mode: this.modeOf(r),
      uid: this.uidOf(r),
      gid: this.gidOf(r),
      mtimeMs: this.mtimeMsOf(r),
      size: this.sizeOf(r),
      linkName: this.linkNameOf(r),
      devMajor: this.devMajorOf(r),
      devMinor: this.devMinorOf(r),
      xattrs: this.xattrsOf(r),
      chunks: this.chunksOf(r),
    };
  }
}
