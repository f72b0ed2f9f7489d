// Neighbourhood windows: an on-demand miss fetches, in the same request, the free chunks around the
// one asked for, because files read together sit together in the blob (tar order is directory
// order). The window adapts per layer: it doubles when a window pays off (a neighbour it brought is
// asked for, or a later miss lands in or next to it) and halves when a miss lands elsewhere while
// the last window's neighbours were never asked for.
import type { ChunkRef } from '../format/toc.js';
import type { Digest } from '../oci/digest.js';
import type { BlobOrder } from './blob-order.js';

/** Window bounds, in compressed bytes. */
export const WINDOW = { min: 64 << 10, initial: 256 << 10, max: 4 << 20 } as const;
/** The part of a window before the miss: readers mostly go forward through a directory. */
const BACKWARD_SHARE = 1 / 8;
/** Windows remembered for adapting (and their neighbours for noticing use). */
const RECENT = 16;

interface Window {
  start: number;
  end: number;
  neighbours: Digest[];
  used: number;
  grown: boolean;
}

export interface WindowPlan {
  start: number;
  end: number;
  /** Chunks to fetch, decode and cache besides the ones asked for. */
  neighbours: ChunkRef[];
}

export class Neighbourhood {
  size: number = WINDOW.initial;
  private readonly recent: Window[] = [];
  private readonly speculative = new Map<Digest, Window>();

  /**
   * The range to fetch for a miss of blob range [start, end): adapts the size to the last windows,
   * then widens the range over the chunks around it for which `free` holds (not cached, not on their
   * way), forward up to the window size and backward a share of it, stopping at the first that is not.
   */
  plan(order: BlobOrder, start: number, end: number, free: (c: ChunkRef) => boolean): WindowPlan {
    const near = this.recent.find((w) => start < w.end + this.size && end > w.start - this.size);
    if (near) this.grow(near);
    else if (this.recent.length > 0) {
      const last = this.recent[this.recent.length - 1]!;
      if (last.used === 0 && last.neighbours.length > 0) this.size = Math.max(WINDOW.min, this.size / 2);
    }
    const neighbours: ChunkRef[] = [];
    let wStart = start;
    let wEnd = end;
    for (let pos = order.positionAt(end); pos < order.length; pos++) {
      if (order.end(pos) - start > this.size) break;
      const c = order.chunk(pos);
      if (!free(c)) break;
      neighbours.push(c);
      wEnd = c.end;
    }
    for (let pos = order.positionAt(start) - 1; pos >= 0; pos--) {
      if (order.end(pos) > start) continue; // overlaps what was asked for
      if (start - order.start(pos) > this.size * BACKWARD_SHARE) break;
      const c = order.chunk(pos);
      if (!free(c)) break;
      neighbours.push(c);
      wStart = c.start;
    }
    const w: Window = { start: wStart, end: wEnd, neighbours: neighbours.map((c) => c.digest), used: 0, grown: false };
    this.recent.push(w);
    for (const d of w.neighbours) this.speculative.set(d, w);
    if (this.recent.length > RECENT) {
      const old = this.recent.shift()!;
      for (const d of old.neighbours) if (this.speculative.get(d) === old) this.speculative.delete(d);
    }
    return { start: wStart, end: wEnd, neighbours };
  }

  /** A chunk was asked for: if a window brought it as a neighbour, that window paid off. */
  used(digest: Digest): void {
    if (this.speculative.size === 0) return;
    const w = this.speculative.get(digest);
    if (!w) return;
    this.speculative.delete(digest);
    w.used++;
    this.grow(w);
  }

  private grow(w: Window): void {
    if (w.grown) return;
    w.grown = true;
    this.size = Math.min(WINDOW.max, this.size * 2);
  }
}
