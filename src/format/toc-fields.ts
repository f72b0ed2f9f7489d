// Parsing and typed access to the fields of untrusted TOC JSON, shared by both format readers: every bad
// value becomes a TocError naming the TOC entry (index and name) it came from.
import { isAscii } from 'node:buffer';
import { NO_XATTRS, TocError } from './toc.js';

export type Json = Record<string, unknown>;

/** The TOC's JSON text (UTF-8 bytes) parsed; malformed JSON is a TocError. */
export function parseTocText(json: Buffer, where: string): unknown {
  try {
    // TOCs are ASCII but for the odd file name: latin1 is then the same text and a plain copy,
    // where UTF-8 decoding took ~15 ms of a 3.5 MB TOC's mount.
    return JSON.parse(json.toString(isAscii(json) ? 'latin1' : 'utf8'));
  } catch (err) {
    throw new TocError(`${where}: TOC is not valid JSON: ${(err as Error).message}`);
  }
}

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function tocFieldReaders(raw: readonly unknown[], where: string) {
  const fail = (i: number, msg: string): never => {
    const e = raw[i];
    const name = isObject(e) && typeof e.name === 'string' ? ` (${JSON.stringify(e.name)})` : '';
    throw new TocError(`${where}: TOC entry ${i}${name}: ${msg}`);
  };
  /** A non-negative safe integer; absent or null is 0. */
  const int = (e: Json, i: number, key: string): number => {
    const v = e[key];
    if (v === undefined || v === null) return 0;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(i, `${key} ${JSON.stringify(v)} is not a non-negative integer`);
    return v as number;
  };
  /** A string; absent or null is ''. */
  const str = (e: Json, i: number, key: string): string => {
    const v = e[key];
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') fail(i, `${key} is not a string`);
    return v as string;
  };
  /** The entry's base64 xattrs decoded (the shared empty map when it has none). */
  const xattrs = (e: Json, i: number): ReadonlyMap<string, Buffer> => {
    if (e.xattrs === undefined || e.xattrs === null) return NO_XATTRS;
    if (!isObject(e.xattrs)) fail(i, 'xattrs is not an object');
    const out = new Map<string, Buffer>();
    for (const [k, v] of Object.entries(e.xattrs as Json)) {
      if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) fail(i, `xattr ${JSON.stringify(k)} is not base64`);
      out.set(k, Buffer.from(v as string, 'base64'));
    }
    return out.size > 0 ? out : NO_XATTRS;
  };
  return { fail, int, str, xattrs };
}
