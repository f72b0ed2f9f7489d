// Compresses gzip members in parallel on the libuv pool and writes them to the output in submission
// order. A bounded window (members and bytes in flight) keeps memory flat whatever the layer size;
// the output bytes do not depend on the window, so the blob is the same on any number of cores.
import type { Writable } from 'node:stream';
import { once } from 'node:events';
import { createGzip, gzip, type ZlibOptions } from 'node:zlib';
import { Sha256Counter, type Digest } from '../../oci/digest.js';

export interface MemberCompressorOptions {
  level: number;
  /** Members compressing at once (at least 1). */
  maxInFlight: number;
  /** Uncompressed bytes in flight before submit waits (one larger member is still accepted). */
  maxInFlightBytes: number;
}

interface Pending {
  result: Promise<Buffer>;
  bytes: number;
}

function gzipMember(data: Buffer, options: ZlibOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => gzip(data, options, (err, out) => (err ? reject(err) : resolve(out))));
}

export class MemberCompressor {
  private readonly pending: Pending[] = [];
  private inFlightBytes = 0;
  private readonly hash = new Sha256Counter();
  private readonly zlibOptions: ZlibOptions;
  /** Compressed offset of every member submitted, by member index (known once written). */
  readonly offsets: number[] = [];
  private submitted = 0;
  private outError?: Error;

  constructor(
    private readonly out: Writable,
    private readonly opts: MemberCompressorOptions,
  ) {
    // Large output pieces: fewer round trips between the pool thread and JS per member.
    this.zlibOptions = { level: opts.level, chunkSize: 256 * 1024 };
    out.on('error', (err) => (this.outError ??= err));
  }

  /** Queues one gzip member (its uncompressed bytes) and returns its index. */
  async submit(parts: readonly Buffer[]): Promise<number> {
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    while (
      this.pending.length > 0 &&
      (this.pending.length >= this.opts.maxInFlight || this.inFlightBytes + data.length > this.opts.maxInFlightBytes)
    ) {
      await this.writeOldest();
    }
    const result = gzipMember(data, this.zlibOptions);
    result.catch(() => undefined); // awaited in order by writeOldest; avoid an unhandled rejection meanwhile
    this.pending.push({ result, bytes: data.length });
    this.inFlightBytes += data.length;
    return this.submitted++;
  }

  /**
   * Starts a member too large to hold in memory (a long run of tar headers): after every queued
   * member is written, its bytes stream through one gzip stream straight to the output. The bytes
   * equal those of submit() with the same content, since deflate output does not depend on how
   * its input is split. No other member may be submitted until `end()` resolved.
   */
  async startStreamingMember(): Promise<{ write(data: Buffer): Promise<void>; end(): Promise<void> }> {
    await this.flush();
    this.offsets.push(this.hash.bytes);
    this.submitted++;
    const gz = createGzip(this.zlibOptions);
    let writing: Promise<void> = Promise.resolve();
    gz.on('data', (d: Buffer) => {
      // Output order is preserved by chaining writes; pausing bounds what zlib buffers meanwhile.
      gz.pause();
      writing = writing.then(() => this.write(d)).finally(() => gz.resume());
      writing.catch(() => undefined); // surfaced by end(); avoid an unhandled rejection meanwhile
    });
    const ended = once(gz, 'end');
    ended.catch(() => undefined);
    return {
      write: async (data) => {
        if (!gz.write(data)) await once(gz, 'drain');
      },
      end: async () => {
        gz.end();
        await ended;
        await writing;
      },
    };
  }

  /** Queues bytes written as they are (the footer), after every member submitted before. */
  async submitRaw(data: Buffer): Promise<void> {
    await this.flush();
    this.offsets.push(this.hash.bytes);
    this.submitted++;
    await this.write(data);
  }

  /** Writes every queued member. */
  async flush(): Promise<void> {
    while (this.pending.length > 0) await this.writeOldest();
  }

  get bytesWritten(): number {
    return this.hash.bytes;
  }

  /** sha256 of everything written; call after flush. */
  digest(): Digest {
    return this.hash.digest();
  }

  private async writeOldest(): Promise<void> {
    const p = this.pending[0]!;
    const compressed = await p.result;
    this.pending.shift();
    this.inFlightBytes -= p.bytes;
    this.offsets.push(this.hash.bytes);
    await this.write(compressed);
  }

  private async write(data: Buffer): Promise<void> {
    if (this.outError) throw this.outError;
    this.hash.update(data);
    if (!this.out.write(data)) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          this.out.off('error', onError);
          resolve();
        };
        const onError = (err: Error) => {
          this.out.off('drain', onDrain);
          reject(err);
        };
        this.out.once('drain', onDrain).once('error', onError);
      });
    }
    if (this.outError) throw this.outError;
  }
}
