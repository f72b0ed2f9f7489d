// Typed access to the fields of untrusted TOC JSON, shared by both format readers: every bad
// value becomes a TocError naming the TOC entry (index and name) it came from.
import { TocError } from './toc.js';

export type Json = Record<string, unknown>;

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
  return { fail, int, str };
}
