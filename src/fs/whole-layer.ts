// Non-seekable layers (plain gzip/zstd/tar, or a chunked layer whose TOC cannot be used): the blob is
// fetched whole once, its tar unpacked into one local data file (file payloads back to back) plus a
// TOC in the eStargz JSON model, both kept in the cache directory under the layer digest. The layer is
// then served like any other, from that data file, every chunk verified on read.
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { FileBlob } from '../blob/source.js';
import { decompressedTar } from '../format/compression.js';
import { buildEntries } from '../format/estargz/reader.js';
import { TarReader } from '../format/estargz/tar-reader.js';
import { OwnerNames, tocEntryFromTarHeader } from '../format/tar-entry.js';
import { ChunkVerifyError, type ChunkRef, type FileEntry, type TocEntry } from '../format/toc.js';
import { digestHex, sha256, Sha256Counter } from '../oci/digest.js';
import type { ImageSource } from '../oci/store.js';
import type { Descriptor } from '../oci/types.js';

/** Pieces a stored file is verified in (and cached in memory as). */
const PIECE = 4 << 20;
/** The data file starts with this, so no payload sits at offset 0 (which the TOC model reads as "no offset"). */
const DATA_MAGIC = Buffer.from('STARLING-LAYER-DATA\n');

export interface WholeLayer {
  entries: FileEntry[];
  blob: FileBlob;
  decodeChunk(chunk: ChunkRef, stored: Buffer): Promise<Buffer>;
  /** True when this call downloaded the blob (false: found in the cache directory). */
  fetched: boolean;
}

async function decodeStored(chunk: ChunkRef, stored: Buffer): Promise<Buffer> {
  if (stored.length !== chunk.size || sha256(stored) !== chunk.digest) {
    throw new ChunkVerifyError(`stored piece at ${chunk.start} (file offset ${chunk.fileOffset}) does not match its digest ${chunk.digest}`);
  }
  // A copy: `stored` is a view into a larger coalesced read, which the memory cache must not keep alive.
  return Buffer.from(stored);
}

/** Unpacks the tar stream into `dataPath`; returns the TOC describing it. */
async function unpack(tar: Readable, dataPath: string): Promise<{ version: 1; entries: TocEntry[] }> {
  const out = createWriteStream(dataPath);
  let pos = 0;
  const write = async (b: Buffer) => {
    if (!out.write(b)) await once(out, 'drain');
    pos += b.length;
  };
  await write(DATA_MAGIC);
  const reader = new TarReader(tar);
  const names = new OwnerNames();
  const entries: TocEntry[] = [];
  try {
    for (let e = await reader.next(); e; e = await reader.next()) {
      const toc = tocEntryFromTarHeader(e.header, names);
      entries.push(toc);
      if (toc.type !== 'reg' || e.payloadSize === 0) {
        if (toc.type === 'reg') toc.digest = sha256('');
        continue;
      }
      const whole = new Sha256Counter();
      let piece: Buffer[] = [];
      let pieceLen = 0;
      let fileOffset = 0;
      const flush = async () => {
        const data = Buffer.concat(piece, pieceLen);
        const chunk = { offset: pos, chunkOffset: fileOffset, chunkSize: data.length, chunkDigest: sha256(data) };
        if (fileOffset === 0) Object.assign(toc, chunk);
        else entries.push({ name: toc.name, type: 'chunk', ...chunk });
        await write(data);
        fileOffset += data.length;
        piece = [];
        pieceLen = 0;
      };
      for (let p = await reader.readPayload(PIECE); p; p = await reader.readPayload(PIECE)) {
        whole.update(p);
        for (let off = 0; off < p.length; ) {
          const take = Math.min(PIECE - pieceLen, p.length - off);
          piece.push(Buffer.from(p.subarray(off, off + take))); // the reader reuses its buffers
          pieceLen += take;
          off += take;
          if (pieceLen === PIECE) await flush();
        }
      }
      if (pieceLen > 0) await flush();
      toc.digest = whole.digest();
    }
  } finally {
    out.end();
    await once(out, 'close');
  }
  return { version: 1, entries };
}

/**
 * The layer's entries and a local data file, from the cache directory if an earlier mount left them,
 * otherwise by downloading `desc` (verified against its digest by the source) and unpacking it.
 */
export async function openWholeLayer(source: ImageSource, desc: Descriptor, cacheDir: string): Promise<WholeLayer> {
  const dir = join(cacheDir, 'layers');
  await mkdir(dir, { recursive: true });
  const base = join(dir, digestHex(desc.digest));
  const where = `${source.description} layer ${desc.digest}`;
  let fetched = false;
  let toc: { version: 1; entries: TocEntry[] };
  try {
    toc = JSON.parse(await readFile(`${base}.toc.json`, 'utf8')) as typeof toc;
  } catch {
    fetched = true;
    const tmp = `${base}.${process.pid}.tmp`;
    try {
      const { tar } = await decompressedTar(await source.openBlobStream(desc));
      toc = await unpack(tar, `${tmp}.data`);
      await writeFile(`${tmp}.toc.json`, JSON.stringify(toc));
      // Data first: a TOC on disk always has its data file.
      await rename(`${tmp}.data`, `${base}.data`);
      await rename(`${tmp}.toc.json`, `${base}.toc.json`);
    } finally {
      await rm(`${tmp}.data`, { force: true });
      await rm(`${tmp}.toc.json`, { force: true });
    }
  }
  const blob = await FileBlob.open(`${base}.data`);
  const { entries } = buildEntries(toc, blob.size, where);
  return { entries, blob, decodeChunk: decodeStored, fetched };
}
