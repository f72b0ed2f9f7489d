// zstd:chunked writer (formats.md §1b): from an uncompressed tar stream, zstd frames that decompress
// to the input byte for byte (tar headers and padding in the open frame, a new frame at each payload,
// one frame per content chunk), then the TOC, the tar-split and the 64-byte footer in skippable
// frames — the current containers/storage layout.
import { compressFrame } from './zstd.js';
import { createHash, type Hash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { sha256, Sha256Counter, type Digest } from '../../oci/digest.js';
import { Annotation, MediaType } from '../../oci/mediatypes.js';
import { checkHardlinkTargets, normalizeEntryPath, TarEntryError } from '../tar-entry.js';
import type { TocEntry } from '../toc.js';
import type { LayerWriteResult } from '../writer.js';
import { encodeFooter, formatManifestPosition, formatTarSplitPosition } from './footer.js';
import { FrameOutput } from './frame-output.js';
import { MAX_BLOCK, skippableFrame } from './frames.js';
import { serializeToc, tocEntryFromHeader } from './manifest.js';
import { RawTarParser, type TarHeader } from './rawtar.js';
import { MAX_TOC_BYTES } from './reader.js';
import { ContentChunker, type ChunkSink } from './rollsum.js';
import { Crc64, TarSplitBuilder } from './tarsplit.js';

/** containers/storage's `ZstdCompressor` default level. */
export const DEFAULT_ZSTD_CHUNKED_LEVEL = 10;
/**
 * Frames are cut at this many uncompressed bytes even inside one chunk (the chunk's range then holds
 * several frames, which every zstd decoder reads as one stream). A multiple of the 128 KiB block
 * size, so only a chunk's last block is ever partial — what the reader's inflate bound allows.
 */
const MAX_FRAME = 32 * MAX_BLOCK;
const ZERO_PIECE = Buffer.alloc(MAX_FRAME);

export interface ZstdChunkedWriteOptions {
  /** zstd level (default 10, as containers/storage). */
  level?: number;
  /** Uncompressed bytes allowed in flight in the compressor pool (default 16 MiB). */
  maxInflightBytes?: number;
}

interface ChunkRecord {
  chunkOffset: number;
  size: number;
  digest: Digest;
  zeros: boolean;
  /** Frame boundary where the chunk's compressed bytes start. */
  startFrame: number;
}

/** A TOC entry whose blob offsets are frame boundaries, resolved once every frame is written. */
interface PendingEntry {
  entry: TocEntry;
  offsetFrame?: number;
  endOffsetFrame?: number;
}

/** Accumulates the bytes of the currently open frame. */
class OpenFrame {
  parts: Buffer[] = [];
  length = 0;
  add(b: Uint8Array): void {
    if (b.length === 0) return;
    this.parts.push(Buffer.from(b.buffer, b.byteOffset, b.length));
    this.length += b.length;
  }
  /** The frame's bytes; one part goes as is (compress() copies its input before returning). */
  take(): Buffer {
    const data = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.length);
    this.parts = [];
    this.length = 0;
    return data;
  }
}

class ZstdChunkedEncoder implements ChunkSink {
  readonly frame = new OpenFrame();
  readonly entries: PendingEntry[] = [];
  /** Compressed tar-split pieces, in order; the last few may still be compressing. */
  readonly tarSplitParts: (Buffer | Promise<Buffer>)[] = [];
  private tarSplitSettled = 0;
  tarSplitSize = 0;
  readonly tarSplit: TarSplitBuilder;
  private readonly parser: RawTarParser;

  // The entry being written.
  private hdr?: TarHeader;
  private crc = new Crc64();
  private fileHash: Hash = createHash('sha256');
  private chunker?: ContentChunker;
  private chunks: ChunkRecord[] = [];
  private payloadStarted = false;
  // The chunk being written.
  private chunkHash: Hash = createHash('sha256');
  private chunkSize = 0;
  private chunkZeros = false;
  private chunkStart = 0;
  private fileOffset = 0;

  constructor(
    readonly output: FrameOutput,
    level: number,
  ) {
    this.tarSplit = new TarSplitBuilder((text) => {
      this.tarSplitSize += text.length;
      const job = compressFrame(text, level);
      job.catch(() => undefined);
      this.tarSplitParts.push(job);
    });
    this.parser = new RawTarParser({
      entry: (hdr, raw) => this.onEntry(hdr, raw),
      payload: (bytes) => this.onPayload(bytes),
      entryEnd: () => this.onEntryEnd(),
      end: (raw) => this.onEnd(raw),
      trailing: (bytes) => this.onTrailing(bytes),
    });
  }

  feed(buf: Buffer): void {
    this.parser.feed(buf);
  }

  /** Waits for tar-split pieces while more than a few are compressing (bounds their memory). */
  async settleTarSplit(maxPending = 4): Promise<void> {
    while (this.tarSplitParts.length - this.tarSplitSettled > maxPending) {
      this.tarSplitParts[this.tarSplitSettled] = await this.tarSplitParts[this.tarSplitSettled]!;
      this.tarSplitSettled++;
    }
  }

  finish(): void {
    this.parser.finish();
    this.closeFrame();
    this.tarSplit.finish();
  }

  private onEntry(hdr: TarHeader, raw: Buffer[]): void {
    // Untrusted names: refuse root escapes and NUL as the eStargz writer does (our reader refuses them too).
    if (normalizeEntryPath(hdr.name, 'tar entry') === '' && hdr.typeflag !== '5') {
      throw new TarEntryError(`tar entry ${JSON.stringify(hdr.name)} names the layer root but is not a directory (type ${hdr.typeflag})`);
    }
    if (hdr.typeflag === '1') normalizeEntryPath(hdr.linkname, `hardlink ${JSON.stringify(hdr.name)} target`);
    // Base-256 fields may be negative; the TOC (and both readers) take non-negative numbers only.
    for (const [field, v] of [['uid', hdr.uid], ['gid', hdr.gid], ['mode', hdr.mode], ['devmajor', hdr.devmajor], ['devminor', hdr.devminor]] as const) {
      if (v < 0) throw new TarEntryError(`tar entry ${JSON.stringify(hdr.name)}: negative ${field} ${v} is not supported`);
    }
    for (const r of raw) this.addRaw(r);
    this.tarSplit.segment(Buffer.concat(raw));
    this.hdr = hdr;
    this.crc = new Crc64();
    this.fileHash = createHash('sha256');
    this.chunks = [];
    this.payloadStarted = false;
    this.fileOffset = 0;
    this.chunker = hdr.size > 0 ? new ContentChunker(this) : undefined;
  }

  private onPayload(bytes: Buffer): void {
    this.crc.update(bytes);
    this.fileHash.update(bytes);
    this.chunker!.push(bytes);
  }

  private onEntryEnd(): void {
    const hdr = this.hdr!;
    this.chunker?.finish();
    this.tarSplit.file(hdr.nameBytes, hdr.declaredSize, hdr.declaredSize > 0 ? this.crc.sum() : undefined);
    const main: PendingEntry = { entry: tocEntryFromHeader(hdr) };
    const pending = [main];
    if (this.payloadStarted) {
      main.entry.digest = `sha256:${this.fileHash.digest('hex')}`;
      main.offsetFrame = this.chunks[0]!.startFrame;
      main.endOffsetFrame = this.output.nextFrame;
      for (const c of this.chunks.slice(1)) {
        pending.push({ entry: { type: 'chunk', name: hdr.name, chunkOffset: c.chunkOffset }, offsetFrame: c.startFrame });
      }
      if (this.chunks.length > 1) {
        this.chunks.forEach((c, i) => {
          const e = pending[i]!;
          e.entry.chunkSize = c.size;
          e.offsetFrame = c.startFrame;
          e.entry.chunkDigest = c.digest;
          if (c.zeros) e.entry.chunkType = 'zeros';
        });
      }
    }
    this.entries.push(...pending);
    this.hdr = undefined;
    this.chunker = undefined;
  }

  private onEnd(raw: Buffer[]): void {
    for (const r of raw) this.addRaw(r);
    const all = Buffer.concat(raw);
    if (all.length > 0) this.tarSplit.segment(all);
  }

  private onTrailing(bytes: Buffer): void {
    this.addRaw(bytes);
    this.tarSplit.trailing(Buffer.from(bytes));
  }

  /** Header bytes, padding and trailing bytes go into the open frame. */
  private addRaw(b: Uint8Array): void {
    this.frame.add(b);
    if (this.frame.length >= MAX_FRAME) this.closeFrame();
  }

  private closeFrame(): void {
    if (this.frame.length > 0) this.output.submit(this.frame.take());
  }

  // --- ChunkSink: the payload of the current entry, cut into chunks ---

  private startChunk(zeros: boolean): void {
    if (!this.payloadStarted) {
      this.closeFrame(); // the payload starts a new frame
      this.payloadStarted = true;
    }
    this.chunkZeros = zeros;
    this.chunkStart = this.output.nextFrame;
  }

  data(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.chunkSize === 0) this.startChunk(false);
    this.chunkHash.update(bytes);
    this.chunkSize += bytes.length;
    let off = 0;
    while (off < bytes.length) {
      const n = Math.min(bytes.length - off, MAX_FRAME - this.frame.length);
      this.frame.add(bytes.subarray(off, off + n));
      off += n;
      if (this.frame.length >= MAX_FRAME) this.closeFrame();
    }
  }

  zeros(count: number): void {
    if (count === 0) return;
    if (this.chunkSize === 0) this.startChunk(true);
    this.chunkSize += count;
    for (let left = count; left > 0; ) {
      const n = Math.min(left, MAX_FRAME - this.frame.length);
      const piece = ZERO_PIECE.subarray(0, n);
      this.chunkHash.update(piece);
      this.frame.add(piece);
      left -= n;
      if (this.frame.length >= MAX_FRAME) this.closeFrame();
    }
  }

  cut(): void {
    if (this.chunkSize === 0) return;
    this.closeFrame();
    this.chunks.push({
      chunkOffset: this.fileOffset,
      size: this.chunkSize,
      digest: `sha256:${this.chunkHash.digest('hex')}`,
      zeros: this.chunkZeros,
      startFrame: this.chunkStart,
    });
    this.fileOffset += this.chunkSize;
    this.chunkSize = 0;
    this.chunkHash = createHash('sha256');
  }
}

/**
 * Writes `tar` (an uncompressed tar stream) to `out` as a zstd:chunked blob. Resolves once every byte
 * has been written to `out` (the caller ends/closes it). Throws on a malformed tar or an entry type
 * zstd:chunked cannot hold (sparse files, global PAX headers), naming the entry.
 */
export async function writeZstdChunked(tar: Readable, out: Writable, opts: ZstdChunkedWriteOptions = {}): Promise<LayerWriteResult> {
  const level = opts.level ?? DEFAULT_ZSTD_CHUNKED_LEVEL;
  const maxInflightBytes = opts.maxInflightBytes ?? 16 << 20;
  const output = new FrameOutput(out, level, maxInflightBytes, 1024);
  const encoder = new ZstdChunkedEncoder(output, level);
  const diff = new Sha256Counter();
  for await (const piece of tar as AsyncIterable<Uint8Array>) {
    const chunk = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    diff.update(chunk);
    encoder.feed(chunk);
    await output.settle();
    await encoder.settleTarSplit();
  }
  encoder.finish();
  await output.drain();

  const tarSplit = Buffer.concat(await Promise.all(encoder.tarSplitParts));
  const tarSplitDigest = sha256(tarSplit);
  const tocEntries = encoder.entries.map(({ entry, offsetFrame, endOffsetFrame }) => {
    if (offsetFrame !== undefined) entry.offset = output.offsetOf(offsetFrame);
    if (endOffsetFrame !== undefined) entry.endOffset = output.offsetOf(endOffsetFrame);
    return entry;
  });
  checkHardlinkTargets(tocEntries);
  const tocJson = Buffer.from(serializeToc(tocEntries, tarSplitDigest), 'utf8');
  if (tocJson.length > MAX_TOC_BYTES) {
    throw new Error(`zstd:chunked TOC of ${tocJson.length} bytes for ${tocEntries.length} entries exceeds the ${MAX_TOC_BYTES}-byte limit readers enforce`);
  }
  const toc = await compressFrame(tocJson, level);
  const tocDigest = sha256(toc);

  const manifest = { offset: output.written + 8, length: toc.length, uncompressedLength: tocJson.length };
  const tarSplitRange = { offset: manifest.offset + toc.length + 8, length: tarSplit.length, uncompressedLength: encoder.tarSplitSize };
  await output.writeRaw(skippableFrame(toc));
  await output.writeRaw(skippableFrame(tarSplit));
  await output.writeRaw(skippableFrame(encodeFooter(manifest, tarSplitRange)));

  return {
    mediaType: MediaType.ociLayerZstd,
    digest: output.blobHash.digest(),
    size: output.written,
    diffID: diff.digest(),
    uncompressedSize: diff.bytes,
    tocDigest,
    annotations: {
      [Annotation.zstdChunkedManifestChecksum]: tocDigest,
      [Annotation.zstdChunkedManifestPosition]: formatManifestPosition(manifest),
      [Annotation.zstdChunkedTarSplitPosition]: formatTarSplitPosition(tarSplitRange),
    },
    entryCount: tocEntries.length,
  };
}
