// Remembers the blob ranges a layer's TOC was read from (footer, TOC), keyed by the blob digest and
// range, so remounting an image fetches no blob bytes at all. Safe because the blob is immutable and
// the TOC read from these bytes is verified against the manifest annotation every time; if cached
// bytes ever fail that check, the caller drops them and reads the registry again.
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobSource, ByteRange } from '../blob/source.js';
import { digestHex, type Digest } from '../oci/digest.js';

let tmpCounter = 0;

const rangesDir = (cacheDir: string, digest: Digest) => join(cacheDir, 'toc-ranges', digestHex(digest));
const rangeFile = (offset: number, length: number) => `${offset}-${length}`;

export class TocRangeCache implements BlobSource {
  readonly size: number;
  readonly description: string;
  private readonly dir: string;

  constructor(
    private readonly inner: BlobSource,
    cacheDir: string,
    digest: Digest,
  ) {
    this.size = inner.size;
    this.description = inner.description;
    this.dir = rangesDir(cacheDir, digest);
  }

  /** Whether a read of `range` of blob `digest` would be answered from `cacheDir`. */
  static async holds(cacheDir: string, digest: Digest, range: ByteRange): Promise<boolean> {
    const st = await stat(join(rangesDir(cacheDir, digest), rangeFile(range.offset, range.length))).catch(() => undefined);
    return st?.size === range.length;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const file = join(this.dir, rangeFile(offset, length));
    const cached = await readFile(file).catch(() => undefined);
    if (cached?.length === length) return cached;
    const data = await this.inner.read(offset, length);
    const tmp = `${file}.${process.pid}.${++tmpCounter}.tmp`;
    try {
      await mkdir(this.dir, { recursive: true });
      await writeFile(tmp, data);
      await rename(tmp, file);
    } catch {
      await rm(tmp, { force: true }); // caching is best effort
    }
    return data;
  }

  /** Forgets every cached range of this blob. */
  async drop(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  async close(): Promise<void> {}
}
