// A blob one range of which was asked for before its reader existed: a mount sends each layer's
// TOC request as soon as the manifest is in, while the code that reads TOCs is still compiling.
import type { BlobSource, ByteRange, OnData, OnRange } from './source.js';

/** A range already on its way. */
export interface EarlyRange extends ByteRange {
  data: Promise<Buffer>;
}

/**
 * Starts reading `range` of `blob` now (with the blob's own retries), and closes `blob` once that is
 * done. A failure is kept for the reader (see `EarlyReadBlob`), never left unhandled.
 */
export function readEarly(blob: BlobSource, range: ByteRange): EarlyRange {
  const data = blob.read(range.offset, range.length);
  void data.then(
    () => blob.close(),
    () => blob.close(),
  ).catch(() => {});
  return { ...range, data };
}

/**
 * `inner`, whose first read of exactly the early range takes that read's outcome, bytes or error
 * (it was the same read, started sooner); every other read asks `inner`.
 */
export class EarlyReadBlob implements BlobSource {
  readonly size: number;
  readonly description: string;
  readRanges?: (ranges: readonly ByteRange[], onRange?: OnRange) => Promise<Buffer[]>;

  constructor(
    private readonly inner: BlobSource,
    private early: EarlyRange | undefined,
  ) {
    this.size = inner.size;
    this.description = inner.description;
    if (inner.readRanges) this.readRanges = inner.readRanges.bind(inner);
  }

  read(offset: number, length: number, onData?: OnData): Promise<Buffer> {
    const early = this.early;
    if (!early || early.offset !== offset || early.length !== length) return this.inner.read(offset, length, onData);
    this.early = undefined;
    return early.data;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
