// Bounded, prioritised blob range requests shared by all layers of a mount. On-demand reads always
// go first; read-ahead and prefetch next; background fill may only use a small share of the slots,
// so it never stands between a reader and the network. Retries belong to the registry client.
import type { BlobSource } from '../blob/source.js';

export enum Priority {
  Read = 0,
  ReadAhead = 1,
  Prefetch = 2,
  Background = 3,
}

interface Waiter {
  priority: Priority;
  start: () => void;
}

export interface FetcherOptions {
  /** Requests in flight at once, over all layers. */
  maxInFlight: number;
  /** Of those, at most this many may be background requests. */
  maxBackground: number;
}

export class Fetcher {
  private inFlight = 0;
  private backgroundInFlight = 0;
  private readonly queues: Waiter[][] = [[], [], [], []];

  constructor(private readonly opts: FetcherOptions = { maxInFlight: 8, maxBackground: 2 }) {}

  /** Bytes [start, end) of `blob`, once a slot of the right priority is free. */
  async fetch(blob: BlobSource, start: number, end: number, priority: Priority): Promise<Buffer> {
    await this.acquire(priority);
    try {
      return await blob.read(start, end - start);
    } finally {
      this.release(priority);
    }
  }

  /** True while requests of a priority above background are waiting or running. */
  get busyWithForeground(): boolean {
    return this.inFlight - this.backgroundInFlight > 0 || this.queues.slice(0, Priority.Background).some((q) => q.length > 0);
  }

  private canStart(priority: Priority): boolean {
    if (this.inFlight >= this.opts.maxInFlight) return false;
    return priority !== Priority.Background || this.backgroundInFlight < this.opts.maxBackground;
  }

  private acquire(priority: Priority): Promise<void> {
    if (this.canStart(priority) && this.queues.every((q, p) => p >= priority || q.length === 0)) {
      this.take(priority);
      return Promise.resolve();
    }
    return new Promise((resolve) => this.queues[priority]!.push({ priority, start: () => resolve() }));
  }

  private take(priority: Priority): void {
    this.inFlight++;
    if (priority === Priority.Background) this.backgroundInFlight++;
  }

  private release(priority: Priority): void {
    this.inFlight--;
    if (priority === Priority.Background) this.backgroundInFlight--;
    for (const queue of this.queues) {
      while (queue.length > 0 && this.canStart(queue[0]!.priority)) {
        const w = queue.shift()!;
        this.take(w.priority);
        w.start();
      }
      if (queue.length > 0 && this.inFlight >= this.opts.maxInFlight) return;
    }
  }
}
