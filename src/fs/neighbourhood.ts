// Neighbourhood windows: an on-demand miss fetches, in the same request, the free chunks around the
// one asked for, because files read together sit together in the blob (tar order is directory
// order). The window's compressed bytes stay in a bounded buffer; a later miss inside it decodes
// from there, without a request. Nothing is decoded before it is asked for: decoding and caching
// every neighbour of a 4 MiB window of small files cost more (thousands of gunzip + sha256 tasks and
// disk writes) than the round trips it saved. The window adapts per layer: it doubles once at least
// half of a window's neighbour bytes get asked for, and halves when a miss lands away from the recent
// windows while the last one was mostly unused.
import type { ChunkRef } from '../format/toc.js';
import type { BlobOrder } from './blob-order.js';
import type { FetchTicket } from './fetch-scheduler.js';

/** Window bounds, in compressed bytes. */
export const WINDOW = { min: 64 << 10, initial: 256 << 10, max: 4 << 20 } as const;
/** The part of a window before the miss: readers mostly go forward through a directory. */
const BACKWARD_SHARE = 1 / 8;
/** Windows remembered for adapting. */
const RECENT = 16;

/** How one fetched window was used. */
export interface WindowUse {
  start: number;
  end: number;
  /** Compressed bytes of the chunks fetched besides those asked for, and of those asked for since. */
  neighbourBytes: number;
  usedBytes: number;
  grown: boolean;
  /** The window after it has been asked for (see `ahead`). */
  extended: boolean;
}

/** A window whose use does not adapt the layer's window size (a read-ahead, or the chunks a coalesced range fetches between those asked for). */
export function fixedWindow(start: number, end: number, neighbourBytes: number): WindowUse {
  return { start, end, neighbourBytes, usedBytes: 0, grown: true, extended: true };
}

export class Neighbourhood {
  size: number = WINDOW.initial;
  private readonly recent: WindowUse[] = [];

  /**
   * The range to fetch for a miss of blob range [start, end): adapts the size to the last windows,
   * then widens the range over the chunks around it for which `free` holds (not cached, not on their
   * way, not in a buffered window), forward up to the window size and backward a share of it,
   * stopping at the first that is not.
   */
  plan(order: BlobOrder, start: number, end: number, free: (c: ChunkRef) => boolean): WindowUse {
    const near = this.recent.find((w) => start < w.end + this.size && end > w.start - this.size);
    if (near) {
      if (near.usedBytes * 2 >= near.neighbourBytes) this.grow(near); // the reader went on past a window it used
    } else {
      const last = this.recent[this.recent.length - 1];
      if (last && last.usedBytes * 4 < last.neighbourBytes) this.size = Math.max(WINDOW.min, this.size / 2);
    }
    let wStart = start;
    let wEnd = end;
    let neighbourBytes = 0;
    for (let pos = order.positionAt(end); pos < order.length; pos++) {
      if (order.end(pos) - start > this.size || !free(order.chunk(pos))) break;
      neighbourBytes += order.end(pos) - order.start(pos);
      wEnd = order.end(pos);
    }
    for (let pos = order.positionAt(start) - 1; pos >= 0; pos--) {
      if (order.end(pos) > start) continue; // overlaps what was asked for
      if (start - order.start(pos) > this.size * BACKWARD_SHARE || !free(order.chunk(pos))) break;
      neighbourBytes += order.end(pos) - order.start(pos);
      wStart = order.start(pos);
    }
    return this.remember({ start: wStart, end: wEnd, neighbourBytes, usedBytes: 0, grown: false, extended: false });
  }

  /**
   * The window that follows `w`, when a reader has used at least half of `w` and has reached
   * `at`, past its middle: a walk through a directory would otherwise wait for each next window
   * only once it misses at the end of the last one. Undefined when that does not hold, `w` was
   * extended already, or no free chunk follows it.
   */
  ahead(order: BlobOrder, w: WindowUse, at: number, free: (c: ChunkRef) => boolean): WindowUse | undefined {
    if (w.extended || w.usedBytes * 2 < w.neighbourBytes || at < (w.start + w.end) / 2) return undefined;
    w.extended = true;
    let start = -1;
    let end = -1;
    for (let pos = order.positionAt(w.end); pos < order.length; pos++) {
      if (start >= 0 && order.end(pos) - start > this.size) break;
      if (!free(order.chunk(pos))) {
        if (start >= 0) break;
        continue; // cached or on its way already: look further on
      }
      if (start < 0) start = order.start(pos);
      end = order.end(pos);
      if (order.start(pos) - w.end > this.size) break;
    }
    if (start < 0) return undefined;
    return this.remember({ start, end, neighbourBytes: end - start, usedBytes: 0, grown: false, extended: false });
  }

  private remember(w: WindowUse): WindowUse {
    this.recent.push(w);
    if (this.recent.length > RECENT) this.recent.shift();
    return w;
  }

  /** `bytes` of a window's neighbours were asked for. */
  used(w: WindowUse, bytes: number): void {
    w.usedBytes += bytes;
    if (w.usedBytes * 2 >= w.neighbourBytes) this.grow(w);
  }

  private grow(w: WindowUse): void {
    if (w.grown) return;
    w.grown = true;
    this.size = Math.min(WINDOW.max, this.size * 2);
  }
}

/** A window's compressed bytes, arriving or arrived. */
interface Buffered {
  layer: number;
  start: number;
  end: number;
  use: WindowUse;
  lastUsed: number;
  /** The fetch's ticket, if it runs below read priority: a reader waiting for the window promotes it. */
  ticket?: FetchTicket;
  /** The buffer the fetch fills, once its first bytes are in; [0, filled) of it are final. */
  buf?: Buffer;
  filled: number;
  done: boolean;
  /** Misses inside the window waiting for their bytes: byte range relative to `start`. */
  waiters: Array<{ from: number; to: number; resolve: (b: Buffer) => void; reject: (e: Error) => void }>;
}

/** A window's place in the buffer, for the fetch that fills it. */
export interface WindowFill {
  /** Bytes of the window's fetch have arrived: [0, filled) of `buf` (a buffer of the window's length). */
  arrived(buf: Buffer, filled: number): void;
  /** The fetch failed: waiters are rejected and the window leaves the buffer. */
  failed(err: Error): void;
}

/**
 * Compressed bytes of recent windows, bounded in bytes, least recently used out. A window is in the
 * buffer from the moment its fetch starts: a miss inside one still arriving waits for its own bytes
 * instead of fetching them again (a reader moving to the next file while the window streams in).
 */
export class WindowBuffer {
  private readonly windows: Buffered[] = [];
  private total = 0;
  private tick = 0;

  constructor(private readonly maxBytes: number) {}

  /** Registers a window whose fetch is starting. */
  open(layer: number, start: number, end: number, use: WindowUse, ticket?: FetchTicket): WindowFill {
    const w: Buffered = { layer, start, end, use, ticket, lastUsed: ++this.tick, filled: 0, done: false, waiters: [] };
    this.windows.push(w);
    this.total += end - start;
    return {
      arrived: (buf, filled) => {
        w.buf = buf;
        w.filled = filled;
        w.done = filled >= end - start;
        const ready = w.waiters.filter((x) => x.to <= filled);
        w.waiters = w.waiters.filter((x) => x.to > filled);
        for (const x of ready) x.resolve(buf.subarray(x.from, x.to));
        if (w.done) this.evict();
      },
      failed: (err) => {
        for (const x of w.waiters.splice(0)) x.reject(err);
        this.remove(w);
      },
    };
  }

  /** The compressed bytes of `chunk` of `layer` (now, or once they arrive) if a buffered window holds them, and that window's use. */
  find(layer: number, chunk: ChunkRef): { compressed: Buffer | Promise<Buffer>; use: WindowUse; ticket?: FetchTicket } | undefined {
    const w = this.windows.find((x) => x.layer === layer && chunk.start >= x.start && chunk.end <= x.end);
    if (!w) return undefined;
    w.lastUsed = ++this.tick;
    const from = chunk.start - w.start;
    const to = chunk.end - w.start;
    if (w.buf && w.filled >= to) return { compressed: w.buf.subarray(from, to), use: w.use };
    return { compressed: new Promise((resolve, reject) => w.waiters.push({ from, to, resolve, reject })), use: w.use, ticket: w.ticket };
  }

  /** Windows holding `chunk` of `layer` leave the buffer (their bytes did not verify); their waiters get `err`. */
  drop(layer: number, chunk: ChunkRef, err: Error): void {
    for (const w of this.windows.filter((x) => x.layer === layer && chunk.start >= x.start && chunk.end <= x.end)) {
      for (const x of w.waiters.splice(0)) x.reject(err);
      this.remove(w);
    }
  }

  /** Whether a buffered window holds `chunk` of `layer` (without touching its recency). */
  holds(layer: number, chunk: ChunkRef): boolean {
    return this.windows.some((w) => w.layer === layer && chunk.start >= w.start && chunk.end <= w.end);
  }

  /** Least recently used arrived windows out until the buffer is within its bound. */
  private evict(): void {
    while (this.total > this.maxBytes) {
      let oldest: Buffered | undefined;
      for (const w of this.windows) if (w.done && (!oldest || w.lastUsed < oldest.lastUsed)) oldest = w;
      if (!oldest) return;
      this.remove(oldest);
    }
  }

  private remove(w: Buffered): void {
    const at = this.windows.indexOf(w);
    if (at < 0) return;
    this.windows.splice(at, 1);
    this.total -= w.end - w.start;
  }
}
