// eStargz writer: turns an uncompressed tar stream into an eStargz blob (formats.md §1a) with the
// member layout of Go's appendTar run as one part: a new gzip member starts at every payload chunk;
// tar headers, padding and payload-less entries stay in the member that is open. Entry headers pass
// through as read. Without prioritised files the input is streamed in one pass; with them it is
// spooled to a temporary file first, because prioritised entries may come from anywhere in the tar.
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { sha256, Sha256Counter } from '../../oci/digest.js';
import { Annotation, MediaType } from '../../oci/mediatypes.js';
import { checkHardlinkTargets, cleanEntryName, normalizeEntryPath, OwnerNames, TarEntryError, tocEntryFromTarHeader, type TarHeader } from '../tar-entry.js';
import type { TocEntry } from '../toc.js';
import type { LayerWriteResult } from '../writer.js';
import { estargzFooter } from './footer.js';
import { MemberCompressor } from './member-compressor.js';
import { NO_PREFETCH_LANDMARK, orderEntries, PREFETCH_LANDMARK, TOC_TAR_NAME } from './order.js';
import { END_OF_ARCHIVE, padding, regularFileHeader } from './tar-blocks.js';
import { TarFormatError, TarReader } from './tar-reader.js';
import { tocJson } from './toc-json.js';

export interface EstargzWriteOptions {
  /** Largest uncompressed payload per gzip member (default 4 MiB, as Go). */
  chunkSize?: number;
  /** gzip level 0–9 (default 9, Go's Build default). */
  level?: number;
  /** Paths to place first, before `.prefetch.landmark` (absolute or relative to the root). */
  prioritizedFiles?: string[];
  /** When given, prioritised paths the layer does not hold are added here instead of failing (one list for every layer of an image). */
  missedPrioritized?: string[];
  /** Members compressed at once (default 16); does not change the output bytes. */
  parallelism?: number;
  /**
   * Uncompressed bytes of one member held in memory before it is streamed instead (only a long run
   * of payload-less entries gets there; default 32 MiB); does not change the output bytes.
   */
  maxMemberBuffer?: number;
}

export const DEFAULT_CHUNK_SIZE = 4 << 20;
/** The landmark file's content: one byte 0x0f (formats.md §1a.5). */
const LANDMARK_CONTENT = Buffer.from([0x0f]);
/** Go records this digest for empty regular files too. */
const EMPTY_DIGEST = sha256(Buffer.alloc(0));

/** An entry to write: its header, the raw header blocks to emit, and a reader for its payload. */
interface SourceEntry {
  header: TarHeader;
  raw: Buffer;
  payloadSize: number;
  readPayload(max: number): Promise<Buffer | null>;
}

function landmarkEntry(name: string): SourceEntry {
  let done = false;
  return {
    header: { name, type: 'file', size: 1 },
    raw: regularFileHeader(name, 1),
    payloadSize: 1,
    readPayload: async () => (done ? null : ((done = true), LANDMARK_CONTENT)),
  };
}

class LayerBuilder {
  private parts: Buffer[] = [];
  private partsBytes = 0;
  /** The open member when it outgrew the buffer limit and streams instead. */
  private streaming?: { write(data: Buffer): Promise<void>; end(): Promise<void> };
  private membersSubmitted = 0;
  private readonly diff = new Sha256Counter();
  private readonly names = new OwnerNames();
  private readonly entries: TocEntry[] = [];
  /** Member index of every data entry (reg with content, chunk): offsets are known once written. */
  private readonly memberOf = new Map<TocEntry, number>();
  /** Entries by clean name, so a later duplicate can replace them (later wins, as Go). */
  private readonly byName = new Map<string, TocEntry[]>();
  private readonly replaced = new Set<TocEntry>();

  constructor(
    private readonly compressor: MemberCompressor,
    private readonly chunkSize: number,
    private readonly maxMemberBuffer: number,
  ) {}

  private append(buf: Buffer): void {
    if (buf.length === 0) return;
    this.parts.push(buf);
    this.partsBytes += buf.length;
    this.diff.update(buf);
  }

  /** Streams the open member's bytes out once they exceed the buffer limit (long header runs, huge chunks). */
  private async spillIfLarge(): Promise<void> {
    if (this.partsBytes <= this.maxMemberBuffer) return;
    this.streaming ??= await this.compressor.startStreamingMember();
    for (const p of this.parts) await this.streaming.write(p);
    this.parts = [];
    this.partsBytes = 0;
  }

  /** Closes the open member (if it holds anything); returns the index the next member gets. */
  private async cut(): Promise<number> {
    if (this.streaming) {
      for (const p of this.parts) await this.streaming.write(p);
      await this.streaming.end();
      this.streaming = undefined;
      this.membersSubmitted++;
    } else if (this.parts.length > 0) {
      await this.compressor.submit(this.parts);
      this.membersSubmitted++;
    }
    this.parts = [];
    this.partsBytes = 0;
    return this.membersSubmitted;
  }

  /** Appends one entry; input entries named like the TOC or a landmark are dropped (`generated` = ours). */
  async add(src: SourceEntry, generated = false): Promise<void> {
    const { header } = src;
    const clean = cleanEntryName(header.name);
    if (!generated && (clean === TOC_TAR_NAME || clean === PREFETCH_LANDMARK || clean === NO_PREFETCH_LANDMARK)) return;
    const path = normalizeEntryPath(header.name, 'tar entry');
    const entry = tocEntryFromTarHeader(header, this.names);
    if (path === '' && entry.type !== 'dir') throw new TarEntryError(`tar entry ${JSON.stringify(header.name)} names the layer root but is a ${entry.type}, not a directory`);
    if (entry.type === 'hardlink') normalizeEntryPath(header.linkname ?? '', `hardlink ${JSON.stringify(header.name)} target`);
    for (const old of this.byName.get(clean) ?? []) this.replaced.add(old);
    const own: TocEntry[] = [entry];
    this.byName.set(clean, own);
    this.entries.push(entry);
    this.append(src.raw);
    await this.spillIfLarge();
    if (entry.type !== 'reg') return;

    const size = src.payloadSize;
    // A file of one chunk has digest == chunkDigest: skip the second hash over its bytes.
    const file = size > this.chunkSize ? new Sha256Counter() : undefined;
    let current = entry;
    for (let written = 0; written < size; ) {
      const member = await this.cut();
      const len = Math.min(this.chunkSize, size - written);
      if (written > 0) {
        current = { name: header.name, type: 'chunk' };
        this.entries.push(current);
        own.push(current);
      }
      // Go sets chunkSize on every chunk except a last partial one.
      if (size - written >= this.chunkSize) current.chunkSize = this.chunkSize;
      if (written > 0) current.chunkOffset = written;
      const chunk = new Sha256Counter();
      for (let got = 0; got < len; ) {
        const piece = await src.readPayload(len - got);
        if (!piece) throw new TarFormatError(`truncated tar: input ended inside the content of ${JSON.stringify(header.name)}`);
        chunk.update(piece);
        file?.update(piece);
        this.append(piece);
        await this.spillIfLarge(); // only with a chunk size above the member buffer limit
        got += piece.length;
      }
      current.chunkDigest = chunk.digest();
      this.memberOf.set(current, member);
      written += len;
    }
    entry.digest = file ? file.digest() : (entry.chunkDigest ?? EMPTY_DIGEST);
    this.append(padding(size));
  }

  /** Closes the last member, writes the TOC member and the footer; returns what was written. */
  async finish(): Promise<LayerWriteResult> {
    await this.cut();
    await this.compressor.flush();
    const offsets = this.compressor.offsets;
    const entries = this.entries.filter((e) => !this.replaced.has(e));
    checkHardlinkTargets(entries);
    for (const e of entries) {
      const member = this.memberOf.get(e);
      if (member !== undefined) e.offset = offsets[member]!;
    }
    const json = tocJson({ version: 1, entries });
    const tocDigest = sha256(json);
    this.append(regularFileHeader(TOC_TAR_NAME, json.length));
    this.append(json);
    this.append(padding(json.length));
    this.append(END_OF_ARCHIVE);
    const tocMember = await this.cut();
    await this.compressor.flush();
    const tocOffset = offsets[tocMember - 1]!;
    await this.compressor.submitRaw(estargzFooter(tocOffset));
    return {
      mediaType: MediaType.ociLayerGzip,
      digest: this.compressor.digest(),
      size: this.compressor.bytesWritten,
      diffID: this.diff.digest(),
      uncompressedSize: this.diff.bytes,
      tocDigest,
      annotations: {
        [Annotation.estargzTocDigest]: tocDigest,
        [Annotation.estargzUncompressedSize]: String(this.diff.bytes),
        [Annotation.estargzTocOffset]: String(tocOffset),
      },
      entryCount: entries.length,
    };
  }
}

function checkOptions(opts: EstargzWriteOptions): { chunkSize: number; level: number; parallelism: number } {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const level = opts.level ?? 9;
  const parallelism = opts.parallelism ?? 16;
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) throw new RangeError(`chunk size must be a positive integer, got ${chunkSize}`);
  if (!Number.isInteger(level) || level < 0 || level > 9) throw new RangeError(`gzip level must be 0–9, got ${level}`);
  if (!Number.isInteger(parallelism) || parallelism < 1) throw new RangeError(`parallelism must be at least 1, got ${parallelism}`);
  return { chunkSize, level, parallelism };
}

/** Entries of the tar in their order, payloads read straight from the stream. */
async function* streamedEntries(reader: TarReader): AsyncGenerator<SourceEntry> {
  for (let e = await reader.next(); e; e = await reader.next()) {
    yield { ...e, readPayload: (max) => reader.readPayload(max) };
  }
}

interface SpooledEntry {
  header: TarHeader;
  raw: Buffer;
  payloadSize: number;
  spoolOffset: number;
  name: string;
  hardlinkTarget?: string;
}

const SPOOL_READ = 1 << 20;

/** Copies every payload to `fh` and returns the entries with where their payload landed. */
async function spoolEntries(reader: TarReader, fh: FileHandle): Promise<SpooledEntry[]> {
  const out: SpooledEntry[] = [];
  let pos = 0;
  for (let e = await reader.next(); e; e = await reader.next()) {
    const spoolOffset = pos;
    for (let piece = await reader.readPayload(SPOOL_READ); piece; piece = await reader.readPayload(SPOOL_READ)) {
      await fh.write(piece, 0, piece.length, pos);
      pos += piece.length;
    }
    out.push({
      ...e,
      spoolOffset,
      name: e.header.name,
      hardlinkTarget: e.header.type === 'link' ? (e.header.linkname ?? '') : undefined,
    });
  }
  return out;
}

function fromSpool(e: SpooledEntry, fh: FileHandle): SourceEntry {
  let read = 0;
  return {
    header: e.header,
    raw: e.raw,
    payloadSize: e.payloadSize,
    async readPayload(max) {
      const len = Math.min(max, e.payloadSize - read, SPOOL_READ);
      if (len <= 0) return null;
      const buf = Buffer.allocUnsafe(len);
      const { bytesRead } = await fh.read(buf, 0, len, e.spoolOffset + read);
      if (bytesRead !== len) throw new Error(`eStargz spool file: short read of ${JSON.stringify(e.name)}`);
      read += len;
      return buf;
    },
  };
}

/**
 * Writes an eStargz blob for the uncompressed tar `tar` to `out` (callers decompress first, e.g. with
 * decompressedTar from format/compression.ts). The blob is deterministic for the same input and
 * options. Rejects with TarFormatError / TarEntryError on bad input; `out` is not ended either way.
 */
export async function writeEstargz(tar: Readable, out: Writable, opts: EstargzWriteOptions = {}): Promise<LayerWriteResult> {
  const { chunkSize, level, parallelism } = checkOptions(opts);
  const compressor = new MemberCompressor(out, {
    level,
    maxInFlight: parallelism,
    maxInFlightBytes: Math.max(4 * chunkSize, 16 << 20),
  });
  const builder = new LayerBuilder(compressor, chunkSize, opts.maxMemberBuffer ?? 32 << 20);
  const reader = new TarReader(tar);
  const prioritized = opts.prioritizedFiles ?? [];
  if (prioritized.length === 0) {
    await builder.add(landmarkEntry(NO_PREFETCH_LANDMARK), true);
    for await (const e of streamedEntries(reader)) await builder.add(e);
    return builder.finish();
  }
  const dir = await mkdtemp(join(tmpdir(), 'starling-estargz-'));
  try {
    const fh = await open(join(dir, 'spool'), 'w+');
    try {
      const [first, rest] = orderEntries(await spoolEntries(reader, fh), prioritized, opts.missedPrioritized);
      for (const e of first) await builder.add(fromSpool(e, fh));
      await builder.add(landmarkEntry(PREFETCH_LANDMARK), true);
      for (const e of rest) await builder.add(fromSpool(e, fh));
      return await builder.finish();
    } finally {
      await fh.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export { TarEntryError, TarFormatError };
