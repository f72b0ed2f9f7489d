// C and C++ headers ahead of the compiler (a chain prefetch: chain-prefetch.ts). Compiling cold is
// a chain of misses: the preprocessor reads a header and only then the headers it includes (a gcc
// compile of hello.c: 9 serial misses from stdc-predef.h to bits/floatn.h, a round trip each). When
// a source or header is first read, its #include lines are resolved as gcc would resolve them (the
// including file's directory for "quoted" names; then gcc's own include directory, /usr/local/include,
// the multiarch and the plain /usr/include, after the C++ library's directories for C++) and the
// headers found are fetched together, then followed in turn.
import { includesOf, type Include } from './c-includes.js';
import { ChainPrefetch, type ChainFiles, type Found } from './chain-prefetch.js';

/** A header found, and whether the chain it is in is C++ (whose library directories come first). */
interface Header<F> extends Found<F> {
  cxx: boolean;
}

/** Sources a compiler reads first (translation units) and headers, by name. */
const C_SOURCE = /\.c$/;
const CXX_SOURCE = /\.(cc|cp|cpp|cxx|c\+\+|C)$/;
const C_HEADER = /\.(h|inl)$/;
const CXX_HEADER = /\.(hh|hpp|hxx|h\+\+|ipp|tcc)$/;
/** The C++ library's headers have no suffix (`<vector>`): they are known by their directory. */
const CXX_LIBRARY = /\/include\/(?:[^/]+\/)?c\+\+\//;
/** What gcc reads before every translation unit (-include of its own). */
const PREDEFINED = '/usr/include/stdc-predef.h';

export class IncludePrefetch<F> extends ChainPrefetch<F, Header<F>> {
  /** The system include directories, in gcc's order, for C and for C++ (found in the image once). */
  private dirs: { c: string[]; cxx: string[] } | undefined;
  /** What each include resolved to: headers of one library include the same ones (glibc's stdlib.h: ~90). */
  private readonly resolved = new Map<string, Found<F> | undefined>();

  constructor(
    files: ChainFiles<F>,
    /** `headersAhead` counts the headers fetched ahead of the compiler. */
    counters: { headersAhead: number },
  ) {
    super(files, (n) => (counters.headersAhead += n));
  }

  /** `file` at `path` was just read from offset 0 (`whole`: all of it, if that read had it). */
  noticeRead(file: F, path: string, whole?: Buffer): void {
    const cxx = CXX_SOURCE.test(path) || CXX_HEADER.test(path) || CXX_LIBRARY.test(path);
    const unit = C_SOURCE.test(path) || CXX_SOURCE.test(path);
    if (!cxx && !unit && !C_HEADER.test(path)) return;
    if (unit) {
      const predefined = this.files.resolve(PREDEFINED);
      if (predefined !== undefined) this.fetch([{ file: predefined, path: PREDEFINED, cxx }]);
    }
    this.start({ file, path, cxx }, whole);
  }

  protected follow(including: Header<F>, bytes: Buffer): void {
    const found: Array<Header<F>> = [];
    const here = including.path.slice(0, including.path.lastIndexOf('/'));
    for (const inc of includesOf(bytes.toString('latin1'))) {
      // Only a quoted or #include_next name depends on where the including file is.
      const key = `${including.cxx}\0${inc.quoted || inc.next ? here : ''}\0${inc.next}\0${inc.name}`;
      let header = this.resolved.get(key);
      if (header === undefined && !this.resolved.has(key)) this.resolved.set(key, (header = this.resolveInclude(inc, here, including.cxx)));
      if (header) found.push({ ...header, cxx: including.cxx });
    }
    this.fetch(found);
  }

  /** The file gcc opens for `inc` in a file of the directory `here`, if the image has it. */
  private resolveInclude(inc: Include, here: string, cxx: boolean): Found<F> | undefined {
    if (inc.name.startsWith('/')) return this.found(inc.name);
    if (inc.quoted && !inc.next) {
      const beside = this.found(`${here}/${inc.name}`);
      if (beside) return beside;
    }
    let dirs = this.systemDirs(cxx);
    if (inc.next) {
      // After the directory the including file is in (a header of gcc's or the C++ library's wrapping glibc's).
      const at = dirs.indexOf(here);
      dirs = at >= 0 ? dirs.slice(at + 1) : dirs;
    }
    for (const d of dirs) {
      const header = this.found(`${d}/${inc.name}`);
      if (header) return header;
    }
    return undefined;
  }

  private found(path: string): Found<F> | undefined {
    const file = this.files.resolve(path);
    return file === undefined ? undefined : { file, path };
  }

  /** gcc's system include directories that the image has, in gcc's order (`gcc -v -E -`), every installed version. */
  private systemDirs(cxx: boolean): string[] {
    if (!this.dirs) {
      const has = (d: string) => this.files.names(d) !== undefined;
      const triplets = [...(this.files.names('/usr/lib/gcc') ?? [])].sort();
      const versions = (dir: string) => [...(this.files.names(dir) ?? [])].sort().reverse();
      const gcc = triplets.flatMap((t) => versions(`/usr/lib/gcc/${t}`).map((v) => `/usr/lib/gcc/${t}/${v}/include`));
      const c = [...gcc, '/usr/local/include', ...triplets.map((t) => `/usr/include/${t}`), '/usr/include'].filter(has);
      const cxxLib = versions('/usr/include/c++').flatMap((v) => [`/usr/include/c++/${v}`, ...triplets.map((t) => `/usr/include/${t}/c++/${v}`), `/usr/include/c++/${v}/backward`]);
      this.dirs = { c, cxx: [...cxxLib.filter(has), ...c] };
    }
    return cxx ? this.dirs.cxx : this.dirs.c;
  }
}
