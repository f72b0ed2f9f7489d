// One layer's entries as a mount keeps them: in columns (typed arrays, and sparse maps for what few
// entries have), not as one object each. A 100k-file layer's FileEntry and ChunkRef objects and
// digest strings held ~36 MB of JS heap, which every full GC walked again while serving (a warm
// 1 GiB read makes ~25 of them). Rows are appended once (a reader's FileEntry objects then become
// garbage); a row is materialised as a FileEntry again only when its file is first read.
import { NO_XATTRS, type ChunkRef, type FileEntry, type FileType } from '../format/toc.js';
import { isDigest, type Digest } from '../oci/digest.js';

const TYPES: readonly FileType[] = ['dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo'];
const TYPE_CODES = new Map(TYPES.map((t, i) => [t, i]));
const DIGEST_BYTES = 32;

type Column = Uint8Array | Uint16Array | Uint32Array | Float64Array;

/** The per-entry columns, with room for `n` rows. */
const rowColumns = (n: number) => ({
  type: new Uint8Array(n),
  mode: new Uint16Array(n),
  uid: new Uint32Array(n),
  gid: new Uint32Array(n),
  size: new Float64Array(n),
  mtimeMs: new Float64Array(n),
  devMajor: new Uint32Array(n),
  devMinor: new Uint32Array(n),
  /** A row's chunks are chunk rows [firstChunk, firstChunk + chunkCount). */
  firstChunk: new Uint32Array(n),
  chunkCount: new Uint32Array(n),
});

/** The per-chunk columns, with room for `n` chunks; sha256 digests as raw bytes, 32 per chunk. */
const chunkColumns = (n: number) => ({
  fileOffset: new Float64Array(n),
  size: new Float64Array(n),
  start: new Float64Array(n),
  end: new Float64Array(n),
  innerOffset: new Float64Array(n),
  /** ChunkRef.unitSize, 0 when unset. */
  unitSize: new Float64Array(n),
  zeros: new Uint8Array(n),
  digest: new Uint8Array(n * DIGEST_BYTES),
});

/**
 * A group of columns that grow together: room for `n` items (doubling, so appends stay amortised
 * O(1)), or cut to `n` items as views when `seal` (the spare room of a group sized up front is small).
 */
class ColumnGroup<T extends Record<string, Column>> {
  capacity: number;
  cols: T;

  constructor(
    private readonly make: (n: number) => T,
    capacity: number,
  ) {
    this.capacity = capacity;
    this.cols = make(capacity);
  }

  ensure(n: number): void {
    if (n <= this.capacity) return;
    const capacity = Math.max(n, this.capacity * 2, 16);
    const next = this.make(capacity);
    for (const k in next) next[k].set(this.cols[k]);
    this.cols = next;
    this.capacity = capacity;
  }

  seal(n: number): void {
    if (n === this.capacity) return;
    for (const k in this.cols) this.cols[k] = this.cols[k].subarray(0, (n * this.cols[k].length) / this.capacity) as T[typeof k];
    this.capacity = n;
  }
}

/** The numeric fields of an entry, as its columns name them. */
export type NumericField = 'mode' | 'uid' | 'gid' | 'size' | 'mtimeMs' | 'devMajor' | 'devMinor';

export class EntryTable {
  private rowCount = 0;
  private chunkRows = 0;
  private readonly paths: string[] = [];
  private readonly rows: ColumnGroup<ReturnType<typeof rowColumns>>;
  private readonly chunks: ColumnGroup<ReturnType<typeof chunkColumns>>;
  private readonly linkNames = new Map<number, string>();
  private readonly xattrMaps = new Map<number, ReadonlyMap<string, Buffer>>();
  /** Chunk digests that are not sha256, as given (the raw-bytes column holds sha256 only). */
  private readonly otherDigests = new Map<number, Digest>();

  /** Room for `rows` entries and `chunks` chunks up front: growing by doubling would copy every column a few times over. */
  constructor(rows = 0, chunks = 0) {
    this.rows = new ColumnGroup(rowColumns, rows);
    this.chunks = new ColumnGroup(chunkColumns, chunks);
  }

  get length(): number {
    return this.rowCount;
  }

  /** Appends an entry; returns its row. */
  add(e: FileEntry): number {
    const r = this.rowCount++;
    this.rows.ensure(this.rowCount);
    const c = this.rows.cols;
    this.paths.push(e.path);
    c.type[r] = TYPE_CODES.get(e.type)!;
    c.mode[r] = e.mode;
    c.uid[r] = e.uid;
    c.gid[r] = e.gid;
    c.size[r] = e.size;
    c.mtimeMs[r] = e.mtimeMs;
    c.devMajor[r] = e.devMajor;
    c.devMinor[r] = e.devMinor;
    c.firstChunk[r] = this.chunkRows;
    c.chunkCount[r] = e.chunks.length;
    if (e.linkName) this.linkNames.set(r, e.linkName);
    if (e.xattrs.size > 0) this.xattrMaps.set(r, e.xattrs);
    for (const chunk of e.chunks) this.addChunk(chunk);
    return r;
  }

  private addChunk(chunk: ChunkRef): void {
    const j = this.chunkRows++;
    this.chunks.ensure(this.chunkRows);
    const c = this.chunks.cols;
    c.fileOffset[j] = chunk.fileOffset;
    c.size[j] = chunk.size;
    c.start[j] = chunk.start;
    c.end[j] = chunk.end;
    c.innerOffset[j] = chunk.innerOffset;
    c.unitSize[j] = chunk.unitSize ?? 0;
    c.zeros[j] = chunk.zeros ? 1 : 0;
    if (isDigest(chunk.digest)) Buffer.from(c.digest.buffer, c.digest.byteOffset).write(chunk.digest.slice(7), j * DIGEST_BYTES, 'hex');
    else this.otherDigests.set(j, chunk.digest);
  }

  /** Ends every column at the last row; returns this. */
  seal(): this {
    this.rows.seal(this.rowCount);
    this.chunks.seal(this.chunkRows);
    return this;
  }

  path(r: number): string {
    return this.paths[r]!;
  }
  typeOf(r: number): FileType {
    return TYPES[this.rows.cols.type[r]!]!;
  }
  /** A numeric field of row `r`. */
  num(r: number, field: NumericField): number {
    return this.rows.cols[field][r]!;
  }
  linkNameOf(r: number): string {
    return this.linkNames.get(r) ?? '';
  }
  xattrsOf(r: number): ReadonlyMap<string, Buffer> {
    return this.xattrMaps.get(r) ?? NO_XATTRS;
  }

  /** The chunks of row `r`, as objects. */
  chunksOf(r: number): ChunkRef[] {
    const first = this.rows.cols.firstChunk[r]!;
    const out: ChunkRef[] = new Array(this.rows.cols.chunkCount[r]!);
    for (let k = 0; k < out.length; k++) out[k] = this.chunk(first + k);
    return out;
  }

  /** The chunks whose compressed bytes start before blob offset `end` (eStargz's prioritised prefix). */
  chunksBefore(end: number): ChunkRef[] {
    const out: ChunkRef[] = [];
    for (let j = 0; j < this.chunkRows; j++) if (this.chunks.cols.start[j]! < end) out.push(this.chunk(j));
    return out;
  }

  /** Chunk rows in the table (every chunk of every entry, in row order). */
  get chunkCount(): number {
    return this.chunkRows;
  }

  /** Blob range [start, end) of chunk row `j`, and whether it has bytes to fetch (not zeros, not empty). */
  chunkStart(j: number): number {
    return this.chunks.cols.start[j]!;
  }
  chunkEnd(j: number): number {
    return this.chunks.cols.end[j]!;
  }
  chunkFetchable(j: number): boolean {
    return this.chunks.cols.zeros[j] === 0 && this.chunks.cols.size[j]! > 0;
  }

  /** Chunk row `j` as an object. */
  chunk(j: number): ChunkRef {
    const c = this.chunks.cols;
    const digest = this.otherDigests.get(j) ?? (`sha256:${Buffer.from(c.digest.buffer, c.digest.byteOffset).toString('hex', j * DIGEST_BYTES, (j + 1) * DIGEST_BYTES)}` as Digest);
    const chunk: ChunkRef = { fileOffset: c.fileOffset[j]!, size: c.size[j]!, start: c.start[j]!, end: c.end[j]!, innerOffset: c.innerOffset[j]!, digest, zeros: c.zeros[j] === 1 };
    if (c.unitSize[j]! > 0) chunk.unitSize = c.unitSize[j]!;
    return chunk;
  }

  /** Row `r` as a FileEntry (user and group names and the whole-file digest are not kept: a mount does not serve them). */
  entry(r: number): FileEntry {
    return {
      path: this.path(r),
      type: this.typeOf(r),
      mode: this.num(r, 'mode'),
      uid: this.num(r, 'uid'),
      gid: this.num(r, 'gid'),
      mtimeMs: this.num(r, 'mtimeMs'),
      size: this.num(r, 'size'),
      linkName: this.linkNameOf(r),
      devMajor: this.num(r, 'devMajor'),
      devMinor: this.num(r, 'devMinor'),
      xattrs: this.xattrsOf(r),
      chunks: this.chunksOf(r),
    };
  }
}
