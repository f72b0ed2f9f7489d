// Reading a gzip-indexed layer: the seam a mount uses (DESIGN.md: BlobSource in, verified bytes
// out). A span is fetched from its checkpoint's compressed offset to the next checkpoint's, inflated
// by the addon from the checkpoint (bits + window) and checked against its digest before any of it
// is returned.
import type { BlobSource } from '../../blob/source.js';
import { ChunkVerifyError } from '../toc.js';
import type { GzipIndex } from './model.js';
import { chunkDigest, nativeAddon } from '../native.js';

export interface SpanRange {
  /** Compressed range [start, end) of the blob that holds the span (from the byte with the checkpoint's bits). */
  start: number;
  end: number;
  /** Uncompressed range [out, outEnd) of the tar that the span inflates to. */
  out: number;
  outEnd: number;
}

export function spanRange(index: GzipIndex, i: number): SpanRange {
  const c = index.checkpoints[i];
  if (!c) throw new RangeError(`span ${i} of ${index.checkpoints.length}`);
  const next = index.checkpoints[i + 1];
  return { start: c.in - (c.bits > 0 ? 1 : 0), end: next ? next.in : index.compressedSize, out: c.out, outEnd: next ? next.out : index.uncompressedSize };
}

/** The span holding uncompressed offset `offset` of the tar (binary search over the checkpoints). */
export function spanAt(index: GzipIndex, offset: number): number {
  let lo = 0;
  let hi = index.checkpoints.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (index.checkpoints[mid]!.out <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Inflates span `i` from its compressed bytes (the blob's spanRange) and verifies it. */
export async function decodeSpan(index: GzipIndex, i: number, compressed: Buffer): Promise<Buffer> {
  const r = spanRange(index, i);
  const what = `${index.layerDigest} span ${i} (tar ${r.out}..${r.outEnd})`;
  if (compressed.length !== r.end - r.start) throw new ChunkVerifyError(`${what}: got ${compressed.length} compressed bytes, expected ${r.end - r.start}`);
  const c = index.checkpoints[i]!;
  let plain: Buffer;
  try {
    plain = await nativeAddon().extractSpan(compressed, c.bits, c.window, r.outEnd - r.out);
  } catch (err) {
    throw new ChunkVerifyError(`${what}: ${(err as Error).message}`);
  }
  const digest = await chunkDigest(plain);
  if (digest !== index.spanDigests[i]) throw new ChunkVerifyError(`${what}: digest ${digest}, the index says ${index.spanDigests[i]}`);
  return plain;
}

export async function readSpan(index: GzipIndex, blob: BlobSource, i: number): Promise<Buffer> {
  const r = spanRange(index, i);
  return decodeSpan(index, i, await blob.read(r.start, r.end - r.start));
}

/** `length` bytes of the layer's tar at `offset` (a file's data: entry.offset, entry.size), verified span by span. */
export async function readTarRange(index: GzipIndex, blob: BlobSource, offset: number, length: number): Promise<Buffer> {
  if (offset < 0 || length < 0 || offset + length > index.uncompressedSize) throw new RangeError(`tar range ${offset}+${length} is outside the layer (${index.uncompressedSize} bytes)`);
  const parts: Buffer[] = [];
  for (let i = spanAt(index, offset); i < index.checkpoints.length && length > 0; i++) {
    const r = spanRange(index, i);
    if (r.out >= offset + length) break;
    const span = await readSpan(index, blob, i);
    parts.push(span.subarray(Math.max(0, offset - r.out), Math.min(span.length, offset + length - r.out)));
  }
  return Buffer.concat(parts);
}
