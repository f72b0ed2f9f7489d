// Warms the caches ahead of reads. First the prioritised part of every layer (a prefetch profile's
// files, the eStargz landmark prefix, the files of --prefetch-list), all layers in parallel, below
// on-demand reads, in the order given. Then the
// background fill: the rest of every layer, one paced request at a time, only when the scheduler
// gives it a turn (after a quiet period without on-demand requests; see fetch-scheduler.ts), in the
// order reads are likely to go next: the layer read most recently first, onwards from where it
// last missed, since blob order is directory order.
import type { ChunkRef } from '../format/toc.js';
import type { ChunkStore } from './chunk-store.js';
import { Priority, SchedulerClosed } from './fetch-scheduler.js';
import type { Progress } from './metrics.js';

const BATCH_BYTES = 8 << 20;

export interface PrefetchLayer {
  /** Chunks to fetch first (already chosen: landmark prefix or listed files). */
  priority: readonly ChunkRef[];
  /** False for layers already local (fetched whole): nothing to fill in. */
  background: boolean;
  prefetch: Progress;
  backgroundProgress: Progress;
}

/**
 * Chunks in the order given (a profile's first-read order), each digest once, cut into batches of
 * about BATCH_BYTES compressed bytes, each batch in blob order so that its ranges coalesce.
 */
function batches(chunks: readonly ChunkRef[]): ChunkRef[][] {
  const seen = new Set<string>();
  const out: ChunkRef[][] = [];
  let bytes = BATCH_BYTES;
  for (const c of chunks) {
    if (c.zeros || c.size === 0 || seen.has(c.digest)) continue;
    seen.add(c.digest);
    if (bytes >= BATCH_BYTES) {
      out.push([]);
      bytes = 0;
    }
    out[out.length - 1]!.push(c);
    bytes += c.end - c.start;
  }
  for (const b of out) b.sort((x, y) => x.start - y.start);
  return out;
}

/** Where the fill of one layer stands. */
interface FillCursor {
  layer: number;
  /** Next position in the layer's blob order to look at. */
  pos: number;
  /** The layer's last on-demand miss the cursor has followed. */
  missTime: number;
}

export class Prefetcher {
  private stopped = false;
  /** Settles when both phases have finished (or stopped). */
  done: Promise<void> = Promise.resolve();

  constructor(
    private readonly layers: readonly PrefetchLayer[],
    private readonly store: ChunkStore,
    private readonly opts: { prefetch: boolean; background: boolean },
  ) {
    for (const l of layers) {
      if (opts.prefetch) l.prefetch.state = 'pending';
      if (opts.background && l.background) l.backgroundProgress.state = 'pending';
    }
  }

  start(): void {
    this.done = this.run();
  }

  stop(): void {
    this.stopped = true;
  }

  private async run(): Promise<void> {
    if (this.opts.prefetch) await Promise.all(this.layers.map((l, i) => this.prefetchLayer(i, l)));
    if (this.opts.background) await this.fill();
  }

  private async prefetchLayer(layer: number, l: PrefetchLayer): Promise<void> {
    const work = batches(l.priority);
    l.prefetch.total = work.reduce((n, b) => n + b.reduce((m, c) => m + c.end - c.start, 0), 0);
    l.prefetch.state = work.length ? 'running' : 'done';
    for (const b of work) {
      if (this.stopped) return;
      await this.store.warm(layer, b, Priority.Prefetch, 'prefetch');
      l.prefetch.done += b.reduce((m, c) => m + c.end - c.start, 0);
    }
    l.prefetch.state = 'done';
  }

  private async fill(): Promise<void> {
    // The layers' blob orders (a sort of every chunk: 2-9 ms for the python image's four layers)
    // on a later turn of the loop: the one the mount comes up in goes on to report it ready.
    await new Promise((resolve) => setImmediate(resolve));
    if (this.stopped) return;
    const cursors: FillCursor[] = [];
    for (const [layer, l] of this.layers.entries()) {
      if (!l.background) continue;
      const order = this.store.orderOf(layer);
      l.backgroundProgress.total = order.totalBytes;
      cursors.push({ layer, pos: 0, missTime: 0 });
    }
    while (!this.stopped) {
      try {
        await this.store.scheduler.backgroundTurn();
      } catch (err) {
        if (err instanceof SchedulerClosed) return;
        throw err;
      }
      const work = this.next(cursors, this.store.scheduler.backgroundSlice);
      if (!work) return;
      this.layers[work.layer]!.backgroundProgress.state = 'running';
      await this.store.warm(work.layer, work.chunks, Priority.Background, 'background fill');
      this.report(work.layer);
    }
  }

  /** A layer's fill progress, from what its blob order has left (reads' chunks count as done). */
  private report(layer: number): void {
    const progress = this.layers[layer]!.backgroundProgress;
    const left = this.store.orderOf(layer).remainingBytes;
    progress.done = progress.total - left;
    if (left === 0) progress.state = 'done';
  }

  /**
   * The next run of uncached chunks (about `budget` compressed bytes, at least one chunk): from the
   * layer that missed most recently, onwards from its last miss. Undefined when every layer is done.
   */
  private next(cursors: FillCursor[], budget: number): { layer: number; chunks: ChunkRef[] } | undefined {
    const byRecency = [...cursors].sort((a, b) => this.store.lastMiss(b.layer).time - this.store.lastMiss(a.layer).time || a.layer - b.layer);
    for (const cur of byRecency) {
      const order = this.store.orderOf(cur.layer);
      const miss = this.store.lastMiss(cur.layer);
      if (miss.offset >= 0 && miss.time !== cur.missTime) {
        cur.missTime = miss.time;
        cur.pos = order.positionAt(miss.offset);
      }
      const chunks: ChunkRef[] = [];
      // Once round the layer from the cursor, wrapping at the end.
      for (let seen = 0; seen < order.length && order.remainingBytes > 0; seen++) {
        const pos = cur.pos % order.length;
        if (pos === 0 && chunks.length > 0) break; // a run does not wrap
        if (order.isMarked(pos)) {
          if (chunks.length > 0) break;
          cur.pos = pos + 1;
          continue;
        }
        const c = order.chunk(pos);
        if (chunks.length > 0 && c.end - chunks[0]!.start > budget) break;
        order.mark(pos);
        cur.pos = pos + 1;
        if (this.store.has(c.digest)) {
          if (chunks.length > 0) break;
          continue;
        }
        chunks.push(c);
      }
      if (chunks.length > 0) return { layer: cur.layer, chunks };
      this.report(cur.layer); // a whole round found nothing left: done
    }
    return undefined;
  }
}
