// BlobSource: the only way format/ and fs/ see the bytes of a blob (DESIGN.md, "Seams").
import { open, type FileHandle } from 'node:fs/promises';

export interface ByteRange {
  offset: number;
  length: number;
}

/**
 * Told as a read's bytes arrive: [0, filled) of `buf` are final, and `buf` is the buffer the read
 * resolves with. Lets a caller use the front of a large range before its end has arrived.
 */
export type OnData = (buf: Buffer, filled: number) => void;

/** Told of each range of a `readRanges` (by its index) once its bytes are in, before the read resolves. */
export type OnRange = (index: number, data: Buffer) => void;

export interface BlobSource {
  /** Total size of the blob in bytes. */
  readonly size: number;
  /** Names the blob in error messages (a file path, or registry/repository@digest). */
  readonly description: string;
  /**
   * Exactly `length` bytes at `offset`; rejects if the range is outside the blob or the read is short.
   * A source that streams calls `onData` as bytes arrive; others may never call it.
   */
  read(offset: number, length: number, onData?: OnData): Promise<Buffer>;
  /**
   * Several ranges at once; a source may serve them with one request. Results in input order;
   * `onRange` is told of each range as soon as its bytes are in (a source that cannot tell sooner
   * tells as the read resolves).
   */
  readRanges?(ranges: readonly ByteRange[], onRange?: OnRange): Promise<Buffer[]>;
  close(): Promise<void>;
}

export class BlobRangeError extends Error {}

/** Throws unless [offset, offset+length) lies inside a blob of `size` bytes. */
export function checkRange(source: { size: number; description: string }, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > source.size) {
    throw new BlobRangeError(`${source.description}: range ${offset}+${length} is outside the blob (size ${source.size})`);
  }
}

/** A blob stored in a local file. */
export class FileBlob implements BlobSource {
  private constructor(
    private readonly fh: FileHandle,
    readonly size: number,
    readonly description: string,
  ) {}

  static async open(path: string): Promise<FileBlob> {
    const fh = await open(path, 'r');
    const st = await fh.stat();
    return new FileBlob(fh, st.size, path);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, offset, length);
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) throw new BlobRangeError(`${this.description}: short read at ${offset + done}`);
      done += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** A blob held in memory (tests, small blobs). */
export class BufferBlob implements BlobSource {
  readonly size: number;
  constructor(
    private readonly data: Buffer,
    readonly description = 'memory blob',
  ) {
    this.size = data.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, offset, length);
    return this.data.subarray(offset, offset + length);
  }
  async close(): Promise<void> {}
}
