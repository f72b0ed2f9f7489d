// Python modules ahead of the importer. Importing a package cold is a chain of misses, each waiting
// a round trip for the one before: Python reads a module, runs it, and only then reads the modules
// it imports (numpy + pandas: ~500 module files read, ~60 serial misses even with the directory
// fetch). When a module (.py or .pyc) is first read, this reads the statements that import at
// module level, finds the files Python will open for them (package __init__, module, compiled
// module, extension module) and fetches them together at speculative priority (behind on-demand
// reads, read-ahead and the prefetch of known files; a read that needs one of them moves its request
// ahead), then follows those in turn: the import chain costs a round trip per level of the import
// tree, not per module.
// Only a guess: a module it does not find, or finds wrongly, costs a wasted fetch, never a wrong
// byte (reads go through the store and are verified like any other).
import type { ImageFiles } from './library-prefetch.js';
import { compiledImports } from './pyc.js';
import { importsOfSource, type ImportName } from './python-imports.js';

/** The image's files as the module prefetch needs them. */
export interface ModuleFiles<F> extends ImageFiles<F> {
  /** The names in the directory at `path` (symlinks followed), or undefined if it is none. */
  names(path: string): Iterable<string> | undefined;
  /** Bytes [from, to) of each file, fetched together at speculative priority (one request per run of nearby chunks). */
  many(ranges: ReadonlyArray<{ file: F; from: number; to: number }>): Array<Promise<Buffer>>;
}

/** Bounds for a hostile or odd image: modules followed per mount, and the size of one parsed. */
const MAX_FILES = 4096;
const MAX_MODULE = 4 << 20;
/** Batches of modules on their way at once (two: one crosses the link while the next one's request goes out). */
const BATCHES = 2;
/** Imports of one module resolved (each costs a few tree lookups per root, on the thread that answers FUSE; the most in numpy and pandas: 246, pandas/core/frame.py). */
const MAX_NAMES = 512;

/**
 * Modules CPython 3.11+ runs from its own binary (frozen), never from their files: a name that
 * resolves to one of these in the standard library is not fetched (nor followed).
 */
const FROZEN = new Set(['abc', 'codecs', 'io', '_collections_abc', '_sitebuiltins', 'genericpath', 'ntpath', 'posixpath', 'os', 'site', 'stat', 'importlib.util', 'importlib.machinery', 'runpy', 'zipimport', 'importlib._bootstrap', 'importlib._bootstrap_external']);

/**
 * What CPython imports as it starts, before the program's own imports: the codecs (the
 * encoding is the locale's; UTF-8 is the usual one) and the site hooks (site itself is frozen).
 */
const INTERPRETER_START: ImportName[] = ['encodings', 'encodings.utf_8', 'sitecustomize', 'usercustomize'].map((name) => ({ level: 0, name }));

/** A module file found for an import: read whole and followed, or (an extension) its first chunk handed on. */
interface Found<F> {
  file: F;
  path: string;
  extension: boolean;
}

export class ModulePrefetch<F> {
  private readonly seen = new Set<F>();
  private readonly running = new Set<Promise<void>>();
  /** sys.path guesses, in Python's order: the standard library first, then site directories. */
  private readonly roots: string[] = [];
  /** Per directory: extension module name → file name (`_json` → `_json.cpython-311-x86_64-linux-gnu.so`). */
  private readonly extensions = new Map<string, Map<string, string>>();
  /** The interpreter's cache tag (`cpython-311`), from the first pyc or versioned directory seen. */
  private tag: string | undefined;
  /** Whether that interpreter runs FROZEN from its binary (CPython 3.11 and later). */
  private freezes = false;
  /** What each import resolved to (by package directory for relative ones), until a root is added. */
  private readonly resolved = new Map<string, Array<Found<F>>>();
  /** Files found while BATCHES batches were on their way: they go together in the next. */
  private queue: Array<Found<F>> = [];
  private batches = 0;

  constructor(
    private readonly files: ModuleFiles<F>,
    /** `modulesAhead` counts the module files fetched ahead of the importer. */
    private readonly counters: { modulesAhead: number },
    /** An extension module's first chunk, once fetched (the library prefetch follows its libraries). */
    private readonly onExtension: (file: F, path: string, head: Buffer) => void = () => {},
  ) {}

  /**
   * `file` at `path` was just read from offset 0; `whole` is all of it if that read had it. A module
   * is followed; the interpreter itself (`…/python3.N`) brings what CPython imports as it starts.
   */
  noticeRead(file: F, path: string, whole?: Buffer): void {
    const interpreter = /\/python3\.(\d+)$/.exec(path);
    if ((!interpreter && !isModule(path)) || this.seen.has(file)) return;
    this.seen.add(file);
    if (interpreter) {
      this.noteTag(`cpython-3${interpreter[1]}`);
      this.fetch(this.find(INTERPRETER_START, ''));
      return;
    }
    const size = this.files.size(file);
    if (size > MAX_MODULE) return;
    this.track(
      (async () => {
        const bytes = whole && whole.length === size ? whole : await this.files.bytes(file, 0, size);
        this.follow(path, bytes);
      })(),
    );
  }

  /** Resolves once nothing is being fetched or followed (tests, and closing). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running);
  }

  private track(work: Promise<void>): void {
    // A failed fetch is the reader's to see, when (and if) it reads that file.
    const p = work.catch(() => {}).finally(() => this.running.delete(p));
    this.running.add(p);
  }

  /** Fetches what the module at `path` (its bytes) imports, and follows each module found. */
  private follow(path: string, bytes: Buffer): void {
    const pyc = path.endsWith('.pyc');
    const imports = pyc ? compiledImports(bytes) : importsOfSource(bytes.toString('latin1'));
    if (imports) this.fetch(this.find(imports, this.place(path)));
  }

  /** The files Python opens for `imports`, from a module in package directory `pkg`. */
  private find(imports: readonly ImportName[], pkg: string): Array<Found<F>> {
    const found: Array<Found<F>> = [];
    for (const imp of imports.slice(0, MAX_NAMES)) this.resolve(imp, pkg, found);
    return found;
  }

  /** Fetches the files not fetched before, together, and follows each module among them. */
  private fetch(found: ReadonlyArray<Found<F>>): void {
    const wanted: Array<Found<F>> = [];
    for (const f of found) {
      if (this.seen.has(f.file) || this.seen.size >= MAX_FILES) continue;
      this.seen.add(f.file);
      wanted.push(f);
    }
    this.counters.modulesAhead += wanted.length;
    this.queue.push(...wanted);
    this.pump();
  }

  /**
   * Sends what is queued as one batch, if fewer than BATCHES are on their way. Each parsed module
   * finds a few files (numpy + pandas: 15 KiB a module, median); sent one module at a time they
   * were ~260 requests that kept the link half idle waiting for round trips.
   */
  private pump(): void {
    if (this.batches >= BATCHES || this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.batches++;
    const ranges = batch.map((f) => ({ file: f.file, from: 0, to: f.extension ? this.files.firstChunkEnd(f.file) : Math.min(this.files.size(f.file), MAX_MODULE) }));
    const loads = this.files.many(ranges).map((bytes, i) => {
      const f = batch[i]!;
      return bytes.then((b) => {
        if (f.extension) this.onExtension(f.file, f.path, b);
        else if (b.length === this.files.size(f.file)) this.follow(f.path, b);
      });
    });
    for (const load of loads) this.track(load);
    this.track(
      Promise.allSettled(loads).then(() => {
        this.batches--;
        this.pump();
      }),
    );
  }

  /**
   * The module's package directory (where `.name` imports look) and, noted as a root, the
   * directory its top-level package sits in (an entry of sys.path).
   */
  private place(path: string): string {
    let dir = path.slice(0, path.lastIndexOf('/'));
    const cached = /^(.*)\/__pycache__$/.exec(dir);
    if (cached) dir = cached[1]!;
    const tag = /\.(cpython-3\d+)\.pyc$/.exec(path)?.[1] ?? /\/python3\.(\d+)\//.exec(path)?.[1];
    if (tag !== undefined) this.noteTag(tag.startsWith('cpython') ? tag : `cpython-3${tag}`);
    let root = dir;
    while (root !== '' && this.packageInit(root)) root = root.slice(0, root.lastIndexOf('/'));
    this.addRoot(root);
    return dir;
  }

  /** The interpreter's cache tag, from the first pyc, interpreter or versioned directory seen. */
  private noteTag(tag: string): void {
    if (this.tag !== undefined) return;
    this.tag = tag;
    const minor = tag.slice('cpython-3'.length);
    this.freezes = Number(minor) >= 11;
    this.addStandardRoots(minor);
  }

  /** Where Debian's and python.org's builds of Python 3.`minor` look for modules, in their order. */
  private addStandardRoots(minor: string): void {
    const v = `python3.${minor}`;
    for (const prefix of ['/usr/local/lib', '/usr/lib']) {
      for (const sub of [v, `${v}/lib-dynload`]) this.addRoot(`${prefix}/${sub}`);
    }
    for (const dir of [`/usr/local/lib/${v}/dist-packages`, `/usr/local/lib/${v}/site-packages`, '/usr/lib/python3/dist-packages', `/usr/lib/${v}/site-packages`]) this.addRoot(dir);
  }

  /** Notes a directory of the image as a place absolute imports look (once, if it exists). */
  private addRoot(dir: string): void {
    if (dir === '' || this.roots.includes(dir) || this.files.names(dir) === undefined) return;
    this.roots.push(dir);
    this.resolved.clear(); // an import found nowhere may be found there
  }

  /** Finds the files Python opens for `imp` from a module in package directory `pkg`. */
  private resolve(imp: ImportName, pkg: string, found: Array<Found<F>>): void {
    let base = '';
    if (imp.level > 0) {
      base = pkg;
      for (let i = 1; i < imp.level; i++) base = base.slice(0, base.lastIndexOf('/'));
      if (base === '') return;
    }
    // Modules of one package import the same names (numpy + pandas: 10 745 imports, a few tree walks per root each).
    const key = `${base}\0${imp.name}`;
    let files = this.resolved.get(key);
    if (!files) {
      files = [];
      const parts = imp.name.split('.');
      if (imp.level > 0) {
        // A module outside any package: its sibling is a top-level module, frozen ones included.
        if (!(this.roots.includes(base) && this.frozen(imp.name))) this.resolveIn(base, parts, files);
      } else if (!this.frozen(imp.name)) {
        for (const root of this.roots) if (this.resolveIn(root, parts, files)) break;
      }
      this.resolved.set(key, files);
    }
    found.push(...files);
  }

  /** Whether the interpreter (its cache tag) runs the standard module `name` frozen. */
  private frozen(name: string): boolean {
    if (!this.freezes) return false;
    for (let at = name.length; at > 0; at = name.lastIndexOf('.', at - 1)) if (FROZEN.has(name.slice(0, at))) return true;
    return false;
  }

  /** Resolves dotted `parts` under `base` as Python's path finder would; false if the first part is not there. */
  private resolveIn(base: string, parts: readonly string[], found: Array<Found<F>>): boolean {
    let dir = base;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      const init = this.packageInit(`${dir}/${part}`);
      if (init) {
        found.push({ ...init, extension: false });
        dir = `${dir}/${part}`;
        continue;
      }
      const module = this.moduleFile(dir, part);
      if (module) found.push(module);
      return i > 0 || module !== undefined;
    }
    return true;
  }

  /** The file Python reads for the package at `dir` (its compiled __init__ if any, else its source). */
  private packageInit(dir: string): { file: F; path: string } | undefined {
    return this.compiledOrSource(dir, '__init__');
  }

  /** The extension module, compiled module or source Python opens for module `name` in `dir`. */
  private moduleFile(dir: string, name: string): Found<F> | undefined {
    const ext = this.extensionsIn(dir).get(name);
    if (ext !== undefined) {
      const file = this.files.resolve(`${dir}/${ext}`);
      if (file !== undefined) return { file, path: `${dir}/${ext}`, extension: true };
    }
    const m = this.compiledOrSource(dir, name);
    return m && { ...m, extension: false };
  }

  private compiledOrSource(dir: string, name: string): { file: F; path: string } | undefined {
    for (const path of [this.tag && `${dir}/__pycache__/${name}.${this.tag}.pyc`, `${dir}/${name}.py`, `${dir}/${name}.pyc`]) {
      const file = path ? this.files.resolve(path) : undefined;
      if (file !== undefined) return { file, path: path! };
    }
    return undefined;
  }

  private extensionsIn(dir: string): Map<string, string> {
    let m = this.extensions.get(dir);
    if (m) return m;
    m = new Map();
    for (const n of this.files.names(dir) ?? []) {
      const ext = /^([A-Za-z_][A-Za-z0-9_]*)\.(?:[A-Za-z0-9_-]+\.)?so$/.exec(n);
      if (ext && !m.has(ext[1]!)) m.set(ext[1]!, n);
    }
    this.extensions.set(dir, m);
    return m;
  }
}

/** Whether `path` is a Python module Python reads to run it (source, or compiled in __pycache__ or alone). */
function isModule(path: string): boolean {
  return path.endsWith('.py') || path.endsWith('.pyc');
}
