// zstd frame-level helpers (RFC 8878): skippable frames, and a walk over frame and block headers
// that bounds how much a compressed buffer can inflate to before anything is decompressed.
// @mongodb-js/zstd 1.2 decompresses into a growing buffer with no output limit, so this walk is
// what keeps a hostile chunk or TOC from ballooning memory (a decompression bomb).

/**
 * @mongodb-js/zstd, loaded on first use: a mount of eStargz layers never needs it, and loading it
 * took ~15 ms of every mount (its libc check runs process.report.getReport()).
 */
let zstd: Promise<typeof import('@mongodb-js/zstd')> | undefined;
const loadZstd = () => (zstd ??= import('@mongodb-js/zstd'));

export const SKIPPABLE_MAGIC = 0x184d2a50;
const ZSTD_MAGIC = 0xfd2fb528;
/** Largest output of one zstd block (RFC 8878 Block_Maximum_Size). */
export const MAX_BLOCK = 128 * 1024;

/** A skippable frame (magic 0x184D2A50) wrapping `data`. */
export function skippableFrame(data: Uint8Array): Buffer {
  if (data.length > 0xffffffff) throw new RangeError(`a skippable frame holds at most 4 GiB, not ${data.length} bytes`);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(SKIPPABLE_MAGIC, 0);
  head.writeUInt32LE(data.length, 4);
  return Buffer.concat([head, data]);
}

export class ZstdFrameError extends Error {}

export interface InflateBound {
  /** Upper bound of the decompressed size (exact when `exact`). */
  max: number;
  /** Every frame declared its content size, so `max` is the exact size. */
  exact: boolean;
  frames: number;
  /** Each zstd frame's byte range in the buffer and the bound of its output. */
  parts: Array<{ start: number; end: number; max: number }>;
}

/**
 * Walks the frames of `buf` (zstd and skippable) through their block headers and returns a hard
 * upper bound of the decompressed size: a frame's declared content size when it has one, else
 * raw/RLE block sizes plus Block_Maximum_Size per compressed block. Throws on malformed framing.
 */
export function inflateBound(buf: Uint8Array): InflateBound {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const need = (pos: number, n: number) => {
    if (pos + n > buf.length) throw new ZstdFrameError(`truncated zstd frame at byte ${pos}`);
  };
  let pos = 0;
  let max = 0;
  let exact = true;
  let frames = 0;
  const parts: InflateBound['parts'] = [];
  while (pos < buf.length) {
    need(pos, 4);
    const magic = view.getUint32(pos, true);
    if ((magic & 0xfffffff0) === SKIPPABLE_MAGIC) {
      need(pos, 8);
      const len = view.getUint32(pos + 4, true);
      need(pos + 8, len);
      pos += 8 + len;
      continue;
    }
    if (magic !== ZSTD_MAGIC) throw new ZstdFrameError(`not a zstd frame at byte ${pos}`);
    frames++;
    const start = pos;
    pos += 4;
    need(pos, 1);
    const fhd = buf[pos++]!;
    const fcsFlag = fhd >> 6;
    const singleSegment = (fhd & 0x20) !== 0;
    if ((fhd & 0x08) !== 0) throw new ZstdFrameError('zstd frame header: reserved bit set');
    const hasChecksum = (fhd & 0x04) !== 0;
    const dictIdSize = [0, 1, 2, 4][fhd & 3]!;
    let windowSize = 0;
    if (!singleSegment) {
      need(pos, 1);
      const wd = buf[pos++]!;
      const windowLog = 10 + (wd >> 3);
      const base = 2 ** windowLog;
      windowSize = base + (base / 8) * (wd & 7);
    }
    pos += dictIdSize;
    const fcsSize = fcsFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
    need(pos, fcsSize);
    let contentSize: number | undefined;
    if (fcsSize === 1) contentSize = buf[pos]!;
    else if (fcsSize === 2) contentSize = view.getUint16(pos, true) + 256;
    else if (fcsSize === 4) contentSize = view.getUint32(pos, true);
    else if (fcsSize === 8) contentSize = Number(view.getBigUint64(pos, true));
    pos += fcsSize;
    if (singleSegment) windowSize = contentSize!;
    const blockMax = Math.min(windowSize, MAX_BLOCK);
    let frameMax = 0;
    for (;;) {
      need(pos, 3);
      const bh = buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16);
      pos += 3;
      const last = (bh & 1) === 1;
      const type = (bh >> 1) & 3;
      const size = bh >>> 3;
      if (type === 3) throw new ZstdFrameError('zstd block: reserved type');
      if ((type === 0 || type === 1) && size > blockMax) throw new ZstdFrameError('zstd block larger than the block maximum');
      if (type === 0) {
        need(pos, size);
        pos += size;
        frameMax += size;
      } else if (type === 1) {
        need(pos, 1);
        pos += 1;
        frameMax += size;
      } else {
        need(pos, size);
        pos += size;
        frameMax += blockMax;
      }
      if (last) break;
    }
    if (hasChecksum) {
      need(pos, 4);
      pos += 4;
    }
    if (contentSize === undefined) exact = false;
    max += contentSize ?? frameMax;
    parts.push({ start, end: pos, max: contentSize ?? frameMax });
  }
  return { max, exact, frames, parts };
}

/**
 * Decompresses `buf`, which must inflate to exactly `expected` bytes, without ever inflating much
 * more. With exact sizes the frame walk must add up to `expected`. Frames without a content size
 * (@mongodb-js/zstd writes none; our tar-split is several such frames) are inflated one at a time,
 * each only if the output so far plus that frame's bound stays within `expected` + 2 blocks (a
 * frame's last compressed block is usually partial; Go's compressor may add an empty frame).
 * `fail` builds the error to throw, naming the object.
 */
export async function decompressExact(buf: Buffer, expected: number, fail: (msg: string) => Error): Promise<Buffer> {
  let bound: InflateBound;
  try {
    bound = inflateBound(buf);
  } catch (err) {
    throw fail((err as Error).message);
  }
  if (bound.exact ? bound.max !== expected : bound.max < expected) {
    throw fail(`compressed data may inflate to ${bound.max} bytes, but ${expected} are declared`);
  }
  const { decompress } = await loadZstd();
  const pieces: Buffer[] = [];
  let got = 0;
  for (const frame of bound.parts) {
    if (got + frame.max > expected + 2 * MAX_BLOCK) {
      throw fail(`compressed data may inflate to ${got + frame.max} bytes, but ${expected} are declared`);
    }
    let piece: Buffer;
    try {
      piece = await decompress(bound.parts.length === 1 ? buf : buf.subarray(frame.start, frame.end));
    } catch (err) {
      throw fail(`zstd: ${(err as Error).message}`);
    }
    if (piece.length > frame.max) throw fail(`a frame decompressed to ${piece.length} bytes, past its bound of ${frame.max}`);
    got += piece.length;
    pieces.push(piece);
  }
  if (got !== expected) throw fail(`decompressed to ${got} bytes, but ${expected} are declared`);
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, got);
}
