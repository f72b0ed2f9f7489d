// Decoded, verified chunks by content digest: a memory LRU bounded in bytes over a content-addressed
// disk cache shared by every layer, image and mount (a second mount of the same image fetches
// nothing). Disk entries are written to a temp name and renamed, so a crash never leaves a partial
// chunk under a digest; they are re-hashed when read back, so a damaged file is a miss, not bad bytes.
import { close as fsClose, open as fsOpen, read as fsRead } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import { digestHex, type Digest } from '../oci/digest.js';
import { CacheCounters } from './metrics.js';
import { chunkDigest } from '../format/native.js';

export interface ChunkCacheOptions {
  /** Cache directory (chunks under `<dir>/chunks`). */
  dir: string;
  /** Upper bound of the disk cache in bytes. */
  diskBytes: number;
  /** Upper bound of the memory LRU in bytes (0 disables it). */
  memoryBytes: number;
  counters?: CacheCounters;
}

let tmpCounter = 0;

/**
 * The file's bytes if it holds exactly `size` of them; 'missing' when it cannot be opened, 'damaged'
 * when it is shorter, longer or unreadable. One open and one read on the libuv pool, close not
 * waited for: readFile's open/fstat/read/close costs ~250 us per small chunk here against ~110 us,
 * and a warm mount of small files is made of these.
 */
function readExactly(path: string, size: number): Promise<Buffer | 'missing' | 'damaged'> {
  return new Promise((resolve) => {
    fsOpen(path, 'r', (err, fd) => {
      if (err) return resolve('missing');
      const buf = Buffer.allocUnsafe(size + 1); // one byte more, to notice a file that is too long
      fsRead(fd, buf, 0, size + 1, 0, (readErr, n) => {
        fsClose(fd, () => {});
        resolve(readErr || n !== size ? 'damaged' : buf.subarray(0, size));
      });
    });
  });
}

export class ChunkCache {
  readonly counters: CacheCounters;
  private readonly memory?: LRUCache<Digest, Buffer>;
  /** Disk entries we know of and their sizes, least recently used first. */
  private readonly diskIndex = new Map<Digest, number>();
  private diskUsed = 0;
  private evicting = false;
  /** Fan-out directories known to exist (a mkdir per write showed up in profiles). */
  private readonly madeDirs = new Set<string>();
  private readonly chunksDir: string;
  private readonly tmpDir: string;

  private constructor(private readonly opts: ChunkCacheOptions) {
    this.counters = opts.counters ?? new CacheCounters();
    if (opts.memoryBytes > 0) {
      this.memory = new LRUCache<Digest, Buffer>({ maxSize: opts.memoryBytes, sizeCalculation: (b) => Math.max(1, b.length) });
    }
    this.chunksDir = join(opts.dir, 'chunks');
    this.tmpDir = join(opts.dir, 'tmp');
  }

  static async open(opts: ChunkCacheOptions): Promise<ChunkCache> {
    const cache = new ChunkCache(opts);
    await mkdir(cache.chunksDir, { recursive: true });
    await mkdir(cache.tmpDir, { recursive: true });
    await cache.scan();
    return cache;
  }

  /** Learns what an earlier process left on disk, oldest first, so eviction covers it too. */
  private async scan(): Promise<void> {
    const found: Array<{ digest: Digest; size: number; mtime: number }> = [];
    for (const sub of await readdir(this.chunksDir)) {
      const names = await readdir(join(this.chunksDir, sub)).catch(() => [] as string[]);
      for (const name of names) {
        if (!/^[0-9a-f]{64}$/.test(name)) continue;
        const st = await stat(join(this.chunksDir, sub, name)).catch(() => undefined);
        if (st) found.push({ digest: `sha256:${name}`, size: st.size, mtime: st.mtimeMs });
      }
    }
    found.sort((a, b) => a.mtime - b.mtime);
    for (const f of found) this.remember(f.digest, f.size);
  }

  private pathOf(digest: Digest): string {
    const hex = digestHex(digest);
    return join(this.chunksDir, hex.slice(0, 2), hex);
  }

  private remember(digest: Digest, size: number): void {
    const old = this.diskIndex.get(digest);
    if (old !== undefined) {
      this.diskIndex.delete(digest);
      this.diskUsed -= old;
    }
    this.diskIndex.set(digest, size);
    this.diskUsed += size;
  }

  private forget(digest: Digest): void {
    const old = this.diskIndex.get(digest);
    if (old === undefined) return;
    this.diskIndex.delete(digest);
    this.diskUsed -= old;
  }

  get diskBytesUsed(): number {
    return this.diskUsed;
  }

  getMemory(digest: Digest): Buffer | undefined {
    const hit = this.memory?.get(digest);
    if (hit) this.counters.memoryHits++;
    else this.counters.memoryMisses++;
    return hit;
  }

  /** Whether the chunk is in memory, without counting a hit or miss or touching its recency. */
  inMemory(digest: Digest): boolean {
    return this.memory?.has(digest) ?? false;
  }

  /** Whether the disk cache is known to hold the chunk (it may still turn out damaged when read). */
  onDisk(digest: Digest): boolean {
    return this.diskIndex.has(digest);
  }

  putMemory(digest: Digest, data: Buffer): void {
    this.memory?.set(digest, data);
  }

  dropMemory(digest: Digest): void {
    this.memory?.delete(digest);
  }

  /**
   * The `size`-byte chunk from disk if present and intact; a damaged entry is removed and counts as a
   * miss. A digest the index does not know is a miss without touching the disk: a failed open costs
   * a thread-pool round trip and an error object, once per chunk of a cold read. The index is learnt
   * at open and on every write of this process, so an entry another mount writes meanwhile is
   * fetched again here, never missed as wrong bytes.
   */
  async getDisk(digest: Digest, size: number): Promise<Buffer | undefined> {
    if (!this.diskIndex.has(digest)) {
      this.counters.diskMisses++;
      return undefined;
    }
    const path = this.pathOf(digest);
    const data = await readExactly(path, size);
    if (data === 'missing') {
      this.forget(digest);
      this.counters.diskMisses++;
      return undefined;
    }
    if (data === 'damaged' || (await chunkDigest(data)) !== digest) {
      this.forget(digest);
      await rm(path, { force: true });
      this.counters.diskMisses++;
      return undefined;
    }
    this.remember(digest, data.length);
    this.counters.diskHits++;
    return data;
  }

  /** Stores a verified chunk on disk atomically, then evicts the least recently used entries over the bound. */
  async putDisk(digest: Digest, data: Buffer): Promise<void> {
    if (this.diskIndex.has(digest) || data.length > this.opts.diskBytes) return;
    const path = this.pathOf(digest);
    const tmp = join(this.tmpDir, `${process.pid}-${++tmpCounter}`);
    const dir = join(path, '..');
    if (!this.madeDirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.madeDirs.add(dir);
    }
    try {
      await writeFile(tmp, data);
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    this.remember(digest, data.length);
    await this.evict();
  }

  private async evict(): Promise<void> {
    if (this.evicting || this.diskUsed <= this.opts.diskBytes) return;
    this.evicting = true;
    try {
      // Down to 90 % so eviction does not run on every single write near the bound.
      const target = this.opts.diskBytes * 0.9;
      for (const [digest] of this.diskIndex) {
        if (this.diskUsed <= target) break;
        this.forget(digest);
        await rm(this.pathOf(digest), { force: true });
      }
    } finally {
      this.evicting = false;
    }
  }
}
