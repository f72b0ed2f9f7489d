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
import { createHash, type Hash } from 'node:crypto';
import type { Digest } from '../oci/digest.js';
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
  /** When given, prioritised files this layer does not hold are added here instead of failing. */
  missedPrioritized?: string[];
  /** The input is an eStargz layer: drop its TOC entry and landmarks before writing (needed for zstd:chunked, which keeps every input byte). */
  stripEstargz?: boolean;
  /**
   * The diffID the source config records for this layer. The conversion fails when the input's
   * tar does not hash to it, except when only trailing tar padding is missing: then the padding is
   * restored (so a zstd:chunked output keeps the config's diffID) and `restoredZeros` says so.
   */
  expectedDiffID?: Digest;
}

export interface ConvertLayerResult extends LayerWriteResult {
  /** How the input blob was compressed. */
  inputCompression: LayerCompression;
  /** sha256 of the input's uncompressed tar: what the source config's diff_ids should hold for it. */
  inputDiffID: Digest;
  /** Zero bytes appended to the input to make it match `expectedDiffID` (see there); 0 normally. */
  restoredZeros: number;
}

/**
 * Forwards a tar stream to a consumer while hashing every byte, and can drain what the consumer
 * left unread (a writer may stop at the end-of-archive blocks) so the input is always read to its end.
 */
class TarTap {
  private readonly hash = createHash('sha256');
  private bytes = 0;
  private forwarding = true;
  private digest?: Digest;
  private restored = 0;
  readonly stream: Readable;
  /** Settles when the tar has been read to its end (rejects on its error). */
  readonly ended: Promise<void>;

  constructor(
    private readonly tar: Readable,
    expected: Digest | undefined,
  ) {
    this.stream = new Readable({ read: () => this.forwarding && tar.resume() });
    this.ended = new Promise((resolve, reject) => {
      tar.once('end', resolve);
      tar.once('error', reject);
    });
    this.ended.catch(() => undefined); // observed by finish() or by the caller's race
    tar.on('data', (chunk: Buffer) => {
      this.hash.update(chunk);
      this.bytes += chunk.length;
      if (this.forwarding && !this.stream.push(chunk)) tar.pause();
    });
    tar.once('end', () => {
      if (expected !== undefined) this.restored = missingPadding(this.hash, this.bytes, expected);
      this.digest = `sha256:${this.hash.digest('hex')}`;
      if (!this.forwarding) return;
      if (this.restored > 0) this.stream.push(Buffer.alloc(this.restored));
      this.stream.push(null);
    });
    tar.once('error', (err) => this.stream.destroy(err));
    // The consumer is gone (done early or failed): keep reading so the input is still drained.
    this.stream.once('close', () => this.detach());
  }

  private detach(): void {
    this.forwarding = false;
    this.tar.resume();
  }

  async finish(): Promise<{ digest: Digest; bytes: number; restored: number }> {
    this.detach();
    await this.ended;
    return { digest: this.digest!, bytes: this.bytes, restored: this.restored };
  }
}

/**
 * How many zero bytes the tar hashed so far lacks to hash to `expected`, when it is one of the
 * padded lengths a tar writer produces (512/1024/10240-byte records, with or without the two-block
 * end marker); 0 when it already matches or no padding helps. containers/storage ≤ 1.43 (skopeo
 * 1.9) writes zstd:chunked blobs that drop this padding although the config's diffID includes it.
 */
function missingPadding(hash: Hash, bytes: number, expected: Digest): number {
  if (`sha256:${hash.copy().digest('hex')}` === expected) return 0;
  const lengths = new Set<number>();
  for (const record of [512, 1024, 10240]) for (const extra of [0, 1024]) lengths.add(Math.ceil((bytes + extra) / record) * record);
  for (const n of [...lengths].filter((l) => l > bytes).sort((a, b) => a - b)) {
    if (`sha256:${hash.copy().update(Buffer.alloc(n - bytes)).digest('hex')}` === expected) return n - bytes;
  }
  return 0;
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
    const tap = new TarTap(tar, opts.expectedDiffID);
    const source = opts.stripEstargz ? stripEstargzEntries(tap.stream) : tap.stream;
    const write =
      opts.format === 'estargz'
        ? writeEstargz(source, out, { chunkSize: opts.chunkSize, level: opts.level, prioritizedFiles: opts.prioritizedFiles, missedPrioritized: opts.missedPrioritized })
        : writeZstdChunked(source, out, { level: opts.level });
    const tarFailed = tap.ended.then(() => new Promise<never>(() => undefined));
    const result = await Promise.race([write, tarFailed, outFailed]);
    const input_ = await tap.finish();
    // Go's tar reader takes 0 bytes as an empty archive, but no image holds such a layer: refuse it.
    if (input_.bytes === 0) throw new ConvertError('not a tar: the layer is empty once decompressed');
    if (opts.expectedDiffID !== undefined && input_.digest !== opts.expectedDiffID && input_.restored === 0) {
      throw new ConvertError(`its uncompressed content is ${input_.digest}, but the config's rootfs.diff_ids says ${opts.expectedDiffID}`);
    }
    if (!out.writableEnded) out.end();
    await finished(out);
    await rename(tmp, outPath);
    return { ...result, inputCompression: decompressed.compression, inputDiffID: input_.digest, restoredZeros: input_.restored };
  } catch (err) {
    input.destroy();
    tar?.destroy();
    out.destroy();
    await rm(tmp, { force: true });
    throw err;
  }
}
