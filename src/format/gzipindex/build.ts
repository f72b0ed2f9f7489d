// Builds a layer's gzip index in one pass: the addon inflates (scan.ts), the package's tar parser
// (TarReader) reads the file table from the same output as it streams by.
import { Readable } from 'node:stream';
import type { Descriptor } from '../../oci/types.js';
import { TarReader } from '../estargz/tar-reader.js';
import { formatModtime, normalizeEntryPath, TarEntryError, tocEntryType, xattrsFromPax, type TarHeader } from '../tar-entry.js';
import { NO_XATTRS, type FileType } from '../toc.js';
import type { GzipIndex, GzipIndexEntry } from './model.js';
import { GzipScanner } from './scan.js';

const MAX_ID = 0xffffffff;

function fileTableEntry(h: TarHeader, offset: number): GzipIndexEntry {
  const type = tocEntryType(h) as FileType; // never 'chunk': that is a TOC-only type
  const uid = h.uid ?? 0;
  const gid = h.gid ?? 0;
  if (uid > MAX_ID || gid > MAX_ID) throw new TarEntryError(`${JSON.stringify(h.name)}: uid/gid ${uid}/${gid} do not fit 32 bits`);
  const modtime = formatModtime(h);
  const xattrs = xattrsFromPax(h.pax, h.paxEncoding);
  const linked = type === 'symlink' || type === 'hardlink';
  return {
    path: normalizeEntryPath(h.name, 'tar entry'),
    type,
    mode: (h.mode ?? 0) & 0o7777,
    uid,
    gid,
    mtimeMs: modtime ? Date.parse(modtime) : 0,
    offset,
    size: type === 'reg' ? (h.size ?? 0) : 0,
    linkName: !linked ? '' : type === 'hardlink' ? normalizeEntryPath(h.linkname ?? '', 'hardlink target') : (h.linkname ?? ''),
    devMajor: h.devmajor ?? 0,
    devMinor: h.devminor ?? 0,
    xattrs: xattrs ? new Map(Object.entries(xattrs).map(([k, v]) => [k, Buffer.from(v, 'base64')])) : NO_XATTRS,
  };
}

/**
 * Indexes the gzip blob `layer` read from `compressed`: checkpoints every `span` uncompressed bytes,
 * span digests and the tar's file table. Throws if the blob is not the gzip of a tar, or if its size
 * differs from the descriptor's (its digest is the caller's to check: the stream of an ImageSource is).
 */
export async function buildGzipIndex(compressed: AsyncIterable<Buffer>, layer: Descriptor, span: number): Promise<GzipIndex> {
  const scanner = new GzipScanner(span);
  // Two output steps of read-ahead: the addon inflates the next while the tar parser reads this one.
  const output = Readable.from(scanner.inflate(compressed), { objectMode: false, highWaterMark: 4 << 20 });
  const reader = new TarReader(output);
  const entries: GzipIndexEntry[] = [];
  for (let e = await reader.next(); e; e = await reader.next()) entries.push(fileTableEntry(e.header, reader.position));
  // What follows the end-of-archive blocks (padding) is still inflated: checkpoints and digests cover the whole blob.
  for await (const _ of output);
  const scan = scanner.scan;
  if (scan.compressedSize !== layer.size) throw new Error(`${layer.digest}: blob is ${scan.compressedSize} bytes, the descriptor says ${layer.size}`);
  return { layerDigest: layer.digest, spanSize: span, ...scan, entries };
}
