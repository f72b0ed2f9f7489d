// Warms the caches ahead of reads: first the prioritised part of every layer (eStargz landmark
// prefix, or the files of --prefetch-list), all layers in parallel; then the rest of every layer in
// the background, batch by batch, pausing whenever on-demand reads are waiting (Fetcher priorities
// also cap background requests to a small share of the connections).
import type { ChunkRef } from '../format/toc.js';
import type { ChunkReader } from './chunk-reader.js';
import type { EntryTable } from './entry-table.js';
import { Priority, type Fetcher } from './fetcher.js';
import type { Progress } from './metrics.js';

const BATCH_BYTES = 8 << 20;
const YIELD_MS = 20;

export interface PrefetchLayer {
  reader: ChunkReader;
  entries: EntryTable;
  /** Chunks to fetch first (already chosen: landmark prefix or listed files). */
  priority: readonly ChunkRef[];
  /** False for layers already local (fetched whole): nothing to fill in. */
  background: boolean;
  prefetch: Progress;
  backgroundProgress: Progress;
}

interface Batch {
  chunks: ChunkRef[];
  bytes: number;
  path: string;
}

/** Chunks in blob order, each digest once, cut into batches of about BATCH_BYTES compressed bytes. */
function batches(items: Array<{ chunk: ChunkRef; path: string }>): Batch[] {
  const seen = new Set<string>();
  const sorted = items.filter(({ chunk }) => !chunk.zeros && chunk.size > 0 && !seen.has(chunk.digest) && seen.add(chunk.digest)).sort((a, b) => a.chunk.start - b.chunk.start);
  const out: Batch[] = [];
  let cur: Batch | undefined;
  for (const { chunk, path } of sorted) {
    if (!cur || cur.bytes >= BATCH_BYTES) out.push((cur = { chunks: [], bytes: 0, path }));
    cur.chunks.push(chunk);
    cur.bytes += chunk.end - chunk.start;
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Prefetcher {
  private stopped = false;
  /** Settles when both phases have finished (or stopped). */
  done: Promise<void> = Promise.resolve();

  constructor(
    private readonly layers: readonly PrefetchLayer[],
    private readonly fetcher: Fetcher,
    private readonly opts: { prefetch: boolean; background: boolean },
  ) {}

  start(): void {
    this.done = this.run();
  }

  stop(): void {
    this.stopped = true;
  }

  private async run(): Promise<void> {
    if (this.opts.prefetch) {
      await Promise.all(
        this.layers.map((l) => {
          const items = l.priority.map((chunk) => ({ chunk, path: 'prefetch' }));
          return this.drain(l, batches(items), l.prefetch, Priority.Prefetch);
        }),
      );
    }
    if (this.opts.background) {
      await Promise.all(
        this.layers.filter((l) => l.background).map((l) => this.drain(l, batches(l.entries.chunksWithPaths()), l.backgroundProgress, Priority.Background)),
      );
    }
  }

  private async drain(l: PrefetchLayer, work: Batch[], progress: Progress, priority: Priority): Promise<void> {
    progress.total = work.reduce((n, b) => n + b.bytes, 0);
    progress.state = work.length ? 'running' : 'done';
    for (const b of work) {
      if (this.stopped) return;
      while (priority === Priority.Background && this.fetcher.busyWithForeground && !this.stopped) await sleep(YIELD_MS);
      await l.reader.warm(b.chunks, priority, b.path);
      progress.done += b.bytes;
    }
    progress.state = 'done';
  }
}
