// Test helper: a hand-made gzip-chunked layer (one gzip member per chunk, like eStargz) as a
// LayerToc over a BufferBlob, so the fs/ code can be exercised without the format readers.
import { gunzipSync, gzipSync } from 'node:zlib';
import { BufferBlob, type BlobSource, type ByteRange } from '../../../src/blob/source.js';
import { ChunkVerifyError, type ChunkRef, type FileEntry, type FileType, type LayerToc } from '../../../src/format/toc.js';
import { sha256 } from '../../../src/oci/digest.js';

export interface SpecEntry {
  path: string;
  type?: FileType;
  content?: Buffer | string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtimeMs?: number;
  linkName?: string;
  devMajor?: number;
  devMinor?: number;
  xattrs?: Record<string, string>;
}

export interface BuiltLayer {
  toc: LayerToc;
  blob: BlobSource;
  /** Blob bytes, mutable for tampering tests. */
  bytes: Buffer;
}

export function entry(spec: SpecEntry, chunks: ChunkRef[] = []): FileEntry {
  const content = spec.content === undefined ? undefined : Buffer.from(spec.content);
  const type = spec.type ?? (content ? 'reg' : 'dir');
  return {
    path: spec.path,
    type,
    mode: spec.mode ?? (type === 'dir' ? 0o755 : 0o644),
    uid: spec.uid ?? 0,
    gid: spec.gid ?? 0,
    mtimeMs: spec.mtimeMs ?? 1_700_000_000_000,
    size: content?.length ?? 0,
    linkName: spec.linkName ?? '',
    devMajor: spec.devMajor ?? 0,
    devMinor: spec.devMinor ?? 0,
    xattrs: new Map(Object.entries(spec.xattrs ?? {}).map(([k, v]) => [k, Buffer.from(v)])),
    digest: content ? sha256(content) : undefined,
    chunks,
  };
}

/** Builds the layer; regular file content is cut into `chunkSize` pieces, each its own gzip member. */
export function buildLayer(specs: SpecEntry[], chunkSize = 64 * 1024): BuiltLayer {
  const parts: Buffer[] = [];
  let pos = 0;
  const entries: FileEntry[] = [];
  for (const spec of specs) {
    const content = spec.content === undefined ? undefined : Buffer.from(spec.content);
    const chunks: ChunkRef[] = [];
    if (content && content.length > 0) {
      for (let off = 0; off < content.length; off += chunkSize) {
        const piece = content.subarray(off, Math.min(content.length, off + chunkSize));
        const gz = gzipSync(piece);
        chunks.push({ fileOffset: off, size: piece.length, start: pos, end: pos + gz.length, innerOffset: 0, digest: sha256(piece), zeros: false });
        parts.push(gz);
        pos += gz.length;
      }
    }
    entries.push(entry(spec, chunks));
  }
  const bytes = Buffer.concat([...parts, Buffer.from('TOC')]);
  const toc: LayerToc = {
    format: 'estargz',
    tocDigest: sha256('toc'),
    tocOffset: pos,
    entries,
    async decodeChunk(chunk, compressed) {
      let data: Buffer;
      try {
        data = gunzipSync(compressed);
      } catch (err) {
        throw new ChunkVerifyError(`chunk at ${chunk.start}: ${(err as Error).message}`);
      }
      data = data.subarray(chunk.innerOffset, chunk.innerOffset + chunk.size);
      if (sha256(data) !== chunk.digest) throw new ChunkVerifyError(`chunk at ${chunk.start}: digest mismatch`);
      return data;
    },
  };
  return { toc, blob: new BufferBlob(bytes, 'test layer'), bytes };
}

/** Deterministic pseudo-random bytes (compress poorly, like real binaries). */
export function noise(n: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A request a RecordingBlob saw: when it started and ended (ms, performance.now) and what it asked for. */
export interface SeenRequest {
  offset: number;
  length: number;
  startedAt: number;
  endedAt?: number;
  /** All the ranges of a multi-range request (offset and length are its first). */
  ranges?: ByteRange[];
}

/** Blob range of the file at `path` (first chunk start to last chunk end). */
export function rangeOf(layer: BuiltLayer, path: string): { start: number; end: number } {
  const chunks = layer.toc.entries.find((e) => `/${e.path}` === path)!.chunks;
  return { start: chunks[0]!.start, end: chunks[chunks.length - 1]!.end };
}

/**
 * Wraps a blob, recording every read in order; each read takes at least `delayMs`. With
 * `multiRange`, it also reads several ranges as one request (recorded with its `ranges`), telling
 * of each range in blob order.
 */
export function recording(blob: BlobSource, delayMs = 0, multiRange = false): { blob: BlobSource; seen: SeenRequest[] } {
  const seen: SeenRequest[] = [];
  const wrapped: BlobSource = {
    size: blob.size,
    description: blob.description,
    async read(offset, length) {
      const r: SeenRequest = { offset, length, startedAt: performance.now() };
      seen.push(r);
      const [data] = await Promise.all([blob.read(offset, length), new Promise((res) => setTimeout(res, delayMs))]);
      r.endedAt = performance.now();
      return data;
    },
    close: () => blob.close(),
  };
  if (multiRange) {
    wrapped.readRanges = async (ranges, onRange) => {
      const r: SeenRequest = { offset: ranges[0]!.offset, length: ranges[0]!.length, ranges: [...ranges], startedAt: performance.now() };
      seen.push(r);
      await new Promise((res) => setTimeout(res, delayMs));
      const out = await Promise.all(ranges.map((x) => blob.read(x.offset, x.length)));
      for (const i of ranges.map((_, i) => i).sort((a, b) => ranges[a]!.offset - ranges[b]!.offset)) onRange?.(i, out[i]!);
      r.endedAt = performance.now();
      return out;
    };
  }
  return { seen, blob: wrapped };
}
