// Python modules ahead of the importer (a chain prefetch: chain-prefetch.ts). Importing a package
// cold is a chain of misses: Python reads a module, runs it, and only then reads the modules it
// imports (numpy + pandas: ~500 module files read, ~60 serial misses even with the directory
// fetch). When a module (.py or .pyc) is first read, this reads the statements that import at
// module level, finds the files Python will open for them (package __init__, module, compiled
// module, extension module) and fetches them together, then follows those in turn.
import { ChainPrefetch, type ChainFiles, type Found } from './chain-prefetch.js';
import { compiledImports } from './pyc.js';
import { importsOfSource, type ImportName } from './python-imports.js';

/** Imports of one module resolved (each costs a few tree lookups per root, on the thread that answers FUSE; the most in numpy and pandas: 246, pandas/core/frame.py). */
const MAX_NAMES = 512;

/**
 * Modules CPython 3.11+ runs from its own binary (frozen), never from their files: a name that
 * resolves to one of these in the standard library is not fetched (nor followed).
 */
const FROZEN = new Set(['abc', 'codecs', 'io', '_collections_abc', '_sitebuiltins', 'genericpath', 'ntpath', 'posixpath', 'os', 'site', 'stat', 'importlib.util', 'importlib.machinery', 'runpy', 'zipimport', 'importlib._bootstrap', 'importlib._bootstrap_external']);

/** Directories of third-party packages: site and dist-packages. */
const THIRD_PARTY = /\/(site|dist)-packages$/;
/** Bounds of a package fetched whole (uncompressed bytes, files, directory depth), and the directories left out of it. */
const PACKAGE_MAX = 32 << 20;
const PACKAGE_FILES = 2048;
const PACKAGE_DEPTH = 8;
const PACKAGE_SKIPPED = new Set(['tests', 'test', 'testing', 'benchmarks']);

/**
 * What CPython imports as it starts, before the program's own imports: the codecs (the
 * encoding is the locale's; UTF-8 is the usual one) and the site hooks (site itself is frozen).
 */
const INTERPRETER_START: ImportName[] = ['encodings', 'encodings.utf_8', 'sitecustomize', 'usercustomize'].map((name) => ({ level: 0, name }));

export class ModulePrefetch<F> extends ChainPrefetch<F> {
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
  /** Third-party packages found (fetched whole, see `wholePackage`), and those found since the last `find`. */
  private readonly packages = new Set<string>();
  private packagesDue: string[] = [];

  constructor(
    files: ChainFiles<F>,
    /** `modulesAhead` counts the module files fetched ahead of the importer. */
    counters: { modulesAhead: number },
    /** An extension module's first chunk, once fetched (the library prefetch follows its libraries). */
    private readonly onExtension: (file: F, path: string, head: Buffer) => void = () => {},
  ) {
    super(files, (n) => (counters.modulesAhead += n));
  }

  /**
   * `file` at `path` was just read from offset 0; `whole` is all of it if that read had it. A module
   * is followed; the interpreter itself (`…/python3.N`) brings what CPython imports as it starts.
   */
  noticeRead(file: F, path: string, whole?: Buffer): void {
    const interpreter = /\/python3\.(\d+)$/.exec(path);
    if (interpreter) {
      if (!this.firstTime(file)) return;
      this.noteTag(`cpython-3${interpreter[1]}`);
      this.fetch(this.find(INTERPRETER_START, ''));
    } else if (isModule(path)) this.start({ file, path }, whole);
  }

  /**
   * The interpreter `file` (at `path`) is about to run `args`, its command line after the program,
   * in `cwd`: what CPython imports as it starts, then what `-c` code imports, the `-m` module or the
   * script (followed as a module).
   */
  noticeCommand(file: F, path: string, args: readonly string[], cwd: string): void {
    this.noticeRead(file, path);
    const main = pythonMain(args);
    if (main === undefined) return;
    if ('script' in main) {
      const script = main.script.startsWith('/') ? main.script : `${cwd === '/' ? '' : cwd}/${main.script}`;
      const found = this.files.resolve(script);
      if (found !== undefined) this.start({ file: found, path: script });
      return;
    }
    // sys.path[0] is the working directory (after the standard library's here: a module there
    // shadowing one of the standard library's is rare; the image's root is left out).
    if (cwd !== '/') this.addRoot(cwd);
    this.fetch(this.find('code' in main ? importsOfSource(main.code) : [{ level: 0, name: main.module }], ''));
  }

  protected override onHead(f: Found<F>, head: Buffer): void {
    this.onExtension(f.file, f.path, head);
  }

  /** Fetches what the module at `path` (its bytes) imports, and follows each module found. */
  protected follow({ path }: Found<F>, bytes: Buffer): void {
    const pyc = path.endsWith('.pyc');
    const imports = pyc ? compiledImports(bytes) : importsOfSource(bytes.toString('latin1'));
    if (imports) this.fetch(this.find(imports, this.place(path)));
  }

  /** The files Python opens for `imports`, from a module in package directory `pkg`. */
  private find(imports: readonly ImportName[], pkg: string): Array<Found<F>> {
    const found: Array<Found<F>> = [];
    for (const imp of imports.slice(0, MAX_NAMES)) this.resolve(imp, pkg, found);
    for (const dir of this.packagesDue.splice(0)) this.wholePackage(dir, found);
    return found;
  }

  /**
   * Adds the files Python may open in the third-party package at `dir` (its modules, compiled ones
   * instead of their sources, and extension modules; no tests) to `found`, unless they are more than
   * PACKAGE_MAX bytes. Importing such a package runs most of it (numpy: 3.3 of its 4.5 MB without
   * tests; pandas 7.6 of 8.3), a chain of a dozen levels, each a round trip; whole, it is a few
   * large requests in tar order. An extension module's first chunk goes to the library prefetch,
   * the rest is fetched beside it.
   */
  private wholePackage(dir: string, found: Array<Found<F>>): void {
    const modules: Array<Found<F>> = [];
    const rest: Array<{ file: F; from: number; to: number }> = [];
    let bytes = 0;
    const walk = (at: string, depth: number): boolean => {
      const names = [...(this.files.names(at) ?? [])];
      const cached = new Set(names.includes('__pycache__') ? this.files.names(`${at}/__pycache__`) : []);
      for (const name of names) {
        const path = `${at}/${name}`;
        if (this.files.names(path) !== undefined) {
          if (PACKAGE_SKIPPED.has(name) || depth >= PACKAGE_DEPTH) continue;
          if (!walk(path, depth + 1)) return false;
          continue;
        }
        const compiled = name.endsWith('.pyc') && (at.endsWith('/__pycache__') ? this.tag !== undefined && name.endsWith(`.${this.tag}.pyc`) : true);
        const source = name.endsWith('.py') && !(this.tag !== undefined && cached.has(`${name.slice(0, -3)}.${this.tag}.pyc`));
        const extension = /\.so$/.test(name);
        if (!compiled && !source && !extension) continue;
        const file = this.files.resolve(path);
        if (file === undefined) continue;
        const size = this.files.size(file);
        if ((bytes += size) > PACKAGE_MAX || modules.length >= PACKAGE_FILES) return false;
        if (!extension) modules.push({ file, path });
        else {
          modules.push({ file, path, head: true });
          rest.push({ file, from: this.files.firstChunkEnd(file), to: size });
        }
      }
      return true;
    };
    if (!walk(dir, 0)) return;
    found.push(...modules);
    for (const fetched of this.files.many(rest)) this.inFlight.track(fetched);
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
        found.push(init);
        if (i === 0 && THIRD_PARTY.test(base) && !this.packages.has(`${dir}/${part}`)) {
          this.packages.add(`${dir}/${part}`);
          this.packagesDue.push(`${dir}/${part}`);
        }
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
      if (file !== undefined) return { file, path: `${dir}/${ext}`, head: true };
    }
    return this.compiledOrSource(dir, name);
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

/**
 * What `python ARGS` runs: `-c`'s code, `-m`'s module or a script's path (as given); undefined for
 * the prompt or standard input. Options as CPython parses them: short ones grouped, -W and -X
 * taking a value, -c and -m ending the options.
 */
function pythonMain(args: readonly string[]): { code: string } | { module: string } | { script: string } | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') return args[i + 1] === undefined || args[i + 1] === '-' ? undefined : { script: args[i + 1]! };
    if (arg === '-') return undefined;
    if (arg.startsWith('--')) {
      if (arg === '--check-hash-based-pycs') i++;
      continue;
    }
    if (!arg.startsWith('-')) return { script: arg };
    for (let j = 1; j < arg.length; j++) {
      const opt = arg[j]!;
      if (!'cmWX'.includes(opt)) continue;
      const value = j + 1 < arg.length ? arg.slice(j + 1) : args[++i];
      if (value === undefined) return undefined;
      if (opt === 'c') return { code: value };
      if (opt === 'm') return { module: value };
      break;
    }
  }
  return undefined;
}

/** Whether `path` is a Python module Python reads to run it (source, or compiled in __pycache__ or alone). */
function isModule(path: string): boolean {
  return path.endsWith('.py') || path.endsWith('.pyc');
}
