// Remembers the blob ranges a layer's TOC was read from (footer, TOC), keyed by the blob digest and
// range, so remounting an image fetches no blob bytes at all. Safe because the blob is immutable and
// the TOC read from these bytes is verified against the manifest annotation every time; if cached
// bytes ever fail that check, the caller drops them and reads the registry again.
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobSource } from '../blob/source.js';
import { digestHex, type Digest } from '../oci/digest.js';

let tmpCounter = 0;

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
    this.dir = join(cacheDir, 'toc-ranges', digestHex(digest));
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const file = join(this.dir, `${offset}-${length}`);
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
