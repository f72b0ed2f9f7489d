// The chunk path of one layer: which chunks cover a read, and getting them through
// memory LRU → disk cache → one coalesced fetch → decode + verify. Concurrent requests for the same
// chunk share one promise (dedupe by digest across all layers of the mount). A chunk that cannot be
// fetched or verified fails only the reads that need it, with EIO, logged once per layer and path.
import { coalesceRanges } from '../blob/coalesce.js';
import type { BlobSource } from '../blob/source.js';
import { ChunkVerifyError, type ChunkRef, type FileEntry, type LayerToc } from '../format/toc.js';
import type { Digest } from '../oci/digest.js';
import type { ChunkCache } from './chunk-cache.js';
import { FsError } from './errors.js';
import { Priority, type Fetcher } from './fetcher.js';
import type { LayerMetrics } from './metrics.js';

/** What every layer reader of a mount shares. */
export interface ChunkPath {
  cache: ChunkCache;
  fetcher: Fetcher;
  /** Decoded chunks being loaded right now, by digest. */
  inflight: Map<Digest, Promise<Buffer>>;
  log(message: string): void;
}

/** A layer as the chunk path sees it. */
export interface ChunkLayer {
  /** Names the layer in log lines (its digest). */
  name: string;
  decodeChunk: LayerToc['decodeChunk'];
  blob: BlobSource;
  metrics: LayerMetrics;
  /** False when the blob is already a local file (a whole-fetched layer): no point copying chunks to the disk cache. */
  diskCache: boolean;
}

/** A chunk being loaded: its promise stays in `inflight` until it is on disk too, so no one refetches it meanwhile. */
interface Pending {
  chunk: ChunkRef;
  promise: Promise<Buffer>;
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

const COALESCE = {
  [Priority.Read]: { maxGap: 64 << 10, maxSize: 4 << 20 },
  [Priority.ReadAhead]: { maxGap: 256 << 10, maxSize: 8 << 20 },
  [Priority.Prefetch]: { maxGap: 256 << 10, maxSize: 8 << 20 },
  [Priority.Background]: { maxGap: 256 << 10, maxSize: 8 << 20 },
};

/** Index of the chunk containing file offset `off` (chunks cover [0, size) in order). */
export function chunkIndexAt(chunks: readonly ChunkRef[], off: number): number {
  let lo = 0;
  let hi = chunks.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (chunks[mid]!.fileOffset <= off) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export class ChunkReader {
  private readonly loggedFailures = new Set<string>();

  constructor(
    readonly layer: ChunkLayer,
    private readonly path: ChunkPath,
  ) {}

  /** `length` bytes of `entry` at `offset` (fewer at end of file). */
  async read(entry: FileEntry, offset: number, length: number, priority = Priority.Read): Promise<Buffer> {
    const end = Math.min(entry.size, offset + length);
    if (offset >= end || entry.chunks.length === 0) return Buffer.alloc(0);
    const first = chunkIndexAt(entry.chunks, offset);
    const last = chunkIndexAt(entry.chunks, end - 1);
    const chunks = entry.chunks.slice(first, last + 1);
    let datas: Buffer[];
    try {
      datas = await this.load(chunks, priority, true);
    } catch (err) {
      this.logFailure(entry.path, err as Error);
      throw new FsError('EIO', `${this.layer.name}: ${entry.path}: ${(err as Error).message}`);
    }
    if (datas.length === 1) {
      const c = chunks[0]!;
      return datas[0]!.subarray(offset - c.fileOffset, end - c.fileOffset);
    }
    const out = Buffer.allocUnsafe(end - offset);
    datas.forEach((d, i) => {
      const c = chunks[i]!;
      const from = Math.max(offset, c.fileOffset);
      const to = Math.min(end, c.fileOffset + c.size);
      d.copy(out, from - offset, from - c.fileOffset, to - c.fileOffset);
    });
    return out;
  }

  /** Loads chunks of `entry` overlapping [from, to) into the caches without waiting for them. */
  readAhead(entry: FileEntry, from: number, to: number): void {
    if (from >= to || entry.chunks.length === 0) return;
    const chunks = entry.chunks.slice(chunkIndexAt(entry.chunks, from), chunkIndexAt(entry.chunks, Math.min(to, entry.size) - 1) + 1);
    // A failure here surfaces (and is logged) when the reader reaches that chunk.
    this.load(chunks, Priority.ReadAhead, true).catch(() => {});
  }

  /**
   * Starts moving `chunks` that the disk cache holds into memory; chunks that would have to be
   * fetched are left alone (this never reaches the registry, unless a disk entry turns out damaged).
   */
  preloadFromDisk(chunks: readonly ChunkRef[]): void {
    const { cache, inflight } = this.path;
    if (!this.layer.diskCache) return;
    const ready = chunks.filter((c) => !c.zeros && c.size > 0 && cache.onDisk(c.digest) && !cache.inMemory(c.digest) && !inflight.has(c.digest));
    if (ready.length) this.load(ready, Priority.ReadAhead, true).catch(() => {}); // a failure surfaces when the file is read
  }

  /**
   * Counts [from, to) of `entry` as served; `served` holds the count per chunk (the caller's, one per
   * file). A chunk all of whose bytes have been served leaves the memory cache: the kernel keeps what
   * it read in its page cache (kernel_cache) and does not ask for it again, so holding the chunk too
   * would only double the memory a large read takes. Counting, not tracking where a run has got to,
   * because the kernel sends a sequential read's requests in parallel and out of order.
   */
  letGo(entry: FileEntry, served: Uint32Array, from: number, to: number): void {
    const { chunks } = entry;
    if (from >= to || chunks.length === 0) return;
    for (let i = chunkIndexAt(chunks, from); i < chunks.length && chunks[i]!.fileOffset < to; i++) {
      const c = chunks[i]!;
      served[i]! += Math.min(to, c.fileOffset + c.size) - Math.max(from, c.fileOffset);
      if (served[i]! >= c.size) {
        served[i] = 0;
        this.path.cache.dropMemory(c.digest);
      }
    }
  }

  /**
   * Makes sure the chunks are cached (prefetch, background fill). Resolves with the compressed bytes
   * they cover; failures are logged and counted, not thrown.
   */
  async warm(chunks: readonly ChunkRef[], priority: Priority, path: string): Promise<void> {
    try {
      await this.load(chunks, priority, priority !== Priority.Background);
    } catch (err) {
      this.logFailure(path, err as Error);
    }
  }

  /** The decoded bytes of each chunk, in order. */
  async load(chunks: readonly ChunkRef[], priority: Priority, keepInMemory: boolean): Promise<Buffer[]> {
    const { cache, inflight } = this.path;
    const results: Array<Buffer | Promise<Buffer>> = [];
    const missing: Pending[] = [];
    for (const chunk of chunks) {
      if (chunk.zeros || chunk.size === 0) {
        results.push(Buffer.alloc(chunk.size));
        continue;
      }
      const hit = cache.getMemory(chunk.digest) ?? inflight.get(chunk.digest);
      if (hit) {
        results.push(hit);
        continue;
      }
      let resolve!: (b: Buffer) => void;
      let reject!: (e: Error) => void;
      const p = new Promise<Buffer>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      p.catch(() => {}); // rejections are delivered through `results`; avoid unhandled noise for dedupe waiters
      inflight.set(chunk.digest, p);
      missing.push({ chunk, promise: p, resolve, reject });
      results.push(p);
    }
    if (missing.length > 0) {
      this.fill(missing, priority, keepInMemory).catch((err: Error) => missing.forEach((m) => this.settle(m, err)));
    }
    return Promise.all(results);
  }

  /** Rejects (if `err`) and forgets a pending chunk; resolving happened earlier, as soon as the bytes were there. */
  private settle(m: Pending, err?: Error): void {
    if (err) m.reject(err);
    if (this.path.inflight.get(m.chunk.digest) === m.promise) this.path.inflight.delete(m.chunk.digest);
  }

  private async fill(
    missing: Pending[],
    priority: Priority,
    keepInMemory: boolean,
  ): Promise<void> {
    const { cache, fetcher } = this.path;
    const toFetch: typeof missing = [];
    if (this.layer.diskCache) {
      await Promise.all(
        missing.map(async (m) => {
          const data = await cache.getDisk(m.chunk.digest, m.chunk.size);
          if (!data) return toFetch.push(m);
          if (keepInMemory) cache.putMemory(m.chunk.digest, data);
          m.resolve(data);
          this.settle(m);
        }),
      );
    } else {
      toFetch.push(...missing);
    }
    if (toFetch.length === 0) return;
    const spans = toFetch.map((m) => ({ start: m.chunk.start, end: m.chunk.end, m }));
    await Promise.all(
      coalesceRanges(spans, COALESCE[priority]).map(async (group) => {
        let bytes: Buffer;
        try {
          bytes = await fetcher.fetch(this.layer.blob, group.start, group.end, priority);
        } catch (err) {
          for (const { m } of group.members) this.settle(m, err as Error);
          return;
        }
        await Promise.all(
          group.members.map(async ({ m }) => {
            try {
              const data = await this.layer.decodeChunk(m.chunk, bytes.subarray(m.chunk.start - group.start, m.chunk.end - group.start));
              if (keepInMemory) cache.putMemory(m.chunk.digest, data);
              m.resolve(data);
              if (this.layer.diskCache) await cache.putDisk(m.chunk.digest, data).catch((err) => this.path.log(`disk cache: ${(err as Error).message}`));
              this.settle(m);
            } catch (err) {
              if (err instanceof ChunkVerifyError) this.layer.metrics.verificationFailures++;
              this.settle(m, err as Error);
            }
          }),
        );
      }),
    );
  }

  private logFailure(path: string, err: Error): void {
    if (this.loggedFailures.has(path)) return;
    this.loggedFailures.add(path);
    this.path.log(`layer ${this.layer.name}: /${path}: ${err.message}`);
  }
}
