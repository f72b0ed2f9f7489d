// Tar header → TOC entry conversion shared by the eStargz and zstd:chunked writers (formats.md §1a.4).
// The header shape is tar-stream's `Headers` (so a writer parsing with tar-stream can pass its headers
// as they are); src/format/estargz/tar-reader.ts produces the same shape from raw blocks.
import type { TocEntry } from './toc.js';

/** tar-stream's entry type names. */
export type TarEntryType =
  | 'file'
  | 'link'
  | 'symlink'
  | 'character-device'
  | 'block-device'
  | 'directory'
  | 'fifo'
  | 'contiguous-file'
  | 'pax-header'
  | 'pax-global-header'
  | 'gnu-long-link-path'
  | 'gnu-long-path'
  | null;

export interface TarHeader {
  name: string;
  type?: TarEntryType;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  size?: number;
  mtime?: Date;
  linkname?: string | null;
  devmajor?: number;
  devminor?: number;
  /** PAX records of the entry (`SCHILY.xattr.<name>` become xattrs; `mtime` may carry sub-seconds). */
  pax?: Record<string, string> | null;
  /**
   * How `pax` values were decoded from bytes: tar-stream decodes UTF-8 (binary xattr values are then
   * lossy); src/format/estargz/tar-reader.ts keeps raw bytes as 'latin1' strings. Default 'utf8'.
   */
  paxEncoding?: 'utf8' | 'latin1';
}

/** An input tar holds something no layer format can represent (or a malformed header). */
export class TarEntryError extends Error {}

const XATTR_PREFIX = 'SCHILY.xattr.';

/**
 * Go's writer emits userName/groupName only when the name recorded for that id changes
 * (`nameIfChanged`); one instance per layer keeps that state.
 */
export class OwnerNames {
  private readonly users = new Map<number, string>();
  private readonly groups = new Map<number, string>();
  userName(uid: number, name: string | undefined): string | undefined {
    return ifChanged(this.users, uid, name);
  }
  groupName(gid: number, name: string | undefined): string | undefined {
    return ifChanged(this.groups, gid, name);
  }
}

function ifChanged(seen: Map<number, string>, id: number, name: string | undefined): string | undefined {
  if (!name || seen.get(id) === name) return undefined;
  seen.set(id, name);
  return name;
}

/** TOC entry type for a tar header, as Go's appendTar maps typeflags; throws for anything else. */
export function tocEntryType(h: TarHeader): TocEntry['type'] {
  switch (h.type ?? 'file') {
    case 'file':
    case 'contiguous-file':
      return 'reg';
    case 'link':
      return 'hardlink';
    case 'symlink':
      return 'symlink';
    case 'directory':
      return 'dir';
    case 'character-device':
      return 'char';
    case 'block-device':
      return 'block';
    case 'fifo':
      return 'fifo';
    default:
      throw new TarEntryError(`unsupported tar entry type ${JSON.stringify(h.type)} for ${JSON.stringify(h.name)}`);
  }
}

/**
 * Go's formatModtime: UTC RFC 3339 rounded to whole seconds (half away from zero), omitted for the
 * zero time and Unix 0. A PAX `mtime` record (decimal seconds, maybe fractional) wins over `mtime`.
 */
export function formatModtime(h: TarHeader): string | undefined {
  let seconds: number;
  const pax = h.pax?.mtime;
  if (pax !== undefined && /^-?\d+(\.\d+)?$/.test(pax)) {
    const [whole, frac = ''] = pax.replace('-', '').split('.');
    const sign = pax.startsWith('-') ? -1 : 1;
    seconds = sign * (Number(whole) + (frac !== '' && frac[0]! >= '5' ? 1 : 0));
  } else if (h.mtime) {
    seconds = Math.sign(h.mtime.getTime()) * Math.round(Math.abs(h.mtime.getTime()) / 1000);
  } else {
    return undefined;
  }
  if (seconds === 0 || !Number.isFinite(seconds)) return undefined;
  const d = new Date(seconds * 1000);
  if (Number.isNaN(d.getTime())) return undefined;
  return d.toISOString().replace('.000Z', 'Z');
}

/** base64 xattrs from `SCHILY.xattr.*` PAX records, keys sorted (Go marshals maps sorted). */
export function xattrsFromPax(
  pax: Record<string, string> | null | undefined,
  encoding: 'utf8' | 'latin1' = 'utf8',
): Record<string, string> | undefined {
  if (!pax) return undefined;
  const keys = Object.keys(pax)
    .filter((k) => k.startsWith(XATTR_PREFIX))
    .sort();
  if (keys.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const k of keys) out[k.slice(XATTR_PREFIX.length)] = Buffer.from(pax[k]!, encoding).toString('base64');
  return out;
}

/**
 * The TOC entry for one tar header, without offset/digest fields (the writer fills those in).
 * Keys are in Go's TOCEntry field order and zero values are omitted, as Go's `omitempty` does.
 */
export function tocEntryFromTarHeader(h: TarHeader, names: OwnerNames): TocEntry {
  const type = tocEntryType(h);
  const uid = h.uid ?? 0;
  const gid = h.gid ?? 0;
  const e: TocEntry = { name: h.name, type };
  if (type === 'reg' && (h.size ?? 0) > 0) e.size = h.size!;
  const modtime = formatModtime(h);
  if (modtime) e.modtime = modtime;
  if ((type === 'symlink' || type === 'hardlink') && h.linkname) e.linkName = h.linkname;
  if (h.mode) e.mode = h.mode;
  if (uid) e.uid = uid;
  if (gid) e.gid = gid;
  const userName = names.userName(uid, h.uname);
  if (userName) e.userName = userName;
  const groupName = names.groupName(gid, h.gname);
  if (groupName) e.groupName = groupName;
  if (type === 'char' || type === 'block') {
    if (h.devmajor) e.devMajor = h.devmajor;
    if (h.devminor) e.devMinor = h.devminor;
  }
  const xattrs = xattrsFromPax(h.pax, h.paxEncoding);
  if (xattrs) e.xattrs = xattrs;
  return e;
}

/**
 * Go's cleanEntryName: path.Clean("/" + name) without the leading "/"; ".." at the root stays at the
 * root. Used to match names the way the reference implementation does (duplicates, prioritised files).
 */
export function cleanEntryName(name: string): string {
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out.join('/');
}

/** Throws unless every hardlink among TOC `entries` names an entry of the same layer (both readers require it). */
export function checkHardlinkTargets(entries: readonly TocEntry[]): void {
  const names = new Set(entries.filter((e) => e.type !== 'chunk').map((e) => cleanEntryName(e.name)));
  for (const e of entries) {
    if (e.type === 'hardlink' && !names.has(cleanEntryName(e.linkName ?? ''))) {
      throw new TarEntryError(`hardlink ${JSON.stringify(e.name)} points to ${JSON.stringify(e.linkName ?? '')}, which is not in the layer`);
    }
  }
}

/** An empty, '.' or '..' component (a leading, trailing or doubled '/' makes an empty one), or a NUL. */
const UNCLEAN_PATH = /(?:^|\/)\.{0,2}(?:\/|$)|\0/;

/** A non-empty relative path of plain components: what normalizeEntryPath returns unchanged. */
export function isCleanPath(path: string): boolean {
  return !UNCLEAN_PATH.test(path);
}

/**
 * Normalises an untrusted entry path relative to the layer root: absolute paths become relative,
 * '.' and empty components go; '' is the root. Throws TarEntryError for NUL or a '..' that would
 * leave the root (`what` names the source in the message).
 */
export function normalizeEntryPath(name: string, what = 'entry'): string {
  if (isCleanPath(name)) return name; // nearly every path: one regex test instead of split and join
  if (name.includes('\0')) throw new TarEntryError(`${what} path ${JSON.stringify(name)} contains a NUL byte`);
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) throw new TarEntryError(`${what} path ${JSON.stringify(name)} escapes the layer root`);
      out.pop();
    } else out.push(part);
  }
  return out.join('/');
}
