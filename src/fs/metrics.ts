// Counters of one mount, kept from the start (DESIGN.md "Metrics are counters kept from the start")
// and reported by `starling stats` over the control socket.

/** Fetch latencies: a ring of the most recent samples, enough for stable percentiles. */
export class LatencyRecorder {
  private readonly samples: number[] = [];
  private next = 0;
  constructor(private readonly capacity = 4096) {}

  record(ms: number): void {
    if (this.samples.length < this.capacity) this.samples.push(ms);
    else this.samples[this.next] = ms;
    this.next = (this.next + 1) % this.capacity;
  }

  percentiles(): { p50: number; p95: number; p99: number; count: number } {
    const sorted = [...this.samples].sort((a, b) => a - b);
    const at = (q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : 0);
    return { p50: at(0.5), p95: at(0.95), p99: at(0.99), count: sorted.length };
  }
}

export interface Progress {
  /** Compressed bytes planned. */
  total: number;
  /** Compressed bytes done so far (fetched or found in the cache). */
  done: number;
  state: 'off' | 'pending' | 'running' | 'done' | 'failed';
}

export class LayerMetrics {
  fetchedBytes = 0;
  requests = 0;
  verificationFailures = 0;
  readonly prefetch: Progress = { total: 0, done: 0, state: 'off' };
  readonly background: Progress = { total: 0, done: 0, state: 'off' };
}

export class CacheCounters {
  memoryHits = 0;
  memoryMisses = 0;
  diskHits = 0;
  diskMisses = 0;
}

export class MountMetrics {
  servedBytes = 0;
  /** Bytes fetched for image metadata (manifest, config) — layers count their own. */
  metadataBytes = 0;
  metadataRequests = 0;
  /** Files fetched ahead of the dynamic loader: the libraries a program being started will open. */
  filesAhead = 0;
  /** Python modules fetched ahead of the importer: the modules a module being imported will import. */
  modulesAhead = 0;
  /** Headers fetched ahead of the C/C++ compiler: the includes of a source or header being read. */
  headersAhead = 0;
  /** Files of the image's command fetched at mount: its program and the files its arguments name (command-prefetch). */
  commandFiles = 0;
  /** Directories fetched at once because their files kept missing one by one (lazyfs). */
  dirsAhead = 0;
  readonly cache = new CacheCounters();
  readonly latency = new LatencyRecorder();
}
