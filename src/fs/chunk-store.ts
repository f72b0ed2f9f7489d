// The chunk path of a mount, one call per hop: `get(layer, chunks, priority)` gives decoded, verified
// chunks from memory LRU → buffered neighbourhood windows → disk cache → a fetch through the
// scheduler → decode + verify. It owns in-flight dedupe (one load per digest across all layers),
// coalescing, neighbourhood windows (a miss brings the free chunks around it in the same request,
// kept compressed until asked for; see neighbourhood.ts) and the disk writes, which `close` waits
// for. A chunk is handed out as soon as its own bytes have arrived and verified, before the rest of
// its request. A chunk that cannot be fetched or verified fails only the gets that need it.
import { coalesceRanges, type CoalescedRange, type Span } from '../blob/coalesce.js';
import { limiter } from '../blob/limiter.js';
import type { BlobSource } from '../blob/source.js';
import { ChunkVerifyError, type ChunkRef, type LayerToc } from '../format/toc.js';
import type { Digest } from '../oci/digest.js';
import { BlobOrder } from './blob-order.js';
import type { ChunkCache } from './chunk-cache.js';
import type { EntryTable } from './entry-table.js';
import { FsError } from './errors.js';
import { FetchTicket, Priority, type FetchScheduler, type MultiRangeBlob } from './fetch-scheduler.js';
import type { LayerMetrics } from './metrics.js';
import { fixedWindow, Neighbourhood, WindowBuffer, type WindowUse } from './neighbourhood.js';

/** A layer as the chunk store sees it. */
export interface StoreLayer {
  /** Names the layer in log lines (its digest). */
  name: string;
  decodeChunk: LayerToc['decodeChunk'];
  blob: BlobSource;
  metrics: LayerMetrics;
  entries: EntryTable;
  /**
   * True for a blob in a registry: chunks go to the disk cache and misses fetch neighbourhood
   * windows. False for a blob already local (a whole-fetched layer): nothing to gain from either.
   */
  remote: boolean;
}

/** What the store keeps per layer. */
interface LayerState extends StoreLayer {
  index: number;
  order?: BlobOrder;
  neighbourhood: Neighbourhood;
  /** Blob offset and time of the last on-demand miss (-1: none yet): where reading goes on. */
  lastMissAt: number;
  lastMissTime: number;
  /** Loads started in this turn of the event loop, to be sent together (see `startFill`): prefetches, and read-ahead with guesses. */
  gathered: Map<'known' | 'other', { missing: Pending[]; priority: Priority }>;
}

/** A chunk being loaded: its promise stays in `inflight` until it is on disk too, so no one refetches it meanwhile. */
interface Pending {
  chunk: ChunkRef;
  keepInMemory: boolean;
  promise: Promise<Buffer>;
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

/** A chunk to fetch, as a span of its blob. */
interface PendingSpan extends Span {
  m: Pending;
}

/** Receives one range of a request (see `receiver`). */
interface Receiver extends Span {
  /** [0, filled) of `buf`, the range's bytes from its start, are in. */
  arrived: (buf: Buffer, filled: number) => void;
  /** The request failed: the chunks not yet in fail with `err`. */
  failed: (err: Error) => void;
  /** Resolves once every chunk in has been decoded and handed out (or failed). */
  done: () => Promise<void>;
}

/** Compressed bytes of neighbourhood windows kept for later misses (besides the memory cache). */
const WINDOW_BUFFER_BYTES = 32 << 20;
/**
 * Disk-cache writes under way at once. Each is four thread-pool operations (open, write, close,
 * rename); unbounded, a cold walk of small files filled the pool with them and every read's decode
 * (gunzip, sha256: the pool too) waited behind them.
 */
const DISK_WRITES = 2;

/** What is loaded, verified and cached for a chunk: the chunk itself, or the unit it is a slice of. */
function unitOf(chunk: ChunkRef): ChunkRef {
  return chunk.unitSize === undefined ? chunk : { ...chunk, fileOffset: 0, size: chunk.unitSize, innerOffset: 0 };
}

/** The chunk's bytes out of what `unitOf` loaded. */
function sliceOf(chunk: ChunkRef, loaded: Buffer | Promise<Buffer>): Buffer | Promise<Buffer> {
  if (chunk.unitSize === undefined) return loaded;
  if (loaded instanceof Promise) return loaded.then((b) => sliceOf(chunk, b));
  // Verified bytes under the same digest are the same bytes: another length means this chunk's index lies about its span.
  if (loaded.length !== chunk.unitSize) return Promise.reject(new ChunkVerifyError(`unit ${chunk.digest} has ${loaded.length} bytes, not ${chunk.unitSize}`));
  return loaded.subarray(chunk.innerOffset, chunk.innerOffset + chunk.size);
}

/**
 * How far apart the ranges of one load may be and still go as one request (the bytes between are
 * kept as a window, see fetchGroup). Wider gaps for Python's guessed imports cost more than they
 * save: numpy + pandas at 20 ms / 100 Mbit/s, 3 interleaved samples each, 256 KiB: 148 requests,
 * 31 MB; 1 MiB: 100 requests, 34 MB, and python's light import fetched 8.0 MB instead of 5.9 MB and
 * ran 0.16 s longer; 1 MiB only while half the range is wanted: 132-142 requests, no faster; 4 MiB:
 * 62 requests, 50 MB, ~1 s slower (the link's time counts, not the requests').
 */
const COALESCE = {
  [Priority.Read]: { maxGap: 64 << 10, maxSize: 4 << 20 },
  [Priority.ReadAhead]: { maxGap: 256 << 10, maxSize: 8 << 20 },
  [Priority.Prefetch]: { maxGap: 256 << 10, maxSize: 8 << 20 },
  [Priority.Speculative]: { maxGap: 256 << 10, maxSize: 8 << 20 },
  [Priority.Background]: { maxGap: 256 << 10, maxSize: 8 << 20 },
};

/** Bounds of one multi-range request (see `requestsOf`): a range over maxBytes goes alone. */
const MULTI_RANGE = { maxBytes: 8 << 20, maxRanges: 32 };

/** `fetchAhead`'s requests: about 40 ms of a 100 Mbit/s link each, and the unwanted bytes they fetch rather than split. */
const AHEAD_SLICE = 512 << 10;
const AHEAD_GAP = 256 << 10;

export class ChunkStore {
  private readonly layers: LayerState[];
  private readonly inflight = new Map<Digest, Promise<Buffer>>();
  /** Tickets of the prefetch and background loads in `inflight`: a reader waiting for one promotes it. */
  private readonly tickets = new Map<Digest, FetchTicket>();
  private readonly windows = new WindowBuffer(WINDOW_BUFFER_BYTES);
  private readonly diskWrites = new Set<Promise<void>>();
  /** Runs a write in one of the DISK_WRITES places. */
  private readonly writeSlot = limiter(DISK_WRITES);
  private readonly loggedFailures = new Set<string>();
  private closed = false;

  constructor(
    private readonly cache: ChunkCache,
    readonly scheduler: FetchScheduler,
    layers: readonly StoreLayer[],
    private readonly log: (message: string) => void,
  ) {
    this.layers = layers.map((l, index) => ({ ...l, index, neighbourhood: new Neighbourhood(), lastMissAt: -1, lastMissTime: 0, gathered: new Map() }));
  }

  /**
   * The decoded bytes of each chunk of layer `layer`, in order. Background gets do not fill the
   * memory cache. The free chunks of `along` (a read-ahead) are loaded in the same requests as the
   * chunks asked for, not waited for, and are not neighbours of their window.
   */
  get(layer: number, chunks: readonly ChunkRef[], priority: Priority, along: readonly ChunkRef[] = []): Promise<Buffer[]> {
    return Promise.all(this.load(layer, chunks, priority, along));
  }

  /** Like `get`, a promise per chunk, each settled as soon as that chunk's own bytes are in. */
  getEach(layer: number, chunks: readonly ChunkRef[], priority: Priority): Array<Promise<Buffer>> {
    return this.load(layer, chunks, priority, []).map((r) => Promise.resolve(r));
  }

  private load(layer: number, chunks: readonly ChunkRef[], priority: Priority, along: readonly ChunkRef[]): Array<Buffer | Promise<Buffer>> {
    const ls = this.layers[layer]!;
    const results: Array<Buffer | Promise<Buffer>> = [];
    const missing: Pending[] = [];
    for (const chunk of along) if (!chunk.zeros && chunk.size > 0 && !this.cache.inMemory(chunk.digest) && !this.inflight.has(chunk.digest)) missing.push(this.pend(unitOf(chunk), true));
    for (const chunk of chunks) {
      if (chunk.zeros || chunk.size === 0) {
        results.push(Buffer.alloc(chunk.size));
        continue;
      }
      const hit = this.cache.getMemory(chunk.digest) ?? this.inflight.get(chunk.digest);
      if (hit) {
        if (priority <= Priority.ReadAhead) this.tickets.get(chunk.digest)?.promote();
        results.push(sliceOf(chunk, hit));
        continue;
      }
      const m = this.pend(unitOf(chunk), priority !== Priority.Background);
      missing.push(m);
      results.push(sliceOf(chunk, m.promise));
    }
    if (missing.length > 0) this.startFill(ls, missing, priority);
    return results;
  }

  /**
   * Sends a load's missing chunks. A read's go at once and the background fill's alone, in paced
   * slices; the other loads of a layer started in the same turn of the event loop go together, as
   * one load at the most urgent of their priorities, so that their ranges share requests (a mount's
   * loader, libc, program and first modules; the libraries and modules one file names). Prefetches
   * gather only with prefetches: guesses wait while known files are fetched (see the scheduler).
   */
  private startFill(ls: LayerState, missing: Pending[], priority: Priority): void {
    const send = (ms: Pending[], p: Priority) => this.fill(ls, ms, p).catch((err: Error) => ms.forEach((m) => this.settle(m, err)));
    if (priority === Priority.Read || priority === Priority.Background) return void send(missing, priority);
    const kind = priority === Priority.Prefetch ? 'known' : 'other';
    const open = ls.gathered.get(kind);
    if (open) {
      open.missing.push(...missing);
      open.priority = Math.min(open.priority, priority);
      return;
    }
    const gathered = { missing: [...missing], priority };
    ls.gathered.set(kind, gathered);
    setImmediate(() => {
      ls.gathered.delete(kind);
      void send(gathered.missing, gathered.priority);
    });
  }

  /** Like `get`, for warming the caches: failures are logged (once per `what`), not thrown. */
  async warm(layer: number, chunks: readonly ChunkRef[], priority: Priority, what: string): Promise<void> {
    try {
      await this.get(layer, chunks, priority);
    } catch (err) {
      if (!this.closed) this.logFailure(layer, what, err as Error);
    }
  }

  /** An EIO for a read of `path` that failed with `err`, logged once per layer and path. */
  readFailure(layer: number, path: string, err: Error): FsError {
    this.logFailure(layer, `/${path}`, err);
    return new FsError('EIO', `${this.layers[layer]!.name}: ${path}: ${err.message}`);
  }

  /**
   * Starts moving `chunks` that the disk cache holds into memory; chunks that would have to be
   * fetched are left alone (this never reaches the registry, unless a disk entry turns out damaged).
   */
  preloadFromDisk(layer: number, chunks: readonly ChunkRef[]): void {
    if (!this.layers[layer]!.remote) return;
    const ready = chunks.filter((c) => !c.zeros && c.size > 0 && this.cache.onDisk(c.digest) && !this.cache.inMemory(c.digest) && !this.inflight.has(c.digest));
    if (ready.length) this.get(layer, ready, Priority.ReadAhead).catch(() => {}); // a failure surfaces when the file is read
  }

  /**
   * The chunk leaves the memory cache (its reader has all of it: the kernel keeps the pages), unless
   * it is part of a shared unit: the other files of a span are likely read next.
   */
  release(chunk: ChunkRef): void {
    if (chunk.unitSize === undefined || chunk.size === chunk.unitSize) this.cache.dropMemory(chunk.digest);
  }

  /** Whether reading `chunk` of `layer` now would send a request: a registry blob's chunk neither cached, nor on its way, nor in a buffered window. */
  wouldFetch(layer: number, chunk: ChunkRef): boolean {
    const ls = this.layers[layer]!;
    return ls.remote && !chunk.zeros && chunk.size > 0 && this.free(ls, chunk);
  }

  /**
   * Fetches the free chunks among `chunks` of `layer` into the window buffer at read-ahead
   * priority, not decoded until asked for (as a neighbourhood window, without adapting the layer's
   * window size). One request of at most AHEAD_SLICE at a time, in blob order, so that a read never
   * waits behind more than one of them on the link; a read of a chunk whose request has not started
   * fetches it itself, and later requests skip what has come meanwhile.
   */
  fetchAhead(layer: number, chunks: readonly ChunkRef[]): void {
    const ls = this.layers[layer]!;
    if (!ls.remote) return;
    const free = chunks.filter((c) => this.wouldFetch(layer, c));
    void this.fetchSlices(ls, coalesceRanges(free, { maxGap: AHEAD_GAP, maxSize: AHEAD_SLICE }));
  }

  private async fetchSlices(ls: LayerState, slices: ReadonlyArray<{ members: ChunkRef[] }>): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve)); // after the request of the miss that led here
    for (const { members } of slices) {
      const free = members.filter((c) => this.free(ls, c));
      if (this.closed || free.length === 0) continue;
      const start = free[0]!.start;
      const end = Math.max(...free.map((c) => c.end));
      await this.fetchWindow(ls, fixedWindow(start, end, end - start));
    }
  }

  /** Whether the chunk is cached or on its way (not counting buffered windows), without counting a hit or miss. */
  has(digest: Digest): boolean {
    return this.cache.inMemory(digest) || this.inflight.has(digest) || this.cache.onDisk(digest);
  }

  /** The layer's chunks in blob order (built on first use), for windows and the background fill. */
  orderOf(layer: number): BlobOrder {
    const ls = this.layers[layer]!;
    return (ls.order ??= new BlobOrder(ls.entries));
  }

  /** Where and when the layer last missed on demand (offset -1: never). */
  lastMiss(layer: number): { offset: number; time: number } {
    const ls = this.layers[layer]!;
    return { offset: ls.lastMissAt, time: ls.lastMissTime };
  }

  /** Neighbourhood window size of a layer now, in compressed bytes (`starling stats`). */
  windowOf(layer: number): number {
    return this.layers[layer]!.neighbourhood.size;
  }

  /** Stops background work and waits for the disk writes under way; no write starts after this. */
  async close(): Promise<void> {
    this.closed = true;
    this.scheduler.close();
    while (this.diskWrites.size > 0) await Promise.allSettled([...this.diskWrites]);
  }

  private pend(chunk: ChunkRef, keepInMemory: boolean): Pending {
    let resolve!: (b: Buffer) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<Buffer>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => {}); // rejections reach callers through `get`; dedupe waiters may be gone
    this.inflight.set(chunk.digest, promise);
    return { chunk, keepInMemory, promise, resolve, reject };
  }

  /** Rejects (if `err`) and forgets a pending chunk; resolving happened earlier, as soon as the bytes were there. */
  private settle(m: Pending, err?: Error): void {
    if (err) m.reject(err);
    if (this.inflight.get(m.chunk.digest) === m.promise) {
      this.inflight.delete(m.chunk.digest);
      this.tickets.delete(m.chunk.digest);
    }
  }

  private async fill(ls: LayerState, missing: Pending[], priority: Priority): Promise<void> {
    const toFetch: Pending[] = [];
    if (ls.remote) {
      await Promise.all(
        missing.map(async (m) => {
          const buffered = this.windows.find(ls.index, m.chunk);
          if (buffered) {
            if (priority <= Priority.ReadAhead) buffered.ticket?.promote(); // a reader waits for a prefetch's range: it goes first
            if (priority !== Priority.Background) {
              ls.neighbourhood.used(buffered.use, m.chunk.end - m.chunk.start);
              const next = ls.neighbourhood.ahead(this.orderOf(ls.index), buffered.use, m.chunk.start, (c) => this.free(ls, c));
              if (next) void this.fetchWindow(ls, next);
            }
            const compressed = await Promise.resolve(buffered.compressed).catch(() => undefined);
            const data = compressed && (await ls.decodeChunk(m.chunk, compressed).catch((err: Error) => err));
            if (data instanceof Buffer) return this.keep(ls, m, data);
            // The window's fetch failed, or its bytes do not verify (then it leaves the buffer, so that
            // a bad response is not served from again): this chunk is fetched on its own.
            if (data instanceof Error) {
              if (data instanceof ChunkVerifyError) ls.metrics.verificationFailures++;
              this.windows.drop(ls.index, m.chunk, data);
            }
          }
          const data = await this.cache.getDisk(m.chunk.digest, m.chunk.size);
          if (!data) return toFetch.push(m);
          this.obtained(ls, m, data);
          this.settle(m);
        }),
      );
    } else {
      toFetch.push(...missing);
    }
    if (toFetch.length === 0) return;
    const spans = toFetch.map((m) => ({ start: m.chunk.start, end: m.chunk.end, m }));
    const groups = coalesceRanges(spans, COALESCE[priority]);
    await Promise.all(this.requestsOf(ls, groups, priority).map((batch) => this.fetchGroups(ls, batch, priority)));
  }

  /**
   * The coalesced ranges of one load, as requests: a read's each alone (each is waited for), others
   * of a blob that can several in one multi-range request of at most MULTI_RANGE bytes. numpy + pandas: Python's import guesses were ~150 requests of a few ranges
   * each, a round trip apiece; closer ranges would have meant fetching the gaps between them.
   */
  private requestsOf(ls: LayerState, groups: Array<CoalescedRange<PendingSpan>>, priority: Priority): Array<Array<CoalescedRange<PendingSpan>>> {
    if (groups.length < 2 || !ls.remote || !ls.blob.readRanges || priority === Priority.Read || priority === Priority.Background) return groups.map((g) => [g]);
    const requests: Array<Array<CoalescedRange<PendingSpan>>> = [];
    let bytes = Infinity;
    for (const g of groups) {
      const size = g.end - g.start;
      if (bytes + size > MULTI_RANGE.maxBytes || requests[requests.length - 1]!.length >= MULTI_RANGE.maxRanges) {
        requests.push([]);
        bytes = 0;
      }
      requests[requests.length - 1]!.push(g);
      bytes += size;
    }
    return requests;
  }

  /** Fetches coalesced ranges of one layer: one request for one range, a multi-range request for several. */
  private async fetchGroups(ls: LayerState, groups: ReadonlyArray<CoalescedRange<PendingSpan>>, priority: Priority): Promise<void> {
    // A prefetch or background load gets a ticket: a reader that comes to wait for one of its chunks moves it ahead.
    const ticket = priority >= Priority.Prefetch ? new FetchTicket() : undefined;
    const receivers = groups.map((g) => this.receiver(ls, g.start, g.end, g.members.map((x) => x.m), priority, ticket));
    try {
      if (receivers.length === 1) {
        const r = receivers[0]!;
        r.arrived(await this.scheduler.fetch(ls.blob, r.start, r.end, priority, r.arrived, ticket), r.end - r.start);
      } else {
        const ranges = receivers.map((r) => ({ offset: r.start, length: r.end - r.start }));
        await this.scheduler.fetchRanges(ls.blob as MultiRangeBlob, ranges, priority, (i, data) => receivers[i]!.arrived(data, data.length), ticket);
      }
    } catch (err) {
      for (const r of receivers) r.failed(err as Error);
    }
    await Promise.all(receivers.map((r) => r.done()));
  }

  /**
   * What receives [start, end) of a request: it decodes each chunk asked for as soon as its bytes
   * are in. An on-demand miss of a registry blob widens the range to a neighbourhood window, kept for
   * later misses; so are the chunks between those asked for that a coalesced range fetches anyway
   * (thrown away, they were fetched again when read: numpy + pandas, 9 of 40 MB fetched twice).
   */
  private receiver(ls: LayerState, start: number, end: number, asked: Pending[], priority: Priority, ticket: FetchTicket | undefined): Receiver {
    const members = [...asked].sort((a, b) => a.chunk.start - b.chunk.start);
    let window: WindowUse | undefined;
    if (priority === Priority.Read && ls.remote) {
      ls.lastMissAt = start;
      ls.lastMissTime = performance.now();
      window = ls.neighbourhood.plan(this.orderOf(ls.index), start, end, (c) => this.free(ls, c));
      start = window.start;
      end = window.end;
    } else if (ls.remote) {
      const between = end - start - members.reduce((n, m) => n + m.chunk.end - m.chunk.start, 0);
      if (between > 0) window = fixedWindow(start, end, between);
    }
    if (ticket) for (const m of members) this.tickets.set(m.chunk.digest, ticket);
    const windowFill = window && window.neighbourBytes > 0 ? this.windows.open(ls.index, start, end, window, ticket) : undefined;
    const decodes: Array<Promise<void>> = [];
    let next = 0;
    let whole = false;
    return {
      start,
      end,
      arrived: (buf, filled) => {
        whole = filled === end - start;
        windowFill?.arrived(buf, filled);
        while (next < members.length && members[next]!.chunk.end - start <= filled) {
          const m = members[next++]!;
          decodes.push(this.decode(ls, m, buf.subarray(m.chunk.start - start, m.chunk.end - start)));
        }
      },
      failed: (err) => {
        if (whole) return; // a range that came whole before another range of its request failed
        windowFill?.failed(err);
        for (const m of members.slice(next)) this.settle(m, err);
        next = members.length;
      },
      done: () => Promise.all(decodes).then(() => {}),
    };
  }

  /** Whether a chunk is neither cached, nor on its way, nor in a buffered window: a window may fetch it. */
  private free(ls: LayerState, c: ChunkRef): boolean {
    return !this.has(c.digest) && !this.windows.holds(ls.index, c);
  }

  /** Fetches a window no reader has asked for yet (read-ahead of a walk) into the buffer. */
  private async fetchWindow(ls: LayerState, w: WindowUse): Promise<void> {
    const fill = this.windows.open(ls.index, w.start, w.end, w);
    try {
      fill.arrived(await this.scheduler.fetch(ls.blob, w.start, w.end, Priority.ReadAhead, (buf, filled) => fill.arrived(buf, filled)), w.end - w.start);
    } catch (err) {
      fill.failed(err as Error);
    }
  }

  private async decode(ls: LayerState, m: Pending, compressed: Buffer): Promise<void> {
    let data: Buffer;
    try {
      data = await ls.decodeChunk(m.chunk, compressed);
    } catch (err) {
      if (err instanceof ChunkVerifyError) {
        ls.metrics.verificationFailures++;
        this.windows.drop(ls.index, m.chunk, err); // the rest of its response is not to be trusted either
      }
      this.settle(m, err as Error);
      return;
    }
    await this.keep(ls, m, data);
  }

  /** Hands out a verified chunk, stores it on disk (a registry blob's), then forgets it as pending. */
  private async keep(ls: LayerState, m: Pending, data: Buffer): Promise<void> {
    this.obtained(ls, m, data);
    if (ls.remote && !this.closed) {
      const write = this.writeToDisk(m.chunk.digest, data);
      this.diskWrites.add(write);
      await write;
      this.diskWrites.delete(write);
    }
    this.settle(m);
  }

  /** Stores a chunk in the disk cache once a write place is free (a failure is logged: the chunk was served anyway). */
  private writeToDisk(digest: Digest, data: Buffer): Promise<void> {
    return this.writeSlot(() => this.cache.putDisk(digest, data)).catch((err: Error) => this.log(`disk cache: ${err.message}`));
  }

  /** Hands out a verified chunk and notes it as cached for the background fill. */
  private obtained(ls: LayerState, m: Pending, data: Buffer): void {
    if (m.keepInMemory) this.cache.putMemory(m.chunk.digest, data);
    m.resolve(data);
    ls.order?.markAt(m.chunk.start);
  }

  private logFailure(layer: number, what: string, err: Error): void {
    const key = `${layer}\0${what}`;
    if (this.loggedFailures.has(key)) return;
    this.loggedFailures.add(key);
    this.log(`layer ${this.layers[layer]!.name}: ${what}: ${err.message}`);
  }
}
