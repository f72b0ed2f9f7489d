// The zstd:chunked TOC ("manifest") JSON as containers/storage writes it (formats.md §1b.4):
// entries built from tar headers the way `minimal.NewFileMetadata` does, serialised compactly in
// Go's struct field order with Go's omitempty rules and time format.
import type { TocEntry, EntryType } from '../toc.js';
import { goJsonString } from './tarsplit.js';
import type { TarHeader, TarTime, TarTypeflag } from './rawtar.js';

const TYPES: Record<TarTypeflag, EntryType> = {
  '0': 'reg',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
};

/** Go's time.Time JSON (RFC 3339 with nanoseconds, trailing zeros dropped), in UTC. */
export function formatGoTime(t: TarTime): string {
  const date = new Date(t.sec * 1000);
  const year = date.getUTCFullYear();
  if (!Number.isFinite(date.getTime()) || year < 0 || year > 9999) {
    throw new RangeError(`timestamp ${t.sec} is outside the years 0-9999 that Go's JSON time format allows`);
  }
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  const frac = t.nsec === 0 ? '' : `.${String(t.nsec).padStart(9, '0').replace(/0+$/, '')}`;
  return `${iso.slice(0, 19)}${frac}Z`;
}

/** The metadata part of a TOC entry for a tar header (`minimal.NewFileMetadata`). */
export function tocEntryFromHeader(hdr: TarHeader): TocEntry {
  const entry: TocEntry = { type: TYPES[hdr.typeflag], name: hdr.name };
  if (hdr.linkname) entry.linkName = hdr.linkname;
  if (hdr.mode) entry.mode = hdr.mode;
  if (hdr.declaredSize) entry.size = hdr.declaredSize;
  if (hdr.uid) entry.uid = hdr.uid;
  if (hdr.gid) entry.gid = hdr.gid;
  entry.modtime = formatGoTime(hdr.mtime);
  if (hdr.atime) entry.accesstime = formatGoTime(hdr.atime);
  if (hdr.ctime) entry.changetime = formatGoTime(hdr.ctime);
  if (hdr.devmajor) entry.devMajor = hdr.devmajor;
  if (hdr.devminor) entry.devMinor = hdr.devminor;
  if (hdr.xattrs.size > 0) {
    entry.xattrs = {};
    for (const [k, v] of hdr.xattrs) entry.xattrs[k] = v.toString('base64');
  }
  return entry;
}

const NUMBER_KEYS = new Set(['mode', 'size', 'uid', 'gid', 'devMajor', 'devMinor', 'offset', 'endOffset', 'chunkSize', 'chunkOffset']);
/** Go's `minimal.FileMetadata` field order. */
const KEY_ORDER = [
  'type', 'name', 'linkName', 'mode', 'size', 'uid', 'gid', 'modtime', 'accesstime', 'changetime',
  'devMajor', 'devMinor', 'xattrs', 'digest', 'offset', 'endOffset', 'chunkSize', 'chunkOffset', 'chunkDigest', 'chunkType',
] as const;

function entryJson(e: TocEntry): string {
  const parts: string[] = [];
  for (const key of KEY_ORDER) {
    const v = e[key];
    if (v === undefined || v === '' || v === 0) {
      if (key !== 'type' && key !== 'name') continue; // omitempty
    }
    if (key === 'xattrs') {
      const keys = Object.keys(v as Record<string, string>).sort(); // Go sorts map keys
      if (keys.length === 0) continue;
      const x = v as Record<string, string>;
      parts.push(`"xattrs":{${keys.map((k) => `${goJsonString(k)}:${goJsonString(x[k]!)}`).join(',')}}`);
    } else if (NUMBER_KEYS.has(key)) {
      parts.push(`"${key}":${v as number}`);
    } else {
      parts.push(`"${key}":${goJsonString((v as string | undefined) ?? '')}`);
    }
  }
  return `{${parts.join(',')}}`;
}

/** Compact TOC JSON: {"version":1,"entries":[...],"tarSplitDigest":"..."}. */
export function serializeToc(entries: readonly TocEntry[], tarSplitDigest: string | undefined): string {
  const body = entries.map(entryJson).join(',');
  const tail = tarSplitDigest ? `,"tarSplitDigest":${goJsonString(tarSplitDigest)}` : '';
  return `{"version":1,"entries":[${body}]${tail}}`;
}

/** Parses an RFC 3339 time as Go writes it (any offset, up to 9 fractional digits); undefined if malformed. */
export function parseGoTime(s: string): TarTime | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(s);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, sec, frac, zone] = m;
  let ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec));
  if (Number.isNaN(ms) || Number(mo) > 12 || Number(d) > 31 || Number(h) > 23 || Number(mi) > 59 || Number(sec) > 60) return undefined;
  if (Number(y) < 100) ms = new Date(ms).setUTCFullYear(Number(y)); // Date.UTC maps years 0-99 to 1900-1999
  if (zone !== 'Z') {
    const sign = zone![0] === '-' ? -1 : 1;
    ms -= sign * (Number(zone!.slice(1, 3)) * 60 + Number(zone!.slice(4, 6))) * 60_000;
  }
  return { sec: ms / 1000, nsec: Number(((frac ?? '') + '000000000').slice(0, 9)) };
}
