// Shared libraries ahead of the dynamic loader. Starting a program cold is a chain of misses, each
// waiting a round trip for the one before: the kernel reads the program, the loader reads its
// interpreter, then each DT_NEEDED library in turn, then theirs (a gcc compile: 12 of its 39 cold
// misses; python's start: 6 of 28). When a file is first read from offset 0 and is an ELF program
// or library, this finds what the loader will open next and fetches their first chunks, all at
// once at read-ahead priority (behind on-demand reads), then follows those libraries in turn.
// When the program is GCC's compiler proper, what the driver runs after it comes too
// (toolchain-prefetch.ts). Only a guess: a library it does not find, or finds wrongly, costs a
// wasted fetch, never a wrong byte (reads go through the store and are verified like any other).
import { InFlight } from './in-flight.js';
import { cString, multiarchTriplet, parseDynamic, parseElfHead, type FileRange } from './elf.js';
import { gccNextFiles } from './toolchain-prefetch.js';

/** The files of the mounted image, as the prefetch needs them. `F` is whatever names one file. */
export interface ImageFiles<F> {
  /** The regular file at `path` with symlinks followed inside the image, or undefined. */
  resolve(path: string): F | undefined;
  size(file: F): number;
  /** Where the file's first chunk ends: a miss at offset 0 brings that much anyway. */
  firstChunkEnd(file: F): number;
  /** The file's bytes [from, to), at read-ahead priority. */
  bytes(file: F, from: number, to: number): Promise<Buffer>;
  /** Bytes [from, to) of each file, fetched together at speculative priority (one request per run of nearby chunks). */
  many(ranges: ReadonlyArray<{ file: F; from: number; to: number }>): Array<Promise<Buffer>>;
}

/** The loader's cache of library paths: read by every dynamically linked program start. */
const LD_SO_CACHE = '/etc/ld.so.cache';
/** The C library that `glibcStartFiles` go with. */
const GLIBC = 'libc.so.6';
/**
 * Files glibc reads as many programs start, each a miss of its own otherwise: the NSS configuration
 * and databases (getpwuid, getgrgid: shells, `id`, Python's site), the C.UTF-8 locale's character
 * data (the locale images set in LANG, and the one Python coerces the C locale to) and the gconv
 * modules cache (setlocale and iconv with a UTF-8 locale). Python's start read the four it uses one
 * by one, a round trip each after libc was in. Small, so a wrong guess costs little.
 */
function glibcStartFiles(machine: number): string[] {
  const triplet = multiarchTriplet(machine);
  return ['/etc/nsswitch.conf', '/etc/passwd', '/etc/group', '/usr/lib/locale/C.utf8/LC_CTYPE', ...(triplet ? [`/usr/lib/${triplet}/gconv/gconv-modules.cache`] : [])];
}
/**
 * The dynamic loaders programs name as their interpreter (PT_INTERP), with the machine they load
 * for: glibc's (for which libc.so.6 comes too) and musl's (loader and C library in one).
 */
const LOADERS: ReadonlyArray<{ path: string; machine: number; glibc: boolean }> = [
  { path: '/lib64/ld-linux-x86-64.so.2', machine: 62, glibc: true },
  { path: '/lib/ld-linux-aarch64.so.1', machine: 183, glibc: true },
  { path: '/lib/ld-linux-riscv64-lp64d.so.1', machine: 243, glibc: true },
  { path: '/lib/ld-musl-x86_64.so.1', machine: 62, glibc: false },
  { path: '/lib/ld-musl-aarch64.so.1', machine: 183, glibc: false },
];
/** A start file larger than this (uncompressed) is left to its reader. */
const START_FILE_MAX = 1 << 20;
/** A link input larger than this is left to the linker (of an archive it reads the index and the members it needs). */
const LINK_INPUT_MAX = 4 << 20;
/** Bounds for a hostile or odd image: libraries followed per mount, and depth of the chain. */
const MAX_FILES = 512;
const MAX_DEPTH = 8;

/** Where glibc's loader looks, after the file's own run path: the multiarch and the usual directories. */
function searchDirs(machine: number, runpath: string | undefined, origin: string): string[] {
  const dirs: string[] = [];
  for (const d of runpath?.split(':') ?? []) {
    const dir = d.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin);
    if (dir.startsWith('/')) dirs.push(dir);
  }
  const triplet = multiarchTriplet(machine);
  if (triplet) dirs.push(`/lib/${triplet}`, `/usr/lib/${triplet}`);
  dirs.push('/lib64', '/usr/lib64', '/lib', '/usr/lib');
  return dirs;
}

export class LibraryPrefetch<F> {
  private readonly seen = new Set<F>();
  private readonly inFlight = new InFlight();
  private ldCacheFetched = false;
  private glibcStartFetched = false;
  private toolchainFetched = false;

  constructor(
    private readonly files: ImageFiles<F>,
    /** `filesAhead` counts the files fetched ahead of the loader (libraries, interpreters, its cache). */
    private readonly counters: { filesAhead: number },
  ) {}

  /** `head`: the bytes from offset 0 of `file` (at least its first chunk), just read at `path`. */
  noticeHead(file: F, path: string, head: Buffer): void {
    if (this.seen.has(file)) return;
    this.seen.add(file);
    this.inFlight.track(this.follow(file, path, head, 0));
    const toolchain = this.toolchainFetched ? undefined : gccNextFiles(path);
    if (toolchain) {
      // GCC's compiler proper is starting: what the driver runs after it, behind its reads (toolchain-prefetch.ts).
      this.toolchainFetched = true;
      for (const p of toolchain.programs) this.fetchAhead(this.files.resolve(p), p, 0, true);
      this.fetchTogether(toolchain.inputs, LINK_INPUT_MAX);
    }
  }

  /**
   * Fetches what every dynamically linked program of the image opens first, before any has
   * started: the loader, the C library (and what it needs), the loader's cache and glibc's start
   * files; nothing for an image without a known loader. For a mount that has just come up: a
   * container runtime takes ~0.2 s to set up the process while the link is idle, and a program's
   * own libraries are then all that is left to fetch after it (python's start: 1 of its 1.7 MB).
   */
  fetchLoader(): void {
    const loader = LOADERS.map((l) => ({ ...l, file: this.files.resolve(l.path) })).find((l) => l.file !== undefined);
    if (!loader) return;
    this.fetchAhead(loader.file, loader.path, 0, true);
    if (!loader.glibc) return;
    for (const dir of searchDirs(loader.machine, undefined, '/')) {
      const libc = this.files.resolve(`${dir}/${GLIBC}`);
      if (libc === undefined) continue;
      this.fetchAhead(libc, `${dir}/${GLIBC}`, 0, true);
      this.fetchGlibcStartFiles(loader.machine);
      break;
    }
    this.fetchLdCache(0);
  }

  /** Fetches the loader's cache (once per mount). */
  private fetchLdCache(depth: number): void {
    if (this.ldCacheFetched) return;
    this.ldCacheFetched = true;
    this.fetchAhead(this.files.resolve(LD_SO_CACHE), LD_SO_CACHE, depth, false);
  }

  /** Resolves once nothing is being fetched or followed (tests). */
  idle(): Promise<void> {
    return this.inFlight.idle();
  }

  private async follow(file: F, path: string, head: Buffer, depth: number): Promise<void> {
    const elf = parseElfHead(head, this.files.size(file));
    if (!elf) return;
    const range = (r: FileRange) => (r.offset + r.size <= head.length ? Promise.resolve(head.subarray(r.offset, r.offset + r.size)) : this.files.bytes(file, r.offset, r.offset + r.size));
    /** What the loader opens next, each resolved once. */
    const found: Array<{ file: F | undefined; path: string }> = [];
    const add = (path: string) => found.push({ file: this.files.resolve(path), path });
    if (elf.interp) {
      const interp = cString(await range(elf.interp), 0);
      if (interp?.startsWith('/')) add(interp);
    }
    const dyn = elf.dynamic && parseDynamic(elf, await range(elf.dynamic));
    if (dyn && dyn.needed.length > 0) {
      const strtab = await range(dyn.names);
      const runpath = dyn.runpath === undefined ? undefined : cString(strtab, dyn.runpath);
      const dirs = searchDirs(elf.machine, runpath, path.slice(0, path.lastIndexOf('/')) || '/');
      for (const at of dyn.needed) {
        const name = cString(strtab, at);
        if (name === undefined) continue;
        if (name.includes('/')) {
          if (name.startsWith('/')) add(name);
          continue;
        }
        for (const dir of dirs) {
          const file = this.files.resolve(`${dir}/${name}`);
          if (file === undefined) continue;
          found.push({ file, path: `${dir}/${name}` });
          if (name === GLIBC) this.fetchGlibcStartFiles(elf.machine);
          break;
        }
      }
      this.fetchLdCache(depth);
    }
    for (const f of found) this.fetchAhead(f.file, f.path, depth, true);
  }

  /** Fetches the `glibcStartFiles` the image has, together (once per mount). */
  private fetchGlibcStartFiles(machine: number): void {
    if (this.glibcStartFetched) return;
    this.glibcStartFetched = true;
    this.fetchTogether(glibcStartFiles(machine), START_FILE_MAX);
  }

  /** Fetches, whole and together at speculative priority, those of `paths` the image has of at most `maxSize` bytes. */
  private fetchTogether(paths: readonly string[], maxSize: number): void {
    const ranges = [];
    for (const path of paths) {
      const file = this.files.resolve(path);
      if (file === undefined || this.seen.has(file) || this.files.size(file) > maxSize) continue;
      this.seen.add(file);
      ranges.push({ file, from: 0, to: this.files.size(file) });
    }
    this.counters.filesAhead += ranges.length;
    for (const fetched of this.files.many(ranges)) this.inFlight.track(fetched);
  }

  /** Fetches the first chunk of `file` (at `path`) and, for a library, follows what it needs. */
  private fetchAhead(file: F | undefined, path: string, depth: number, library: boolean): void {
    if (file === undefined || this.seen.has(file) || depth >= MAX_DEPTH || this.seen.size >= MAX_FILES) return;
    this.seen.add(file);
    this.counters.filesAhead++;
    this.inFlight.track(
      (async () => {
        const head = await this.files.bytes(file, 0, this.files.firstChunkEnd(file));
        if (library) await this.follow(file, path, head, depth + 1);
      })(),
    );
  }
}
