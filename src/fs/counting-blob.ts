// A BlobSource wrapper that charges every byte and request to a layer's metrics, whoever reads:
// the TOC reader at open time, the fetcher later. This is what makes laziness measurable.
import type { BlobSource, ByteRange, OnData, OnRange } from '../blob/source.js';
import type { LatencyRecorder, LayerMetrics } from './metrics.js';

export class CountingBlob implements BlobSource {
  readonly size: number;
  readonly description: string;
  readRanges?: (ranges: readonly ByteRange[], onRange?: OnRange) => Promise<Buffer[]>;

  constructor(
    private readonly inner: BlobSource,
    private readonly metrics: LayerMetrics,
    private readonly latency: LatencyRecorder,
  ) {
    this.size = inner.size;
    this.description = inner.description;
    if (inner.readRanges) {
      const readRanges = inner.readRanges.bind(inner);
      this.readRanges = async (ranges, onRange) => {
        const t0 = performance.now();
        const out = await readRanges(ranges, onRange);
        this.charge(out.reduce((n, b) => n + b.length, 0), t0);
        return out;
      };
    }
  }

  async read(offset: number, length: number, onData?: OnData): Promise<Buffer> {
    const t0 = performance.now();
    const out = await this.inner.read(offset, length, onData);
    this.charge(out.length, t0);
    return out;
  }

  private charge(bytes: number, t0: number): void {
    this.metrics.requests++;
    this.metrics.fetchedBytes += bytes;
    this.latency.record(performance.now() - t0);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
