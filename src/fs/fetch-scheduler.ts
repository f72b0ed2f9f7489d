// The one place that knows priorities and pacing of blob range requests, for all layers of a mount.
// On-demand reads go first; read-ahead, prefetch and speculative fetches next, in that order. The background fill never slows the
// workload: it waits for a quiet period without on-demand requests, sends one request at a time,
// each small enough to cross the link in about SLICE_MS at the measured rate (so an on-demand
// request never waits behind more than that), and optionally keeps under a rate bound.
// Retries belong to the registry client.
import type { BlobSource, ByteRange, OnData, OnRange } from '../blob/source.js';

export enum Priority {
  Read = 0,
  ReadAhead = 1,
  /** What the mount knows will be read: the landmark, a prefetch list or profile. */
  Prefetch = 2,
  /** What a heuristic guesses will be read (Python's imports): behind what is known, and not beside it. */
  Speculative = 3,
  Background = 4,
}

/** A blob that reads several ranges in one request. */
export type MultiRangeBlob = BlobSource & Required<Pick<BlobSource, 'readRanges'>>;

export interface SchedulerOptions {
  /** Requests in flight at once, over all layers (background requests come on top: at most one). */
  maxInFlight: number;
  /** The background fill starts this long after the last on-demand request. */
  quietMs: number;
  /** Background bytes per second at most (0: paced to the link only). */
  backgroundRate: number;
}

export const DEFAULT_SCHEDULER: SchedulerOptions = { maxInFlight: 8, quietMs: 5000, backgroundRate: 0 };

/** A background request crosses the link in about this long. */
const SLICE_MS = 50;
const SLICE_MIN = 64 << 10;
const SLICE_MAX = 4 << 20;
/** Requests smaller than this say little about the link's rate. */
const RATE_SAMPLE_MIN = 32 << 10;
const POLL_MS = 20;

export class SchedulerClosed extends Error {}

/**
 * Handed in with a prefetch or background fetch: promoting it moves the fetch ahead of its priority
 * (a reader has come to wait for its bytes), so a read never waits behind the quiet period or
 * behind other reads' queue for a chunk that lower-priority work happened to start on.
 */
export class FetchTicket {
  urgent = false;
  private onUrgent?: () => void;

  promote(): void {
    if (this.urgent) return;
    this.urgent = true;
    this.onUrgent?.();
  }

  /** Called once on promotion (the scheduler's hook for a fetch that is waiting now). */
  whenUrgent(f: (() => void) | undefined): void {
    this.onUrgent = f;
  }
}

interface Waiter {
  start: () => void;
}

export class FetchScheduler {
  private inFlight = 0;
  /** Read and ReadAhead requests running. */
  private onDemand = 0;
  private backgroundInFlight = 0;
  /** Prefetch requests waiting or running: speculative ones wait until there are none (a guess is not worth link time that known files need). */
  private prefetching = 0;
  private readonly queues: Waiter[][] = [[], [], [], []];
  /** When the last on-demand request started or ended (mount time at first: the quiet period holds from there). */
  private lastOnDemand = performance.now();
  private nextBackgroundAt = 0;
  /** Bytes per second over the link, smoothed; 0 until measured. */
  private rate = 0;
  private closed = false;
  /** Requests sent, by the priority they went at (a promoted one counts as a read). */
  readonly sent: number[] = [0, 0, 0, 0, 0];

  constructor(private readonly opts: SchedulerOptions = DEFAULT_SCHEDULER) {}

  /**
   * Bytes [start, end) of `blob`, once the priority's turn has come. A background range larger than
   * the paced size is fetched as several requests, each waiting for its turn.
   */
  async fetch(blob: BlobSource, start: number, end: number, priority: Priority, onData?: OnData, ticket?: FetchTicket): Promise<Buffer> {
    if (ticket?.urgent) priority = Priority.Read;
    if (priority === Priority.Background) return this.fetchBackground(blob, start, end, ticket);
    return this.inTurn(priority, ticket, () => blob.read(start, end - start, onData));
  }

  /**
   * Several ranges of `blob` as one request (its `readRanges`: a multi-range GET), once the
   * priority's turn has come; `onRange` is told of each range as it arrives. Not for background
   * work, which goes in paced slices.
   */
  fetchRanges(blob: MultiRangeBlob, ranges: readonly ByteRange[], priority: Priority, onRange: OnRange, ticket?: FetchTicket): Promise<Buffer[]> {
    return this.inTurn(ticket?.urgent ? Priority.Read : priority, ticket, () => blob.readRanges(ranges, onRange));
  }

  /** Runs one request of `priority` in its turn, in one of the places. */
  private async inTurn<T extends Buffer | Buffer[]>(priority: Priority, ticket: FetchTicket | undefined, read: () => Promise<T>): Promise<T> {
    if (priority === Priority.Prefetch) this.prefetching++;
    await this.acquire(priority, ticket);
    const onDemand = priority <= Priority.ReadAhead;
    if (onDemand) this.onDemand++;
    this.sent[ticket?.urgent ? Priority.Read : priority]++;
    try {
      return await this.timed(read);
    } finally {
      if (onDemand) {
        this.onDemand--;
        this.lastOnDemand = performance.now();
      }
      if (priority === Priority.Prefetch) this.prefetching--;
      this.release();
    }
  }

  /** Resolves once no on-demand request has run or waited for `ms` (at once when closed); its timers do not keep the process alive. */
  async quiet(ms: number): Promise<void> {
    for (;;) {
      if (this.closed) return;
      const busy = this.onDemand > 0 || this.queues[Priority.Read]!.length > 0 || this.queues[Priority.ReadAhead]!.length > 0;
      const wait = busy ? POLL_MS : this.lastOnDemand + ms - performance.now();
      if (wait <= 0) return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(wait, POLL_MS * 5)).unref());
    }
  }

  /** The most bytes one background request may ask for now. */
  get backgroundSlice(): number {
    let slice = (this.rate * SLICE_MS) / 1000;
    if (this.opts.backgroundRate > 0) slice = Math.min(slice || Infinity, (this.opts.backgroundRate * SLICE_MS) / 1000);
    return Math.floor(Math.min(SLICE_MAX, Math.max(SLICE_MIN, slice)));
  }

  /**
   * Resolves when the background fill may send its next request: nothing on-demand running or
   * queued, the quiet period passed, no background request running, the rate bound kept.
   * Rejects with SchedulerClosed once the scheduler is closed.
   */
  async backgroundTurn(ticket?: FetchTicket): Promise<void> {
    for (;;) {
      if (this.closed) throw new SchedulerClosed('fetch scheduler closed');
      if (ticket?.urgent) return;
      const now = performance.now();
      const busy = this.onDemand > 0 || this.backgroundInFlight > 0 || this.queues.some((q) => q.length > 0);
      const wait = busy ? POLL_MS : Math.max(this.lastOnDemand + this.opts.quietMs - now, this.nextBackgroundAt - now);
      if (wait <= 0) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(wait, POLL_MS * 5));
        ticket?.whenUrgent(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Stops background work: turns waited for reject, and no new ones are given. */
  close(): void {
    this.closed = true;
  }

  private async fetchBackground(blob: BlobSource, start: number, end: number, ticket?: FetchTicket): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let at = start; at < end; ) {
      await this.backgroundTurn(ticket);
      if (ticket?.urgent) {
        parts.push(await this.fetch(blob, at, end, Priority.Read));
        break;
      }
      const n = Math.min(end - at, this.backgroundSlice);
      this.backgroundInFlight++;
      this.sent[Priority.Background]++;
      try {
        parts.push(await this.timed(() => blob.read(at, n)));
      } finally {
        this.backgroundInFlight--;
      }
      if (this.opts.backgroundRate > 0) this.nextBackgroundAt = performance.now() + (n * 1000) / this.opts.backgroundRate;
      at += n;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** Runs a read and learns the link's rate from it. */
  private async timed<T extends Buffer | Buffer[]>(read: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    const out = await read();
    const ms = performance.now() - t0;
    const bytes = Array.isArray(out) ? out.reduce((n, b) => n + b.length, 0) : out.length;
    if (bytes >= RATE_SAMPLE_MIN && ms > 0) {
      const sample = (bytes * 1000) / ms;
      this.rate = this.rate === 0 ? sample : 0.7 * this.rate + 0.3 * sample;
    }
    return out;
  }

  private acquire(priority: Priority, ticket?: FetchTicket): Promise<void> {
    if (this.inFlight < this.opts.maxInFlight && this.queues.every((q, p) => p >= priority || q.length === 0) && !this.heldBack(priority)) {
      this.inFlight++;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const w: Waiter = { start: resolve };
      this.queues[priority]!.push(w);
      ticket?.whenUrgent(() => {
        const q = this.queues[priority]!;
        const at = q.indexOf(w);
        if (at < 0) return; // already started
        q.splice(at, 1);
        this.queues[Priority.Read]!.push(w);
        this.dispatch(); // a held-back guess may start at once: places may be free
      });
    });
  }

  /** Whether requests of `priority` must wait although a place is free. */
  private heldBack(priority: Priority): boolean {
    return priority === Priority.Speculative && this.prefetching > 0;
  }

  private release(): void {
    this.inFlight--;
    this.dispatch();
  }

  /** Starts waiting requests, in priority order, while places are free. */
  private dispatch(): void {
    for (const [priority, queue] of this.queues.entries()) {
      if (this.heldBack(priority)) continue;
      while (queue.length > 0 && this.inFlight < this.opts.maxInFlight) {
        this.inFlight++;
        queue.shift()!.start();
      }
    }
  }
}
