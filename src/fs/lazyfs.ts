// The filesystem behaviour of a mount, with no FUSE inside (DESIGN.md seam): path lookups, attributes,
// directory listings, links, xattrs and reads over an inode tree. LazyFs keeps files and their
// sequential runs; their chunks come from the mount's ChunkStore. Everything but `read` is answered
// from memory.
import { LRUCache } from 'lru-cache';
import type { ChunkRef, FileEntry } from '../format/toc.js';
import { FsError } from './errors.js';
import type { ChunkStore } from './chunk-store.js';
import { Priority } from './fetch-scheduler.js';
import { entryOf, type Inode, type Tree } from './tree.js';
import { LibraryPrefetch } from './library-prefetch.js';
import type { ChainFiles } from './chain-prefetch.js';
import { CommandPrefetch, type CommandFiles } from './command-prefetch.js';
import { IncludePrefetch } from './include-prefetch.js';
import { ModulePrefetch } from './module-prefetch.js';
import type { MountMetrics } from './metrics.js';

const TYPE_BITS = { dir: 0o040000, reg: 0o100000, symlink: 0o120000, hardlink: 0o100000, char: 0o020000, block: 0o060000, fifo: 0o010000 } as const;
const BLOCK = 4096;
/** Sequential reads grow the read-ahead window from the first to the last of these sizes. */
const READ_AHEAD_MIN = 4 << 20;
const READ_AHEAD_MAX = 32 << 20;

export interface Stat {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  rdev: number;
  blksize: number;
  blocks: number;
  mtimeMs: number;
}

/** A directory entry: what readdir gives per name (FUSE without readdirplus passes on nothing else). */
export interface DirEntry {
  ino: number;
  mode: number;
}

export interface StatFs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

/** Linux `makedev` (the encoding the kernel's FUSE attr carries). */
export function makedev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** One sequential run through a file (a reader, or the kernel's read-ahead of one). */
interface Run {
  /** Where the run's last read ended: a read starting here continues it. */
  lastEnd: number;
  readAheadEnd: number;
  window: number;
}

/** What reads of one regular file keep between them: its entry with chunks, bytes served per chunk, its runs. */
interface ReadState {
  entry: FileEntry;
  served: Uint32Array;
  /** Most recent first, at most MAX_RUNS: several readers of one file each keep their read-ahead. */
  runs: Run[];
}

const MAX_RUNS = 4;
/** Files whose read state is kept; a file falling out only loses its read-ahead progress. */
const READ_STATES = 1024;
/** Sibling read-ahead: files this small (one chunk), this many of them ahead. */
const SMALL_FILE = 256 << 10;
const SIBLINGS_AHEAD = 8;
/** Larger directories are not tracked: their listing order would cost memory (~60 bytes a child). */
const WALKED_DIR_MAX = 4096;
/**
 * Directory fetch: a directory whose files keep missing one by one is fetched at once, once they are
 * DIR_MISSES and DIR_SHARE of its entries (a program that picks a few modules out of a large
 * directory is left alone), and their misses could have carried it, DIR_BYTES_PER_MISS each: about
 * what a 100 Mbit/s link carries in the round trip a miss waits for. Files of more than DIR_FILE_MAX
 * compressed bytes are left to their own reads; a directory with more than DIR_FETCH_MAX, alone.
 */
const DIR_MISSES = 2;
const DIR_SHARE = 0.1;
const DIR_BYTES_PER_MISS = 256 << 10;
const DIR_FILE_MAX = 1 << 20;
const DIR_FETCH_MAX = 8 << 20;
/** Symlinks followed in one path before giving up (the kernel's limit is 40; libraries need 1-3). */
const MAX_SYMLINK_HOPS = 16;

/** A directory's children in listing order, for reads that walk it. */
interface DirWalk {
  order: Inode[];
  position: Map<Inode, number>;
  /** Position of the small file read last, and how far siblings have been preloaded. */
  last: number;
  preloadedTo: number;
}

// There is no open or release: the mount is read-only and its content immutable, so files need no
// handles. The FUSE adapter answers the first OPEN with ENOSYS, after which the kernel sends no OPEN
// or RELEASE for files and keeps their pages across opens, and a read names its file by path. That
// halves the JS round trips of reading a small file (LOOKUP, READ instead of LOOKUP, OPEN, READ,
// RELEASE), and a file read again from the page cache costs none.
export class LazyFs {
  private readonly readStates = new LRUCache<Inode, ReadState>({ max: READ_STATES });
  private readonly walks = new LRUCache<Inode, DirWalk>({ max: 16 }); // directories being walked
  /** Per directory: files whose first read had to fetch, and its bytes to fetch when last counted (-1: fetched, or too large). */
  private readonly dirMisses = new LRUCache<Inode, { misses: number; bytes: number }>({ max: 1024 });

  constructor(
    readonly tree: Tree,
    /** The chunks of every layer (Inode.layer numbers them). */
    private readonly store: ChunkStore,
    private readonly metrics: MountMetrics,
    opts: { libraries?: boolean; modules?: boolean; includes?: boolean; directories?: boolean } = {},
  ) {
    const files = this.imageFiles();
    const libraries = opts.libraries === false ? undefined : new LibraryPrefetch(files, metrics);
    this.libraries = libraries;
    this.modules = opts.modules === false ? undefined : new ModulePrefetch(files, metrics, libraries && ((f, p, head) => libraries.noticeHead(f, p, head)));
    this.includes = opts.includes === false ? undefined : new IncludePrefetch(files, metrics);
    this.directories = opts.directories !== false;
    const modules = this.modules;
    const includes = this.includes;
    this.commands = new CommandPrefetch(files, {
      program: (file, path, head) => libraries?.noticeHead(file, path, head),
      read: (file, path, whole) => {
        modules?.noticeRead(file, path, whole);
        includes?.noticeRead(file, path, whole);
      },
      python: (file, path, args, cwd) => modules?.noticeCommand(file, path, args, cwd),
    }, metrics);
  }

  /** Fetches what a container running a command reads first, before it starts (called by the mount). */
  readonly commands: CommandPrefetch<Inode>;

  /** Whether directories whose files keep missing are fetched at once (on unless turned off). */
  private readonly directories: boolean;

  /** Fetches the libraries a program will load once it is first read (on unless turned off). */
  readonly libraries: LibraryPrefetch<Inode> | undefined;

  /** Fetches the modules a Python module will import once it is first read (on unless turned off). */
  readonly modules: ModulePrefetch<Inode> | undefined;

  /** Fetches the headers a C or C++ source or header includes once it is first read (on unless turned off). */
  readonly includes: IncludePrefetch<Inode> | undefined;

  /** The inode at an absolute path ('/' is the root). */
  lookup(path: string): Inode {
    let node = this.tree.root;
    if (path === '/' || path === '') return node;
    for (const part of path.split('/')) {
      if (part === '') continue;
      if (!node.children) throw new FsError('ENOTDIR', path);
      const child = node.children.get(part);
      if (!child) throw new FsError('ENOENT', path);
      node = child;
    }
    return node;
  }

  statOf(node: Inode): Stat {
    const { table: t, row } = node;
    const type = t.typeOf(row);
    const size = type === 'reg' ? t.num(row, 'size') : type === 'symlink' ? Buffer.byteLength(t.linkNameOf(row)) : node.children ? BLOCK : 0;
    return {
      ino: node.ino,
      mode: this.modeOf(node),
      nlink: node.nlink,
      uid: t.num(row, 'uid'),
      gid: t.num(row, 'gid'),
      size,
      rdev: type === 'char' || type === 'block' ? makedev(t.num(row, 'devMajor'), t.num(row, 'devMinor')) : 0,
      blksize: BLOCK,
      blocks: Math.ceil(size / 512),
      mtimeMs: Math.max(0, t.num(row, 'mtimeMs')),
    };
  }

  getattr(path: string): Stat {
    return this.statOf(this.lookup(path));
  }

  /** The names in a directory and what a directory entry carries for each (d_ino, d_type). */
  readdir(path: string): { names: string[]; entries: DirEntry[] } {
    const node = this.lookup(path);
    if (!node.children) throw new FsError('ENOTDIR', path);
    const names = ['.', '..'];
    const self = { ino: node.ino, mode: this.modeOf(node) };
    const entries = [self, self];
    for (const [name, child] of node.children) {
      names.push(name);
      entries.push({ ino: child.ino, mode: this.modeOf(child) });
    }
    return { names, entries };
  }

  private modeOf(node: Inode): number {
    return TYPE_BITS[node.table.typeOf(node.row)] | (node.table.num(node.row, 'mode') & 0o7777);
  }

  readlink(path: string): string {
    const node = this.lookup(path);
    if (node.table.typeOf(node.row) !== 'symlink') throw new FsError('EINVAL', path);
    return node.table.linkNameOf(node.row);
  }

  getxattr(path: string, name: string): Buffer {
    const value = this.lookup(path).xattrs.get(name);
    if (!value) throw new FsError('ENODATA', `${path}: ${name}`);
    return value;
  }

  listxattr(path: string): string[] {
    return [...this.lookup(path).xattrs.keys()];
  }

  /** Up to `length` bytes of the regular file at `path` from `offset`; other types read as empty. */
  async read(path: string, offset: number, length: number): Promise<Buffer> {
    const node = this.lookup(path);
    if (node.table.typeOf(node.row) !== 'reg') return Buffer.alloc(0);
    let state = this.readStates.get(node);
    /** The file's directory, at its first read (for the walk and the directory fetch). */
    let parent: Inode | undefined;
    if (!state) {
      const entry = entryOf(node);
      this.readStates.set(node, (state = { entry, served: new Uint32Array(entry.chunks.length), runs: [] }));
      parent = this.lookup(parentOf(path));
      if (entry.size <= SMALL_FILE && entry.chunks.length === 1) this.walkOn(parent, node);
    }
    const e = state.entry;
    const end = Math.min(e.size, offset + length);
    if (offset >= end || e.chunks.length === 0) return Buffer.alloc(0);
    const chunks = chunksIn(e.chunks, offset, end);
    // Judged before the read-ahead below puts this chunk on its way (it may start in the same chunk).
    if (parent && this.directories && this.store.wouldFetch(node.layer, chunks[0]!)) this.missedIn(parent, e);
    const run = runAt(state, offset);
    let ahead: ChunkRef[] = [];
    if (offset === run.lastEnd && end < e.size) {
      // Sequential: keep a growing window of following chunks on their way, in large parallel ranges.
      // Refill only when less than half a window is left, so each refill is one large batch.
      const target = Math.min(e.size, end + run.window);
      if (run.readAheadEnd - end < run.window / 2 && target > run.readAheadEnd) {
        const last = chunks[chunks.length - 1]!;
        const from = Math.max(last.fileOffset + last.size, run.readAheadEnd);
        if (from < target) ahead = chunksIn(e.chunks, from, target);
        run.readAheadEnd = target;
        run.window = Math.min(READ_AHEAD_MAX, run.window * 2);
      }
    }
    run.lastEnd = end;
    // A read that misses takes the read-ahead into its own request, which brings its neighbourhood
    // window (a read-ahead alone has none: the first read of a file in one large chunk went without);
    // otherwise the read-ahead goes on its own, behind reads. A failure there surfaces (and is
    // logged) when the reader reaches that chunk.
    const joined = ahead.length > 0 && chunks.some((c) => this.store.wouldFetch(node.layer, c));
    if (ahead.length > 0 && !joined) this.store.get(node.layer, ahead, Priority.ReadAhead).catch(() => {});
    let datas: Buffer[];
    try {
      datas = await this.store.get(node.layer, chunks, Priority.Read, joined ? ahead : []);
    } catch (err) {
      throw this.store.readFailure(node.layer, e.path, err as Error);
    }
    const data = assemble(chunks, datas, offset, end);
    if (parent && offset === 0) {
      this.libraries?.noticeHead(node, path, datas[0]!);
      const whole = end === e.size ? data : undefined;
      this.modules?.noticeRead(node, path, whole);
      this.includes?.noticeRead(node, path, whole);
    }
    this.metrics.servedBytes += data.length;
    this.letGo(state, offset, end);
    return data;
  }

  /**
   * Counts [from, to) of the file as served. A chunk all of whose bytes have been served leaves the
   * memory cache: the kernel keeps what it read in its page cache (kernel_cache) and does not ask for
   * it again, so holding the chunk too would only double the memory a large read takes. Counting,
   * not tracking where a run has got to, because the kernel sends a sequential read's requests in
   * parallel and out of order.
   */
  private letGo(state: ReadState, from: number, to: number): void {
    const { chunks } = state.entry;
    for (let i = chunkIndexAt(chunks, from); i < chunks.length && chunks[i]!.fileOffset < to; i++) {
      const c = chunks[i]!;
      state.served[i]! += Math.min(to, c.fileOffset + c.size) - Math.max(from, c.fileOffset);
      if (state.served[i]! >= c.size) {
        state.served[i] = 0;
        this.store.release(c);
      }
    }
  }

  /**
   * The first read of a file in `dir` had to fetch. Python importing one package
   * or a compiler reading one include directory would otherwise wait a round trip per file, and a
   * neighbourhood window only brings what sits next to a miss in the blob.
   */
  private missedIn(dir: Inode, missed: FileEntry): void {
    let m = this.dirMisses.get(dir);
    if (!m) this.dirMisses.set(dir, (m = { misses: 0, bytes: 0 }));
    if (m.bytes < 0) return;
    m.misses++;
    // What was counted last, less the file just missed, bounds what is left (it only shrinks): the
    // directory is counted again only when the misses could cover that.
    m.bytes = Math.max(0, m.bytes - missed.chunks.reduce((n, c) => n + c.end - c.start, 0));
    if (m.misses < Math.max(DIR_MISSES, (dir.children?.size ?? 0) * DIR_SHARE) || m.misses * DIR_BYTES_PER_MISS < m.bytes) return;
    const plan = this.dirFetchPlan(dir);
    m.bytes = plan?.bytes ?? -1;
    if (!plan || m.misses * DIR_BYTES_PER_MISS < plan.bytes) return;
    m.bytes = -1;
    for (const [layer, chunks] of plan.chunks) this.store.fetchAhead(layer, chunks);
    this.metrics.dirsAhead++;
  }

  /** The chunks a directory fetch of `dir` would ask for, per layer, and their compressed bytes; undefined if it is too large. */
  private dirFetchPlan(dir: Inode): { chunks: Map<number, ChunkRef[]>; bytes: number } | undefined {
    if (!dir.children || dir.children.size > WALKED_DIR_MAX) return undefined;
    const chunks = new Map<number, ChunkRef[]>();
    let bytes = 0;
    for (const child of dir.children.values()) {
      const { table, row, layer } = child;
      if (table.typeOf(row) !== 'reg' || this.readStates.has(child)) continue;
      const free = table.chunksOf(row).filter((c) => this.store.wouldFetch(layer, c));
      const size = free.reduce((n, c) => n + c.end - c.start, 0);
      if (size === 0 || size > DIR_FILE_MAX) continue;
      bytes += size;
      if (bytes > DIR_FETCH_MAX) return undefined;
      let list = chunks.get(layer);
      if (!list) chunks.set(layer, (list = []));
      list.push(...free);
    }
    return { chunks, bytes };
  }

  /**
   * A first read of a small file that follows the one read before it in its directory's listing
   * (find -exec cat, tar, cp -r, grep -r): the next small files of that directory start moving from
   * the disk cache to memory, so their READs do not each wait for a disk read on the libuv pool.
   */
  private walkOn(parent: Inode, node: Inode): void {
    if (!parent.children || parent.children.size > WALKED_DIR_MAX) return;
    let walk = this.walks.get(parent);
    if (!walk) {
      const order = [...parent.children.values()];
      walk = { order, position: new Map(order.map((n, i) => [n, i])), last: -2, preloadedTo: 0 };
      this.walks.set(parent, walk);
    }
    const at = walk.position.get(node) ?? -2;
    const walking = at === walk.last + 1;
    walk.last = at;
    if (!walking) {
      walk.preloadedTo = 0;
      return;
    }
    const end = Math.min(walk.order.length, at + 1 + SIBLINGS_AHEAD);
    for (let i = Math.max(at + 1, walk.preloadedTo); i < end; i++) {
      const sibling = walk.order[i]!;
      const { table, row } = sibling;
      if (table.typeOf(row) !== 'reg' || table.num(row, 'size') > SMALL_FILE) continue;
      const chunks = table.chunksOf(row);
      if (chunks.length === 1) this.store.preloadFromDisk(sibling.layer, chunks);
    }
    walk.preloadedTo = end;
  }

  /** The regular file at `path`, following symlinks inside the tree (`..` stops at the root); undefined if none. */
  resolveFile(path: string): Inode | undefined {
    const node = this.resolve(path);
    return node?.table.typeOf(node.row) === 'reg' ? node : undefined;
  }

  /** The inode at `path`, following symlinks inside the tree (`..` stops at the root); undefined if none. */
  private resolve(path: string): Inode | undefined {
    const parts = path.split('/');
    const stack = [this.tree.root];
    for (let hops = 0; parts.length > 0; ) {
      const part = parts.shift()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (stack.length > 1) stack.pop();
        continue;
      }
      const child = stack[stack.length - 1]!.children?.get(part);
      if (!child) return undefined;
      if (child.table.typeOf(child.row) !== 'symlink') {
        stack.push(child);
        continue;
      }
      if (++hops > MAX_SYMLINK_HOPS) return undefined;
      const target = child.table.linkNameOf(child.row);
      if (target.startsWith('/')) stack.length = 1;
      parts.unshift(...target.split('/'));
    }
    return stack[stack.length - 1]!;
  }

  private imageFiles(): ChainFiles<Inode> & CommandFiles<Inode> {
    const chunksOf = (node: Inode) => node.table.chunksOf(node.row);
    return {
      pathOf: (node) => `/${node.table.path(node.row)}`,
      names: (path) => this.resolve(path)?.children?.keys(),
      many: (ranges) => {
        // One getEach per layer, so that nearby files go in one request.
        const wanted = ranges.map(({ file, from, to }) => {
          const all = chunksOf(file);
          return { file, from, to, chunks: from < to && all.length > 0 ? chunksIn(all, from, to) : [], datas: [] as Array<Promise<Buffer>> };
        });
        const layers = new Map<number, typeof wanted>();
        for (const w of wanted) {
          if (w.chunks.length === 0) continue;
          const list = layers.get(w.file.layer);
          if (list) list.push(w);
          else layers.set(w.file.layer, [w]);
        }
        for (const [layer, list] of layers) {
          // Behind every read, read-ahead and prefetch; a read that comes to need one of these moves its request ahead.
          const loads = this.store.getEach(layer, list.flatMap((w) => w.chunks), Priority.Speculative);
          let at = 0;
          for (const w of list) w.datas = loads.slice(at, (at += w.chunks.length));
        }
        return wanted.map(async (w) => (w.chunks.length === 0 ? Buffer.alloc(0) : assemble(w.chunks, await Promise.all(w.datas), w.from, w.to)));
      },
      resolve: (path) => this.resolveFile(path),
      size: (node) => node.table.num(node.row, 'size'),
      firstChunkEnd: (node) => {
        const c = chunksOf(node)[0];
        return c ? c.fileOffset + c.size : 0;
      },
      bytes: async (node, from, to) => {
        const all = chunksOf(node);
        if (from >= to || all.length === 0) return Buffer.alloc(0);
        const chunks = chunksIn(all, from, to);
        return assemble(chunks, await this.store.get(node.layer, chunks, Priority.ReadAhead), from, to);
      },
    };
  }

  statfs(): StatFs {
    const blocks = Math.ceil(this.tree.totalBytes / BLOCK);
    return { bsize: BLOCK, frsize: BLOCK, blocks, bfree: 0, bavail: 0, files: this.tree.inodeCount, ffree: 0, favail: 0, namemax: 255 };
  }
}

/** The directory holding `path` (absolute). */
function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf('/')) || '/';
}

/** The run a read at `offset` continues, or a new one (a first read at 0 counts as sequential). */
function runAt(state: ReadState, offset: number): Run {
  const found = state.runs.find((r) => r.lastEnd === offset);
  if (found) return found;
  const run = { lastEnd: offset === 0 ? 0 : -1, readAheadEnd: 0, window: READ_AHEAD_MIN };
  state.runs.unshift(run);
  if (state.runs.length > MAX_RUNS) state.runs.pop();
  return run;
}

/** Index of the chunk containing file offset `off` (chunks cover [0, size) in order). */
export function chunkIndexAt(chunks: readonly ChunkRef[], off: number): number {
  let lo = 0;
  let hi = chunks.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (chunks[mid]!.fileOffset <= off) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** The chunks overlapping file range [from, to), which must lie inside the file. */
function chunksIn(chunks: readonly ChunkRef[], from: number, to: number): ChunkRef[] {
  return chunks.slice(chunkIndexAt(chunks, from), chunkIndexAt(chunks, to - 1) + 1);
}

/** File bytes [from, to) out of the decoded `datas` of `chunks`. */
function assemble(chunks: readonly ChunkRef[], datas: readonly Buffer[], from: number, to: number): Buffer {
  if (datas.length === 1) return datas[0]!.subarray(from - chunks[0]!.fileOffset, to - chunks[0]!.fileOffset);
  const out = Buffer.allocUnsafe(to - from);
  datas.forEach((d, i) => {
    const c = chunks[i]!;
    const a = Math.max(from, c.fileOffset);
    const b = Math.min(to, c.fileOffset + c.size);
    d.copy(out, a - from, a - c.fileOffset, b - c.fileOffset);
  });
  return out;
}
