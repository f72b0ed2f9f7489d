// Builders of deliberately malformed seekable layers: eStargz and zstd:chunked blobs around any TOC
// JSON a test writes (valid or hostile), reusing the formats' own footer, tar-header and frame
// writers so only the part under test is wrong. Used by the hostile-layer tests and the fuzz harness.
import { gzipSync } from 'node:zlib';
import { compress } from '@mongodb-js/zstd';
import { sha256 } from '../../src/oci/digest.js';
import { estargzFooter } from '../../src/format/estargz/footer.js';
import { END_OF_ARCHIVE, padding, regularFileHeader } from '../../src/format/estargz/tar-blocks.js';
import { TOC_TAR_NAME } from '../../src/format/estargz/order.js';
import { encodeFooter, formatManifestPosition, type BlobRange } from '../../src/format/zstdchunked/footer.js';
import { skippableFrame } from '../../src/format/zstdchunked/frames.js';
import { Annotation } from '../../src/oci/mediatypes.js';
import type { TocEntry } from '../../src/format/toc.js';

export interface FileSpec {
  name: string;
  content: Buffer | string;
  /** Uncompressed bytes per chunk (default: the whole file in one chunk). */
  chunkSize?: number;
}

/** Data section of a layer: compressed chunks at the offsets the TOC entries give. */
export interface LayerData {
  data: Buffer;
  /** A valid TOC for `data` (the root dir and one `reg` entry, plus `chunk` entries, per file). */
  entries: TocEntry[];
}

function pieces(f: FileSpec): Buffer[] {
  const content = Buffer.from(f.content);
  const size = f.chunkSize ?? Math.max(1, content.length);
  const out: Buffer[] = [];
  for (let off = 0; off < content.length; off += size) out.push(content.subarray(off, off + size));
  return out;
}

/**
 * eStargz data: a leading gzip member (like the first tar header's), then one gzip member per
 * chunk. Entries follow the eStargz TOC rules (chunk entries carry chunkOffset/chunkSize/chunkDigest).
 */
export function estargzData(files: FileSpec[]): LayerData {
  const parts: Buffer[] = [gzipSync(Buffer.alloc(512))];
  let pos = parts[0]!.length;
  const entries: TocEntry[] = [{ name: './', type: 'dir', mode: 0o755 }];
  for (const f of files) {
    const content = Buffer.from(f.content);
    const chunks = pieces(f);
    let fileOffset = 0;
    chunks.forEach((piece, i) => {
      const gz = gzipSync(piece);
      const chunk = { offset: pos, chunkOffset: fileOffset, chunkSize: piece.length, chunkDigest: sha256(piece) };
      if (i === 0) entries.push({ name: f.name, type: 'reg', size: content.length, mode: 0o644, digest: sha256(content), ...chunk });
      else entries.push({ name: f.name, type: 'chunk', ...chunk });
      parts.push(gz);
      pos += gz.length;
      fileOffset += piece.length;
    });
    if (chunks.length === 0) entries.push({ name: f.name, type: 'reg', size: 0, mode: 0o644 });
  }
  return { data: Buffer.concat(parts), entries };
}

/** The gzip'd TOC member: a tar holding stargz.index.json (or another name) with `json`. */
export function estargzTocMember(json: Buffer, name = TOC_TAR_NAME): Buffer {
  return gzipSync(Buffer.concat([regularFileHeader(name, json.length), json, padding(json.length), END_OF_ARCHIVE]));
}

export interface EstargzBlobOptions {
  /** Footer's TOC offset (default: where the TOC member starts). */
  footerOffset?: number;
  /** Replaces the TOC member bytes (e.g. not gzip at all). */
  tocMember?: Buffer;
}

/** A whole eStargz blob: `data`, the TOC member for `toc` (object → JSON; Buffer/string as is), the footer. */
export function estargzBlob(data: Buffer, toc: unknown, opts: EstargzBlobOptions = {}): { blob: Buffer; tocDigest: ReturnType<typeof sha256> } {
  const json = Buffer.isBuffer(toc) ? toc : Buffer.from(typeof toc === 'string' ? toc : JSON.stringify(toc));
  const member = opts.tocMember ?? estargzTocMember(json);
  return { blob: Buffer.concat([data, member, estargzFooter(opts.footerOffset ?? data.length)]), tocDigest: sha256(json) };
}

/**
 * zstd:chunked data: a leading skippable frame (so no file starts at offset 0), then one zstd frame
 * per chunk. Entries follow the zstd:chunked rules: a file's first entry has offset/endOffset (of
 * its whole compressed range); with several chunks, each part carries chunkSize and chunkDigest.
 */
export async function zstdChunkedData(files: FileSpec[]): Promise<LayerData> {
  const parts: Buffer[] = [skippableFrame(Buffer.alloc(8))];
  let pos = parts[0]!.length;
  const entries: TocEntry[] = [{ name: './', type: 'dir', mode: 0o755 }];
  for (const f of files) {
    const content = Buffer.from(f.content);
    const chunks = pieces(f);
    const first = entries.length;
    let fileOffset = 0;
    for (const [i, piece] of chunks.entries()) {
      const z = await compress(piece, 3);
      const multi = chunks.length > 1;
      const chunk = { offset: pos, ...(multi ? { chunkOffset: fileOffset, chunkSize: piece.length, chunkDigest: sha256(piece) } : {}) };
      if (i === 0) entries.push({ name: f.name, type: 'reg', size: content.length, mode: 0o644, digest: sha256(content), ...chunk });
      else entries.push({ name: f.name, type: 'chunk', ...chunk });
      parts.push(z);
      pos += z.length;
      fileOffset += piece.length;
    }
    if (chunks.length === 0) entries.push({ name: f.name, type: 'reg', size: 0, mode: 0o644 });
    else entries[first]!.endOffset = pos;
  }
  return { data: Buffer.concat(parts), entries };
}

export interface ZstdChunkedBlobOptions {
  /** Overrides what the footer (and position annotation) say about the TOC. */
  manifest?: Partial<BlobRange>;
  /** Replaces the compressed TOC bytes. */
  compressedToc?: Buffer;
  /** Leave out the manifest-checksum annotation. */
  noChecksum?: boolean;
  /** A compressed tar-split to store after the TOC (default: none, an empty range in the footer). */
  tarSplit?: { compressed: Buffer; uncompressedLength: number };
}

/**
 * A whole zstd:chunked blob: `data`, the TOC (object → JSON; Buffer/string as is) in a skippable
 * frame, the tar-split frame (if given) and the 64-byte footer. Returns the layer annotations too.
 */
export async function zstdChunkedBlob(data: Buffer, toc: unknown, opts: ZstdChunkedBlobOptions = {}): Promise<{ blob: Buffer; annotations: Record<string, string> }> {
  const json = Buffer.isBuffer(toc) ? toc : Buffer.from(typeof toc === 'string' ? toc : JSON.stringify(toc));
  const compressed = opts.compressedToc ?? (await compress(json, 3));
  const manifest: BlobRange = { offset: data.length + 8, length: compressed.length, uncompressedLength: json.length, ...opts.manifest };
  const ts = opts.tarSplit;
  const tarSplit: BlobRange = ts
    ? { offset: data.length + 8 + compressed.length + 8, length: ts.compressed.length, uncompressedLength: ts.uncompressedLength }
    : { offset: 0, length: 0, uncompressedLength: 0 };
  const frames = [data, skippableFrame(compressed), ...(ts ? [skippableFrame(ts.compressed)] : [])];
  const blob = Buffer.concat([...frames, skippableFrame(encodeFooter(manifest, tarSplit))]);
  const annotations: Record<string, string> = { [Annotation.zstdChunkedManifestPosition]: formatManifestPosition(manifest) };
  if (!opts.noChecksum) annotations[Annotation.zstdChunkedManifestChecksum] = sha256(compressed);
  return { blob, annotations };
}
