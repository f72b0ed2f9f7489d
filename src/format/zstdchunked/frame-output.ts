// Ordered, bounded-parallel zstd frame output: frames are compressed on the libuv pool as soon as
// they are submitted (@mongodb-js/zstd runs compress() there), written strictly in submission
// order, and submission waits (settle) while too many bytes are in flight — so the output is
// deterministic and memory stays bounded whatever the input size.
import { compressFrame } from './zstd.js';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { Sha256Counter } from '../../oci/digest.js';

interface Pending {
  job: Promise<Buffer>;
  size: number;
}

export class FrameOutput {
  private readonly queue: Pending[] = [];
  private head = 0;
  private inflightBytes = 0;
  /** Blob offset at which frame k starts (filled as frames are written). */
  private readonly frameStarts: number[] = [];
  private submitted = 0;
  /** Bytes written to `out` so far. */
  written = 0;
  readonly blobHash = new Sha256Counter();

  constructor(
    private readonly out: Writable,
    private readonly level: number,
    private readonly maxInflightBytes: number,
    private readonly maxInflightFrames: number,
  ) {}

  /** Index the next submitted frame will get: a chunk starting now starts at this frame boundary. */
  get nextFrame(): number {
    return this.submitted;
  }

  /** Starts compressing `data` as the next frame (not empty). */
  submit(data: Buffer): void {
    const job = compressFrame(data, this.level);
    job.catch(() => undefined); // awaited in order later; avoid an unhandled rejection if we fail first
    this.queue.push({ job, size: data.length });
    this.inflightBytes += data.length;
    this.submitted++;
  }

  /** Writes finished frames until the in-flight limits hold again. */
  async settle(): Promise<void> {
    while (this.queue.length - this.head > this.maxInflightFrames || this.inflightBytes > this.maxInflightBytes) {
      await this.writeHead();
    }
  }

  /** Writes every submitted frame. */
  async drain(): Promise<void> {
    while (this.head < this.queue.length) await this.writeHead();
    this.queue.length = 0;
    this.head = 0;
  }

  /** Blob offset of frame boundary `k` (the start of frame k, or the end of all frames); after drain(). */
  offsetOf(k: number): number {
    if (k < this.frameStarts.length) return this.frameStarts[k]!;
    if (k === this.submitted) return this.written;
    throw new Error(`FrameOutput: frame ${k} was never written`);
  }

  /** Writes bytes that are not a compressed frame (skippable frames), after drain(). */
  async writeRaw(data: Buffer): Promise<void> {
    await this.write(data);
  }

  private async writeHead(): Promise<void> {
    const p = this.queue[this.head]!;
    const compressed = await p.job;
    this.head++;
    if (this.head >= 1024) {
      this.queue.splice(0, this.head); // drop written entries so the queue holds only in-flight frames
      this.head = 0;
    }
    this.inflightBytes -= p.size;
    this.frameStarts.push(this.written);
    await this.write(compressed);
  }

  private async write(data: Buffer): Promise<void> {
    this.blobHash.update(data);
    this.written += data.length;
    if (!this.out.write(data)) await once(this.out, 'drain');
  }
}
