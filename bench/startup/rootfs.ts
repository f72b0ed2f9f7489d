// Chooses the real files of this machine that make up each layer of a benchmark image: Debian
// packages (dpkg -L), whole directories, a byte budget of other real content as padding, and the
// shared libraries the layer's executables need (ldd). The result is a sorted list of paths
// relative to `/` (parents first), ready for `tar --files-from`.
import { execFile } from 'node:child_process';
import { lstat, open, readdir, readlink, realpath } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** What a layer holds, in terms of this machine's files. */
export interface LayerFiles {
  /** Debian packages whose files (not their directories' other content) go in. */
  packages?: string[];
  /** Files and directories (recursively) that go in; a symlink brings its target (not recursively). */
  paths?: string[];
  /** Regular files from these roots, walked in name order, until `bytes` are taken. */
  fill?: { roots: string[]; bytes: number };
  /** Add the shared libraries the layer's ELF files need (ldd), unless an earlier layer has them. */
  libraries?: boolean;
}

/** One selected entry: enough to key a cache on (a changed file changes the key). */
export interface SelectedEntry {
  path: string;
  type: 'dir' | 'file' | 'symlink';
  size: number;
  mtimeMs: number;
  mode: number;
}

/** The entries of one layer, keyed by path relative to '/'. */
export class Selection {
  readonly entries = new Map<string, SelectedEntry>();
  bytes = 0;

  /** Sorted relative paths: a parent always sorts before its children. */
  paths(): string[] {
    return [...this.entries.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  async add(absPath: string, recursive: boolean, optional = false): Promise<void> {
    // Resolve symlinked parents (/lib → usr/lib) so a file is stored once, at its real place.
    let path: string;
    try {
      path = join(await realpath(dirname(absPath)), basename(absPath));
    } catch (err) {
      if (optional) return;
      throw err;
    }
    const rel = path.replace(/^\/+/, '');
    if (rel === '' || this.entries.has(rel)) {
      if (rel !== '' && recursive && this.entries.get(rel)!.type === 'dir') await this.addChildren(path);
      return;
    }
    let st;
    try {
      st = await lstat(path);
    } catch (err) {
      if (optional) return;
      throw new Error(`benchmark image: ${absPath}: ${(err as Error).message}`);
    }
    const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : undefined;
    if (!type) return; // sockets, devices: not image content
    await this.addParents(path);
    this.entries.set(rel, { path: rel, type, size: type === 'file' ? st.size : 0, mtimeMs: Math.trunc(st.mtimeMs), mode: st.mode });
    if (type === 'file') this.bytes += st.size;
    if (type === 'symlink') await this.add(resolve(dirname(path), await readlink(path)), false, true);
    if (type === 'dir' && recursive) await this.addChildren(path);
  }

  private async addChildren(dir: string): Promise<void> {
    for (const name of (await readdir(dir)).sort()) await this.add(join(dir, name), true);
  }

  private async addParents(path: string): Promise<void> {
    const parent = dirname(path);
    if (parent === '/' || this.entries.has(parent.slice(1))) return;
    await this.add(parent, false);
  }
}

async function packageFiles(pkg: string): Promise<string[]> {
  const { stdout } = await run('dpkg', ['-L', pkg], { maxBuffer: 64 << 20 });
  return stdout.split('\n').filter((l) => l.startsWith('/') && l !== '/.');
}

async function isElf(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    return head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } finally {
    await fh.close();
  }
}

/** Absolute paths of the shared libraries (and the loader) `file` needs, as ldd resolves them. */
async function sharedLibraries(file: string): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await run('ldd', [file]));
  } catch {
    return []; // static or not loadable here: nothing to add
  }
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

/** Selects the files of `layer`; `earlier` are the layers below it (libraries they hold are not repeated). */
export async function selectLayer(layer: LayerFiles, earlier: Selection[]): Promise<Selection> {
  const sel = new Selection();
  for (const pkg of layer.packages ?? []) {
    for (const f of await packageFiles(pkg)) await sel.add(f, false, true);
  }
  for (const p of layer.paths ?? []) await sel.add(p, true);
  if (layer.fill) await fill(sel, layer.fill.roots, layer.fill.bytes);
  if (layer.libraries) {
    const have = (rel: string) => sel.entries.has(rel) || earlier.some((e) => e.entries.has(rel));
    const candidates = [...sel.entries.values()].filter((e) => e.type === 'file' && (e.mode & 0o111 || /\.so(\.|$)/.test(e.path)));
    // Iterate until closed: an added library may need others.
    for (let pending = candidates; pending.length > 0; ) {
      const added: SelectedEntry[] = [];
      for (const e of pending) {
        if (!(await isElf(`/${e.path}`))) continue;
        for (const lib of await sharedLibraries(`/${e.path}`)) {
          const before = sel.entries.size;
          const canonical = join(await realpath(dirname(lib)), basename(lib)).slice(1);
          if (have(canonical)) continue;
          await sel.add(lib, false);
          if (sel.entries.size > before) added.push(...[...sel.entries.values()].slice(before).filter((x) => x.type === 'file'));
        }
      }
      pending = added;
    }
  }
  return sel;
}

/** Adds regular files from `roots` in name order until `bytes` have been taken. */
async function fill(sel: Selection, roots: string[], bytes: number): Promise<void> {
  const target = sel.bytes + bytes;
  const walk = async (dir: string): Promise<void> => {
    for (const ent of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (sel.bytes >= target) return;
      const p = join(dir, ent.name);
      if (ent.isDirectory()) await walk(p);
      else if (ent.isFile()) await sel.add(p, false);
    }
  };
  for (const root of roots) if (sel.bytes < target) await walk(root);
}
