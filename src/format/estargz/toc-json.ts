// Serialises a TOC as Go's json.MarshalIndent(toc, "", "\t") does in stargz-snapshotter: keys in
// TOCEntry field order, zero values omitted (omitempty), <, >, & and U+2028/9 escaped, \b and \f as
// \u escapes. Identical formatting keeps our TOC bytes comparable with Go-built ones.
import type { Toc, TocEntry } from '../toc.js';

/** TOCEntry fields after name and type (always present), in Go's declaration order. */
const OPTIONAL_KEYS: readonly (keyof TocEntry)[] = [
  'size',
  'modtime',
  'linkName',
  'mode',
  'uid',
  'gid',
  'userName',
  'groupName',
  'offset',
  'devMajor',
  'devMinor',
  'xattrs',
  'digest',
  'chunkOffset',
  'chunkSize',
  'chunkDigest',
];

const GO_ESCAPES: Record<string, string> = {
  '<': '\\u003c',
  '>': '\\u003e',
  '&': '\\u0026',
  '\u2028': '\\u2028',
  '\u2029': '\\u2029',
  '\\b': '\\u0008',
  '\\f': '\\u000c',
};

function ordered(e: TocEntry): Record<string, unknown> {
  const o: Record<string, unknown> = { name: e.name, type: e.type };
  for (const k of OPTIONAL_KEYS) {
    const v = e[k];
    const empty = v === undefined || v === 0 || v === '' || (typeof v === 'object' && Object.keys(v).length === 0);
    if (!empty) o[k] = v;
  }
  return o;
}

const escapeLikeGo = (text: string) => text.replace(/\\.|[<>&\u2028\u2029]/g, (m) => GO_ESCAPES[m] ?? m);

/**
 * The TOC JSON bytes. Serialised entry by entry into UTF-8 pieces, so a TOC of many thousands of
 * entries never exists as one large JS string (peak memory of big layers).
 */
export function tocJson(toc: Toc): Buffer {
  if (toc.entries.length === 0) return Buffer.from(`{\n\t"version": ${toc.version},\n\t"entries": []\n}`);
  const pieces: Buffer[] = [Buffer.from(`{\n\t"version": ${toc.version},\n\t"entries": [\n`)];
  const separator = Buffer.from(',\n');
  for (const [i, e] of toc.entries.entries()) {
    if (i > 0) pieces.push(separator);
    // MarshalIndent nests each entry two levels deep.
    pieces.push(Buffer.from('\t\t' + escapeLikeGo(JSON.stringify(ordered(e), null, '\t')).replace(/\n/g, '\n\t\t')));
  }
  pieces.push(Buffer.from('\n\t]\n}'));
  return Buffer.concat(pieces);
}
