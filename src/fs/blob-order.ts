// A layer's chunks in blob order: what neighbourhood windows widen over and what the background fill
// walks. A layer blob is in tar order, which is directory order, so files read together sit together.
// Built on a layer's first miss (a sort of its chunk rows; 4 bytes per chunk).
import type { ChunkRef } from '../format/toc.js';
import type { EntryTable } from './entry-table.js';

export class BlobOrder {
  /** Chunk rows sorted by blob offset: chunks with bytes to fetch only, one per distinct offset. */
  private readonly rows: Uint32Array;
  /** 1 where the chunk is known to be cached or has been handed to the background fill. */
  private readonly marked: Uint8Array;
  /** Compressed bytes of all positions, and of those not marked yet. */
  readonly totalBytes: number;
  remainingBytes: number;

  constructor(private readonly table: EntryTable) {
    const rows: number[] = [];
    for (let j = 0; j < table.chunkCount; j++) if (table.chunkFetchable(j)) rows.push(j);
    rows.sort((a, b) => table.chunkStart(a) - table.chunkStart(b));
    const unique = rows.filter((j, i) => i === 0 || table.chunkStart(j) !== table.chunkStart(rows[i - 1]!));
    this.rows = Uint32Array.from(unique);
    this.marked = new Uint8Array(unique.length);
    this.totalBytes = unique.reduce((n, j) => n + table.chunkEnd(j) - table.chunkStart(j), 0);
    this.remainingBytes = this.totalBytes;
  }

  get length(): number {
    return this.rows.length;
  }
  start(pos: number): number {
    return this.table.chunkStart(this.rows[pos]!);
  }
  end(pos: number): number {
    return this.table.chunkEnd(this.rows[pos]!);
  }
  chunk(pos: number): ChunkRef {
    return this.table.chunk(this.rows[pos]!);
  }

  /** The first position whose chunk starts at or after blob offset `offset` (length if none). */
  positionAt(offset: number): number {
    let lo = 0;
    let hi = this.rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.start(mid) < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  isMarked(pos: number): boolean {
    return this.marked[pos] === 1;
  }

  mark(pos: number): void {
    if (this.marked[pos] === 1) return;
    this.marked[pos] = 1;
    this.remainingBytes -= this.end(pos) - this.start(pos);
  }

  /** Marks the chunk that starts at blob offset `start`, if there is one. */
  markAt(start: number): void {
    const pos = this.positionAt(start);
    if (pos < this.rows.length && this.start(pos) === start) this.mark(pos);
  }
}
