// A gzip layer read through its checkpoint index, as the LayerToc a mount serves. Each file's data
// is cut at span boundaries into chunks that are slices of their span: a chunk's digest is its
// span's and `unitSize` the span's length, so the chunk store inflates, verifies and caches a span
// once, under its digest, and serves every file in it by slicing (ChunkRef.unitSize).
import { ChunkVerifyError, type ChunkRef, type FileEntry, type LayerToc } from '../toc.js';
import type { GzipIndex, GzipIndexEntry } from './model.js';
import { decodeSpan, spanAt, spanRange, type SpanRange } from './span.js';

export function gzipIndexToc(index: GzipIndex): LayerToc {
  const spans = index.checkpoints.map((_, i) => spanRange(index, i));
  // Span ends are the next checkpoints' compressed offsets (strictly increasing): unique keys.
  const byEnd = new Map(spans.map((r, i) => [r.end, i]));
  const entries = index.entries.map(
    (e): FileEntry => ({
      path: e.path,
      type: e.type,
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      mtimeMs: e.mtimeMs,
      size: e.size,
      linkName: e.linkName,
      devMajor: e.devMajor,
      devMinor: e.devMinor,
      xattrs: e.xattrs,
      chunks: e.type === 'reg' ? fileChunks(index, spans, e) : [],
    }),
  );
  return {
    format: 'gzip-index',
    tocDigest: index.layerDigest,
    tocOffset: index.compressedSize,
    entries,
    decodeChunk(unit: ChunkRef, compressed: Buffer): Promise<Buffer> {
      const i = byEnd.get(unit.end) ?? -1;
      const r = spans[i];
      if (!r || r.start !== unit.start || unit.innerOffset !== 0 || unit.size !== r.outEnd - r.out || unit.digest !== index.spanDigests[i]) {
        return Promise.reject(new ChunkVerifyError(`${index.layerDigest}: blob range ${unit.start}..${unit.end} (${unit.size} bytes) is not a span of its index`));
      }
      return decodeSpan(index, i, compressed);
    },
  };
}

/** The slices of the spans that hold a regular file's data [offset, offset + size) of the tar. */
function fileChunks(index: GzipIndex, spans: readonly SpanRange[], e: GzipIndexEntry): ChunkRef[] {
  const chunks: ChunkRef[] = [];
  const end = e.offset + e.size;
  for (let i = spanAt(index, e.offset), at = e.offset; at < end; i++) {
    const r = spans[i]!;
    const to = Math.min(end, r.outEnd);
    chunks.push({ fileOffset: at - e.offset, size: to - at, start: r.start, end: r.end, innerOffset: at - r.out, digest: index.spanDigests[i]!, zeros: false, unitSize: r.outEnd - r.out });
    at = to;
  }
  return chunks;
}
