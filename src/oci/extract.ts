// Applies one layer tar to a rootfs directory, on top of the layers already extracted there
// (formats.md §1d.1): `.wh.NAME` deletes NAME from lower layers, `.wh..wh..opq` empties a directory
// of what lower layers put in it; both apply only to lower layers, wherever they sit in the tar.
//
// Paths in a layer are untrusted. An entry name or hardlink target that is absolute or has a `..`
// component is refused. Symlinks already in the tree are followed the way the container would see
// them (an absolute target means DIR/target), and one that leads above DIR is refused: nothing is
// ever created, changed or removed outside DIR. The final component of a path is never followed:
// an entry replaces whatever symlink is there.
//
// Metadata: mode, uid/gid (when running as root), mtime, xattrs (raw bytes, through `setfattr
// --restore`: Node has no setxattr), devices and fifos (devices only as root; skipped otherwise,
// as rootless engines do). Directory modes and times are set at the end of the layer, so a
// read-only directory can still receive its children and keeps its recorded mtime.
import { execFile, spawn } from 'node:child_process';
import { constants, link, lchown, lstat, lutimes, mkdir, open, readdir, readlink, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { TarReader } from '../format/estargz/tar-reader.js';
import type { TarHeader } from '../format/tar-entry.js';

const run = promisify(execFile);

export class ExtractError extends Error {}

export interface ExtractResult {
  entries: number;
  /** Regular-file payload bytes written. */
  bytes: number;
  whiteouts: number;
  /** Device nodes not created because the process is not root. */
  skippedDevices: number;
}

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE = '.wh..wh..opq';
const MAX_SYMLINK_HOPS = 40;
const XATTR_PREFIX = 'SCHILY.xattr.';
/** Files up to this size are buffered and written in the background, at most MAX_PENDING at once. */
const SMALL_FILE = 256 << 10;
const MAX_PENDING = 32;

/** The current entry's whole payload, copied (the reader's views are only valid until its next call). */
async function readWhole(reader: TarReader, size: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(size);
  let n = 0;
  for (let b = await reader.readPayload(size - n || 1); b; b = await reader.readPayload(size - n || 1)) {
    b.copy(out, n);
    n += b.length;
  }
  if (n !== size) throw new ExtractError(`short payload: ${n} of ${size} bytes`);
  return out;
}

interface DeferredDir {
  abs: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
}

/** `a/./b//c/` → ['a','b','c']; refuses absolute names, `..` and NUL. */
function entryParts(name: string, what: string): string[] {
  if (name.includes('\0')) throw new ExtractError(`${what} ${JSON.stringify(name)} contains a NUL byte`);
  if (name.startsWith('/')) throw new ExtractError(`${what} ${JSON.stringify(name)} is an absolute path`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new ExtractError(`${what} ${JSON.stringify(name)} contains '..'`);
  return parts;
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

async function lstatOrUndefined(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** The mtime of a header, with PAX sub-second precision when present. */
function mtimeOf(h: TarHeader): Date {
  const pax = h.pax?.mtime;
  if (pax !== undefined && /^-?\d+(\.\d+)?$/.test(pax)) return new Date(Number(pax) * 1000);
  return h.mtime ?? new Date(0);
}

/** getfattr's dump quoting: bytes outside printable ASCII, '\\' and '=' as \ooo. */
function quoteAttr(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) out += b < 0x21 || b > 0x7e || b === 0x5c || b === 0x3d ? `\\${b.toString(8).padStart(3, '0')}` : String.fromCharCode(b);
  return out;
}

class LayerExtractor {
  readonly result: ExtractResult = { entries: 0, bytes: 0, whiteouts: 0, skippedDevices: 0 };
  /** Paths (relative to root, symlinks resolved) this layer created: whiteouts and opaque dirs spare them. */
  private readonly written = new Set<string>();
  private readonly dirs: DeferredDir[] = [];
  private readonly xattrs: string[] = [];
  /** Resolved parent directories, by entry path; dropped whenever a symlink or directory changes. */
  private dirCache = new Map<string, { abs: string; rel: string }>();
  private readonly isRoot = process.getuid?.() === 0;
  private readonly umask = process.umask();
  /** Directories this layer created: nothing can exist in them that this layer did not write. */
  private readonly freshDirs = new Set<string>();
  /** Small files being written in the background, by absolute path (see `entry`). */
  private readonly pending = new Map<string, Promise<void>>();
  private failure?: unknown;

  constructor(private readonly root: string) {}

  /**
   * Resolves directory components inside root, following symlinks in scope. Missing directories
   * are created (mode 0755, as Docker does) when `create`, else the result is undefined.
   */
  private async resolveDir(parts: string[], entryName: string, create: boolean): Promise<{ abs: string; rel: string } | undefined> {
    const key = parts.join('/');
    const cached = this.dirCache.get(key);
    if (cached) return cached;
    const cur: string[] = [];
    const queue = [...parts];
    let hops = 0;
    while (queue.length > 0) {
      const c = queue.shift()!;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        if (cur.length === 0) throw new ExtractError(`entry ${JSON.stringify(entryName)}: its path leads through a symlink out of the target directory`);
        cur.pop();
        continue;
      }
      const abs = join(this.root, ...cur, c);
      const st = await lstatOrUndefined(abs);
      if (!st) {
        if (!create) return undefined;
        await mkdir(abs, { mode: 0o755 });
        this.freshDirs.add(abs);
        cur.push(c);
        continue;
      }
      if (st.isSymbolicLink()) {
        if (++hops > MAX_SYMLINK_HOPS) throw new ExtractError(`entry ${JSON.stringify(entryName)}: too many levels of symlinks`);
        const target = await readlink(abs);
        if (target.startsWith('/')) cur.length = 0;
        queue.unshift(...target.split('/'));
        continue;
      }
      if (!st.isDirectory()) {
        if (!create) return undefined;
        throw new ExtractError(`entry ${JSON.stringify(entryName)}: ${join(...cur, c)} is not a directory`);
      }
      cur.push(c);
    }
    const out = { abs: join(this.root, ...cur), rel: cur.join('/') };
    this.dirCache.set(key, out);
    return out;
  }

  /** Removes whatever is at `abs` (not following a symlink there). */
  private async remove(abs: string, isDir: boolean): Promise<void> {
    if (isDir) await this.barrier();
    await rm(abs, { recursive: true, force: true });
    if (isDir) this.dirCache.clear();
  }

  /** Waits for every background write; rethrows the first failure. */
  private async barrier(): Promise<void> {
    await Promise.all(this.pending.values());
    this.pending.clear();
    if (this.failure !== undefined) throw this.failure;
  }

  /** Waits for a background write of `abs`, if one is under way. */
  private async settled(abs: string): Promise<void> {
    const p = this.pending.get(abs);
    if (p) await p;
    if (this.failure !== undefined) throw this.failure;
  }

  /** Writes a small file in the background: at most MAX_PENDING at once, failures surface at the next barrier. */
  private async writeInBackground(abs: string, data: Buffer, meta: { uid: number; gid: number; mode: number; mtime: Date }): Promise<void> {
    while (this.pending.size >= MAX_PENDING) await Promise.race(this.pending.values());
    if (this.failure !== undefined) throw this.failure;
    const p = this.writeFile(abs, data, meta)
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => {
        if (this.pending.get(abs) === p) this.pending.delete(abs);
      });
    this.pending.set(abs, p);
  }

  private async writeFile(abs: string, data: Buffer | TarReader, meta: { uid: number; gid: number; mode: number; mtime: Date }): Promise<void> {
    // Created with its final permission bits (the fd stays writable whatever they are); chmod only
    // when the umask would strip some or set-id/sticky bits are wanted.
    const fh = await open(abs, 'wx', meta.mode & 0o777);
    try {
      if (Buffer.isBuffer(data)) {
        if (data.length > 0) await fh.write(data);
      } else {
        for (let b = await data.readPayload(1 << 20); b; b = await data.readPayload(1 << 20)) await fh.write(b);
      }
      // A new file of root's is already 0:0; chown also clears set-id bits, so it goes before chmod.
      if (this.isRoot && (meta.uid !== 0 || meta.gid !== 0)) await fh.chown(meta.uid, meta.gid);
      if ((meta.mode & ~0o777) !== 0 || (meta.mode & this.umask) !== 0) await fh.chmod(meta.mode);
      await fh.utimes(meta.mtime, meta.mtime);
    } finally {
      await fh.close();
    }
  }

  async entry(h: TarHeader, reader: TarReader): Promise<void> {
    this.result.entries++;
    const parts = entryParts(h.name, 'entry');
    const base = parts.pop();
    if (base === undefined) {
      if (h.type === 'directory') this.dirs.push({ abs: this.root, mode: (h.mode ?? 0o755) & 0o7777, uid: h.uid ?? 0, gid: h.gid ?? 0, mtime: mtimeOf(h) });
      return;
    }
    if (base.startsWith(WHITEOUT_PREFIX)) return this.whiteout(parts, base, h.name);

    const parent = (await this.resolveDir(parts, h.name, true))!;
    const abs = join(parent.abs, base);
    const rel = parent.rel ? `${parent.rel}/${base}` : base;
    // In a directory this layer created, only this layer's own earlier entries can be in the way.
    await this.settled(abs);
    const existing = this.freshDirs.has(parent.abs) && !this.written.has(rel) ? undefined : await lstatOrUndefined(abs);
    if (existing && !(h.type === 'directory' && existing.isDirectory())) await this.remove(abs, existing.isDirectory() || existing.isSymbolicLink());
    this.written.add(rel);

    const uid = h.uid ?? 0;
    const gid = h.gid ?? 0;
    const mode = (h.mode ?? 0o644) & 0o7777;
    const mtime = mtimeOf(h);
    switch (h.type) {
      case 'directory':
        if (!existing?.isDirectory()) {
          await mkdir(abs, { mode: 0o700 });
          this.freshDirs.add(abs);
        }
        this.dirs.push({ abs, mode, uid, gid, mtime });
        break;
      case 'file':
      case 'contiguous-file': {
        const size = h.size ?? 0;
        this.result.bytes += size;
        // Small files are read whole and written in the background while the tar moves on: a
        // layer is mostly small files, and each one is several file-system round trips.
        if (size > SMALL_FILE) await this.writeFile(abs, reader, { uid, gid, mode, mtime });
        else await this.writeInBackground(abs, await readWhole(reader, size), { uid, gid, mode, mtime });
        break;
      }
      case 'symlink':
        if (!h.linkname) throw new ExtractError(`symlink ${JSON.stringify(h.name)} has an empty target`);
        await symlink(h.linkname, abs);
        this.dirCache.clear();
        if (this.isRoot) await lchown(abs, uid, gid);
        await lutimes(abs, mtime, mtime);
        break;
      case 'link': {
        const targetParts = entryParts(h.linkname ?? '', `hardlink ${JSON.stringify(h.name)} target`);
        const targetBase = targetParts.pop();
        if (targetBase === undefined) throw new ExtractError(`hardlink ${JSON.stringify(h.name)} points at the root directory`);
        const tdir = await this.resolveDir(targetParts, h.name, false);
        const target = tdir && join(tdir.abs, targetBase);
        if (target) await this.settled(target);
        const tst = target && (await lstatOrUndefined(target));
        if (!tst) throw new ExtractError(`hardlink ${JSON.stringify(h.name)}: target ${JSON.stringify(h.linkname)} does not exist in the image`);
        if (tst.isDirectory()) throw new ExtractError(`hardlink ${JSON.stringify(h.name)}: target ${JSON.stringify(h.linkname)} is a directory`);
        await link(target!, abs); // link(2) does not follow a symlink target: the link stays inside
        break;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo':
        if (h.type === 'fifo') await run('mkfifo', ['-m', mode.toString(8), abs]);
        else if (!this.isRoot) {
          this.result.skippedDevices++;
          this.written.delete(rel);
          return;
        } else await run('mknod', ['-m', mode.toString(8), abs, h.type === 'block-device' ? 'b' : 'c', String(h.devmajor ?? 0), String(h.devminor ?? 0)]);
        if (this.isRoot) await lchown(abs, uid, gid);
        await lutimes(abs, mtime, mtime);
        break;
      default:
        throw new ExtractError(`entry ${JSON.stringify(h.name)}: unsupported type ${String(h.type)}`);
    }
    this.queueXattrs(h, abs);
  }

  private queueXattrs(h: TarHeader, abs: string): void {
    const pax = h.pax;
    if (!pax) return;
    const enc = h.paxEncoding ?? 'utf8';
    const lines: string[] = [];
    for (const [k, v] of Object.entries(pax)) {
      if (!k.startsWith(XATTR_PREFIX)) continue;
      lines.push(`${quoteAttr(Buffer.from(k.slice(XATTR_PREFIX.length), enc))}=0x${Buffer.from(v, enc).toString('hex')}`);
    }
    if (lines.length) this.xattrs.push(`# file: ${quoteAttr(Buffer.from(abs))}`, ...lines, '');
  }

  private async whiteout(parts: string[], base: string, name: string): Promise<void> {
    this.result.whiteouts++;
    await this.barrier();
    const dir = await this.resolveDir(parts, name, false);
    if (!dir) return; // nothing below to hide
    if (base === OPAQUE) return this.clearLower(dir.abs, dir.rel);
    const victim = base.slice(WHITEOUT_PREFIX.length);
    if (victim === '' || victim === '.' || victim === '..' || victim.startsWith(WHITEOUT_PREFIX)) return; // `.wh.` alone is invalid; `.wh..wh.*` is aufs metadata
    const rel = dir.rel ? `${dir.rel}/${victim}` : victim;
    if (this.written.has(rel)) return; // whiteouts never hide entries of their own layer
    const abs = join(dir.abs, victim);
    const st = await lstatOrUndefined(abs);
    if (st) await this.remove(abs, st.isDirectory() || st.isSymbolicLink());
  }

  /** Removes everything under `abs` that this layer did not put there. */
  private async clearLower(abs: string, rel: string): Promise<void> {
    for (const child of await readdir(abs, { withFileTypes: true })) {
      const childRel = rel ? `${rel}/${child.name}` : child.name;
      const childAbs = join(abs, child.name);
      if (!this.written.has(childRel)) await this.remove(childAbs, child.isDirectory() || child.isSymbolicLink());
      else if (child.isDirectory()) await this.clearLower(childAbs, childRel);
    }
  }

  /** After a failure: lets background writes end, so nothing is written after extractLayer returns. */
  async abandon(): Promise<void> {
    await Promise.all(this.pending.values());
  }

  async finish(): Promise<void> {
    await this.barrier();
    for (const d of this.dirs) {
      if (this.isRoot) await lchown(d.abs, d.uid, d.gid);
      // O_NOFOLLOW: if a later entry replaced the directory with a symlink, chmod must not follow it.
      let fh;
      try {
        fh = await open(d.abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_DIRECTORY);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ELOOP' || code === 'ENOTDIR' || code === 'ENOENT') continue;
        throw err;
      }
      try {
        await fh.chmod(d.mode);
      } finally {
        await fh.close();
      }
    }
    if (this.xattrs.length) await restoreXattrs(this.xattrs.join('\n'));
    // Deepest first, so setting a child's time does not disturb its parent's afterwards.
    for (const d of [...this.dirs].reverse()) await lutimes(d.abs, d.mtime, d.mtime).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }
}

async function restoreXattrs(dump: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn('setfattr', ['-h', '--restore=-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', (err) => reject(new ExtractError(`setting xattrs: cannot run setfattr (package attr): ${err.message}`)));
    child.once('close', (code) => (code === 0 ? resolve() : reject(new ExtractError(`setting xattrs failed: ${stderr.trim() || `setfattr exit ${code}`}`))));
    child.stdin.end(dump);
  });
}

/** Applies the layer `tar` (uncompressed) to `rootDir`, over what earlier layers left there. */
export async function extractLayer(tar: Readable, rootDir: string): Promise<ExtractResult> {
  const reader = new TarReader(tar);
  const x = new LayerExtractor(rootDir);
  try {
    for (let e = await reader.next(); e; e = await reader.next()) await x.entry(e.header, reader);
  } catch (err) {
    await x.abandon();
    throw err;
  }
  await x.finish();
  return x.result;
}
