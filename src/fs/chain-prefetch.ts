// Files ahead of a reader that says in its own bytes what it reads next: Python's importer (a
// module's imports) and a C compiler (a source's #include lines). Read cold, such a chain is a miss
// per file, each waiting a round trip for the one before. When a file of the chain is first read,
// the files it names are found and fetched together at speculative priority (behind on-demand
// reads, read-ahead and the prefetch of known files; a read that needs one of them moves its request
// ahead), then followed in turn: the chain costs a round trip per level, not per file.
// Only a guess: a file it does not find, or finds wrongly, costs a wasted fetch, never a wrong byte
// (reads go through the store and are verified like any other).
import { InFlight } from './in-flight.js';
import type { ImageFiles } from './library-prefetch.js';

/** The image's files as a chain prefetch needs them. */
export interface ChainFiles<F> extends ImageFiles<F> {
  /** The names in the directory at `path` (symlinks followed), or undefined if it is none. */
  names(path: string): Iterable<string> | undefined;
}

/** A file found for the chain: read whole and followed, or (`head`) its first chunk handed on. */
export interface Found<F> {
  file: F;
  path: string;
  head?: boolean;
}

/** Bounds for a hostile or odd image: files fetched and followed per mount, and the size of one parsed. */
const MAX_FILES = 4096;
const MAX_FOLLOWED = 4 << 20;
/** Batches on their way at once (two: one crosses the link while the next one's request goes out). */
const BATCHES = 2;

export abstract class ChainPrefetch<F, W extends Found<F> = Found<F>> {
  private readonly seen = new Set<F>();
  /** What it fetches and follows; a subclass adds the fetches it makes itself. */
  protected readonly inFlight = new InFlight();
  /** Files found while BATCHES batches were on their way: they go together in the next. */
  private queue: W[] = [];
  private batches = 0;

  constructor(
    protected readonly files: ChainFiles<F>,
    /** Called with the number of files each fetch sends ahead (the mount's counter). */
    private readonly count: (files: number) => void,
  ) {}

  /** Resolves once nothing is being fetched or followed (tests). */
  idle(): Promise<void> {
    return this.inFlight.idle();
  }

  /** What the file `w` (its bytes, whole) names: fetch them with `fetch`. */
  protected abstract follow(w: W, bytes: Buffer): void;

  /** A `head` file's first chunk, once fetched. */
  protected onHead(_w: W, _head: Buffer): void {}

  /** Whether `file` was read or fetched before; marks it so. */
  protected firstTime(file: F): boolean {
    if (this.seen.has(file)) return false;
    this.seen.add(file);
    return true;
  }

  /** `w` was just read from offset 0 (`whole`: all of it, if that read had it): follows it, once. */
  protected start(w: W, whole?: Buffer): void {
    // Past the bound nothing more is fetched, so nothing more is parsed (a tree walk reads every file).
    if (this.seen.size >= MAX_FILES || !this.firstTime(w.file)) return;
    const size = this.files.size(w.file);
    if (size > MAX_FOLLOWED) return;
    this.inFlight.track(
      (async () => {
        const bytes = whole && whole.length === size ? whole : await this.files.bytes(w.file, 0, size);
        this.follow(w, bytes);
      })(),
    );
  }

  /** Fetches the files not fetched before, together, and follows each. */
  protected fetch(found: readonly W[]): void {
    const wanted: W[] = [];
    for (const f of found) {
      if (this.seen.size >= MAX_FILES || !this.firstTime(f.file)) continue;
      wanted.push(f);
    }
    this.count(wanted.length);
    this.queue.push(...wanted);
    this.pump();
  }

  /**
   * Sends what is queued as one batch, if fewer than BATCHES are on their way. Each parsed file
   * finds a few (numpy + pandas: 15 KiB a module, median); sent one file at a time they were ~260
   * requests that kept the link half idle waiting for round trips.
   */
  private pump(): void {
    if (this.batches >= BATCHES || this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.batches++;
    const sizes = batch.map((f) => this.files.size(f.file));
    const ranges = batch.map((f, i) => ({ file: f.file, from: 0, to: f.head ? this.files.firstChunkEnd(f.file) : Math.min(sizes[i]!, MAX_FOLLOWED) }));
    const loads = this.files.many(ranges).map((bytes, i) => {
      const f = batch[i]!;
      return bytes.then((b) => {
        if (f.head) this.onHead(f, b);
        else if (b.length === sizes[i]) this.follow(f, b); // a file over MAX_FOLLOWED is fetched in part, not followed
      });
    });
    for (const load of loads) this.inFlight.track(load);
    this.inFlight.track(
      Promise.allSettled(loads).then(() => {
        this.batches--;
        this.pump();
      }),
    );
  }
}
