// One layer blob (plain, gzip or zstd tar) → an eStargz or zstd:chunked blob in a file.
// The output appears under its final name only when everything succeeded (temp file + rename),
// and success also requires the whole input to have been read: an ImageSource verifies a blob's
// digest at the end of its stream, so stopping early would accept unverified bytes.
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { decompressedTar } from '../format/compression.js';
import { writeEstargz } from '../format/estargz/writer.js';
import type { LayerFormat } from '../format/toc.js';
import type { LayerWriteResult } from '../format/writer.js';
import { writeZstdChunked } from '../format/zstdchunked/writer.js';
import { Sha256Counter, type Digest } from '../oci/digest.js';
import type { LayerCompression } from '../oci/mediatypes.js';
import { stripEstargzEntries } from './strip-estargz.js';

export class ConvertError extends Error {}

export interface ConvertLayerOptions {
  format: LayerFormat;
  /** eStargz only: bytes per chunk (the writer's default when absent). */
  chunkSize?: number;
  /** Compression level (gzip 0-9 for eStargz, zstd 1-22 for zstd:chunked). */
  level?: number;
  /** eStargz only: files to put first, before the prefetch landmark. */
  prioritizedFiles?: string[];
  /** The input is an eStargz layer: drop its TOC entry and landmarks before writing (needed for zstd:chunked, which keeps every input byte). */
  stripEstargz?: boolean;
}

export interface ConvertLayerResult extends LayerWriteResult {
  /** How the input blob was compressed. */
  inputCompression: LayerCompression;
  /** sha256 of the input's uncompressed tar: what the source config's diff_ids should hold for it. */
  inputDiffID: Digest;
}

/**
 * Forwards a tar stream to a consumer while hashing every byte, and can drain what the consumer
 * left unread (a writer may stop at the end-of-archive blocks) so the input is always read to its end.
 */
class TarTap {
  private readonly counter = new Sha256Counter();
  private forwarding = true;
  readonly stream: Readable;
  /** Settles when the tar has been read to its end (rejects on its error). */
  readonly ended: Promise<void>;

  constructor(private readonly tar: Readable) {
    this.stream = new Readable({ read: () => this.forwarding && tar.resume() });
    this.ended = new Promise((resolve, reject) => {
      tar.once('end', resolve);
      tar.once('error', reject);
    });
    this.ended.catch(() => undefined); // observed by finish() or by the caller's race
    tar.on('data', (chunk: Buffer) => {
      this.counter.update(chunk);
      if (this.forwarding && !this.stream.push(chunk)) tar.pause();
    });
    tar.once('end', () => this.forwarding && this.stream.push(null));
    tar.once('error', (err) => this.stream.destroy(err));
    // The consumer is gone (done early or failed): keep reading so the input is still drained.
    this.stream.once('close', () => this.detach());
  }

  private detach(): void {
    this.forwarding = false;
    this.tar.resume();
  }

  async finish(): Promise<{ digest: Digest; bytes: number }> {
    this.detach();
    await this.ended;
    return { digest: this.counter.digest(), bytes: this.counter.bytes };
  }
}

function checkOptions(opts: ConvertLayerOptions): void {
  if (opts.format !== 'estargz' && opts.format !== 'zstd:chunked') throw new ConvertError(`unknown layer format ${JSON.stringify(opts.format)} (estargz or zstd:chunked)`);
  if (opts.format === 'zstd:chunked') {
    if (opts.chunkSize !== undefined) throw new ConvertError('a chunk size applies to estargz only (zstd:chunked cuts content-defined chunks)');
    if (opts.prioritizedFiles?.length) throw new ConvertError('prioritized files apply to estargz only');
  }
}

/** Converts one layer blob read from `input` into `outPath` (replaced atomically on success). */
export async function convertLayer(input: Readable, outPath: string, opts: ConvertLayerOptions): Promise<ConvertLayerResult> {
  checkOptions(opts);
  const tmp = `${outPath}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const out = createWriteStream(tmp, { flags: 'wx' });
  // A write failure surfaces through the writer or `finished(out)`; after a failure we destroy `out`
  // and late writes of the writer error too: none of these may become an uncaught exception.
  out.on('error', () => undefined);
  const outFailed = new Promise<never>((_, reject) => out.once('error', reject));
  outFailed.catch(() => undefined);
  let tar: Readable | undefined;
  try {
    const inputFailed = new Promise<never>((_, reject) => input.once('error', reject));
    inputFailed.catch(() => undefined);
    const decompressed = await Promise.race([decompressedTar(input), inputFailed]);
    tar = decompressed.tar;
    const tap = new TarTap(tar);
    const source = opts.stripEstargz ? stripEstargzEntries(tap.stream) : tap.stream;
    const write =
      opts.format === 'estargz'
        ? writeEstargz(source, out, { chunkSize: opts.chunkSize, level: opts.level, prioritizedFiles: opts.prioritizedFiles })
        : writeZstdChunked(source, out, { level: opts.level });
    const tarFailed = tap.ended.then(() => new Promise<never>(() => undefined));
    const result = await Promise.race([write, tarFailed, outFailed]);
    const input_ = await tap.finish();
    // Go's tar reader takes 0 bytes as an empty archive, but no image holds such a layer: refuse it.
    if (input_.bytes === 0) throw new ConvertError('not a tar: the layer is empty once decompressed');
    if (!out.writableEnded) out.end();
    await finished(out);
    await rename(tmp, outPath);
    return { ...result, inputCompression: decompressed.compression, inputDiffID: input_.digest };
  } catch (err) {
    input.destroy();
    tar?.destroy();
    out.destroy();
    await rm(tmp, { force: true });
    throw err;
  }
}
