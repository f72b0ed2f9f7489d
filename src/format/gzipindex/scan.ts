// One pass over a gzip blob through the addon: its uncompressed bytes as they come out, and on the
// side the checkpoints (one every `span` bytes of output) and the sha256 of each span's bytes.
// Spans are hashed here in JS, on the bytes the tar parser reads anyway: with SHA-NI that costs a
// few percent of the inflate, and it keeps the addon to zlib alone (no second crypto library).
import { createHash, type Hash } from 'node:crypto';
import type { Digest } from '../../oci/digest.js';
import { nativeAddon, type NativeCheckpoint } from '../native.js';

export type Checkpoint = NativeCheckpoint;

export interface GzipScan {
  /** checkpoints[i] starts span i; span i ends where span i + 1 starts (the last one at the end of the output). */
  checkpoints: Checkpoint[];
  /** sha256 of each span's uncompressed bytes. */
  spanDigests: Digest[];
  compressedSize: number;
  uncompressedSize: number;
}

/** Compressed bytes are handed to the addon in pieces of at least this size (fewer trips to the pool). */
const INPUT_BATCH = 512 << 10;
/** Uncompressed bytes per step: the size of the pieces the output comes in. */
const OUTPUT_STEP = 2 << 20;

/** Groups small input pieces (a registry stream's 16-64 KiB) into batches of about INPUT_BATCH bytes. */
async function* batched(input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let size = 0;
  for await (const piece of input) {
    parts.push(piece);
    size += piece.length;
    if (size >= INPUT_BATCH) {
      yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
      parts = [];
      size = 0;
    }
  }
  if (size > 0) yield Buffer.concat(parts, size);
}

/**
 * Inflates a gzip blob (one or more members) and yields its uncompressed bytes; once the iteration
 * has ended, `scan` holds the checkpoints and span digests. Errors name what is wrong with the blob.
 */
export class GzipScanner {
  private readonly indexer;
  private readonly checkpoints: Checkpoint[] = [];
  private readonly spanDigests: Digest[] = [];
  private hash: Hash | undefined;
  private compressed = 0;
  private uncompressed = 0;
  private done = false;

  constructor(span: number) {
    this.indexer = new (nativeAddon().GzipIndexer)(span);
  }

  async *inflate(input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (let batch of batched(input)) {
      this.compressed += batch.length;
      for (;;) {
        const step = await this.indexer.inflate(batch, OUTPUT_STEP, false);
        if (step.output.length > 0 || step.checkpoints.length > 0) this.take(step.output, step.checkpoints);
        if (step.output.length > 0) yield step.output;
        batch = batch.subarray(step.consumed);
        if (batch.length === 0 && step.output.length < OUTPUT_STEP) break;
      }
    }
    for (;;) {
      const step = await this.indexer.inflate(Buffer.alloc(0), OUTPUT_STEP, true);
      this.take(step.output, step.checkpoints);
      if (step.output.length > 0) yield step.output;
      if (step.output.length < OUTPUT_STEP) break;
    }
    if (this.hash) this.spanDigests.push(`sha256:${this.hash.digest('hex')}`);
    this.done = true;
  }

  /** Hashes `output` into the spans it belongs to; each checkpoint closes one span and opens the next. */
  private take(output: Buffer, checkpoints: Checkpoint[]): void {
    let pos = 0;
    for (const cp of checkpoints) {
      const at = cp.out - this.uncompressed;
      this.hash?.update(output.subarray(pos, at));
      if (this.hash) this.spanDigests.push(`sha256:${this.hash.digest('hex')}`);
      this.hash = createHash('sha256');
      this.checkpoints.push(cp);
      pos = at;
    }
    this.hash?.update(output.subarray(pos));
    this.uncompressed += output.length;
  }

  get scan(): GzipScan {
    if (!this.done) throw new Error('GzipScanner.scan read before the input was inflated to its end');
    return { checkpoints: this.checkpoints, spanDigests: this.spanDigests, compressedSize: this.compressed, uncompressedSize: this.uncompressed };
  }
}
