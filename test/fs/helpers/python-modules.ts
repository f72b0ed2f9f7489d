// Test helper: Python modules compiled by the machine's python3 (py_compile), with the cache tag
// and version of that interpreter, for the pyc reader and the module prefetch.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface CompiledModules {
  /** sys.implementation.cache_tag, e.g. cpython-311. */
  tag: string;
  /** `3.11` for python3.11. */
  version: string;
  /** Each source's pyc, by the source's relative path. */
  pyc: Map<string, Buffer>;
}

/** Compiles `sources` (relative path → text) with python3 and returns their pyc files. */
export async function compileModules(sources: Record<string, string>): Promise<CompiledModules> {
  const dir = await mkdtemp(join(tmpdir(), 'starling-pyc-'));
  try {
    for (const [path, text] of Object.entries(sources)) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), text);
    }
    const script = [
      'import importlib.util, json, py_compile, sys',
      'out = {}',
      'for p in sys.argv[1:]:',
      '    out[p] = py_compile.compile(p, cfile=importlib.util.cache_from_source(p), doraise=True)',
      'print(json.dumps({"tag": sys.implementation.cache_tag, "version": "%d.%d" % sys.version_info[:2], "pyc": out}))',
    ].join('\n');
    const { stdout } = await run('python3', ['-c', script, ...Object.keys(sources).map((p) => join(dir, p))]);
    const got = JSON.parse(stdout) as { tag: string; version: string; pyc: Record<string, string> };
    const pyc = new Map<string, Buffer>();
    for (const [src, file] of Object.entries(got.pyc)) pyc.set(src.slice(dir.length + 1), await readFile(file));
    return { tag: got.tag, version: got.version, pyc };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
