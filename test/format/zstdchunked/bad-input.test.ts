// Bad input is refused with an error that names what is wrong: wrong checksum, positions outside
// the blob, an oversized TOC, a tar-split that disagrees with the TOC, corrupt or inflating chunks,
// escaping paths, and tars zstd:chunked cannot hold.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { compress } from '@mongodb-js/zstd';
import { BufferBlob, type BlobSource } from '../../../src/blob/source.js';
import { ChunkVerifyError, TocError, type ChunkRef } from '../../../src/format/toc.js';
import { encodeFooter, parseManifestPosition, parseTarSplitPosition } from '../../../src/format/zstdchunked/footer.js';
import { skippableFrame } from '../../../src/format/zstdchunked/frames.js';
import { TarFormatError } from '../../../src/format/zstdchunked/rawtar.js';
import { decodeZstdChunkedToc, openZstdChunked } from '../../../src/format/zstdchunked/reader.js';
import { Annotation } from '../../../src/oci/mediatypes.js';
import { sha256 } from '../../../src/oci/digest.js';
import { convertZstd } from './helpers.js';
import { tempDir } from '../../helpers/temp-dir.js';

const run = promisify(execFile);

/** A small real tar (GNU tar) with a multi-chunk file, a small file and a directory. */
async function smallTar(): Promise<Buffer> {
  const dir = await tempDir('starling-zc-bad-');
  await mkdir(join(dir, 'root/sub'), { recursive: true });
  const bin = await readFile('/usr/bin/ls');
  await writeFile(join(dir, 'root/sub/big'), Buffer.concat([bin, bin]));
  await writeFile(join(dir, 'root/small.txt'), 'hello\n');
  await run('tar', ['-C', join(dir, 'root'), '-cf', join(dir, 'small.tar'), '--format=gnu', '--sort=name', '.']);
  return readFile(join(dir, 'small.tar'));
}

/** Rebuilds a blob around an edited TOC JSON (same frames and tar-split), with fresh annotations. */
async function withToc(blob: Buffer, annotations: Record<string, string>, edit: (toc: { entries: Record<string, unknown>[] }) => void) {
  const m = parseManifestPosition(annotations[Annotation.zstdChunkedManifestPosition]!, 'position');
  const ts = parseTarSplitPosition(annotations[Annotation.zstdChunkedTarSplitPosition]!, 'tarsplit');
  const frames = blob.subarray(0, m.offset - 8);
  const tarSplit = blob.subarray(ts.offset, ts.offset + ts.length);
  const { decompress } = await import('@mongodb-js/zstd');
  const toc = JSON.parse((await decompress(blob.subarray(m.offset, m.offset + m.length))).toString());
  edit(toc);
  const json = Buffer.from(JSON.stringify(toc));
  const ctoc = await compress(json, 3);
  const manifest = { offset: frames.length + 8, length: ctoc.length, uncompressedLength: json.length };
  const tarSplitRange = { offset: manifest.offset + ctoc.length + 8, length: tarSplit.length, uncompressedLength: ts.uncompressedLength };
  const out = Buffer.concat([frames, skippableFrame(ctoc), skippableFrame(tarSplit), skippableFrame(encodeFooter(manifest, tarSplitRange))]);
  return {
    blob: out,
    annotations: {
      [Annotation.zstdChunkedManifestChecksum]: sha256(ctoc),
      [Annotation.zstdChunkedManifestPosition]: `${manifest.offset}:${manifest.length}:${manifest.uncompressedLength}:1`,
      [Annotation.zstdChunkedTarSplitPosition]: `${tarSplitRange.offset}:${tarSplitRange.length}:${tarSplitRange.uncompressedLength}`,
    },
  };
}

describe('zstd:chunked refuses bad input', () => {
  let blob: Buffer;
  let ann: Record<string, string>;
  before(async () => {
    const { blob: b, result } = await convertZstd(await smallTar());
    blob = b;
    ann = result.annotations;
  });

  it('opens the untouched blob (the baseline the cases below break)', async () => {
    const layer = await openZstdChunked(new BufferBlob(blob), ann, { requireChecksum: true });
    assert.ok(layer.entries.find((e) => e.path === 'sub/big')!.chunks.length > 1);
  });

  it('fetches the TOC and the tar-split in one multi-range request when the annotations give both', async () => {
    const inner = new BufferBlob(blob);
    const calls: string[] = [];
    const counting: BlobSource = {
      size: inner.size,
      description: 'counting',
      read: (o, l) => (calls.push(`read ${o}+${l}`), inner.read(o, l)),
      readRanges: async (ranges) => (calls.push(`readRanges ${ranges.length}`), Promise.all(ranges.map((r) => inner.read(r.offset, r.length)))),
      close: async () => undefined,
    };
    await openZstdChunked(counting, ann, { requireChecksum: true });
    assert.deepEqual(calls, ['readRanges 2']);
  });

  it('a wrong manifest checksum', async () => {
    const wrong = { ...ann, [Annotation.zstdChunkedManifestChecksum]: sha256('something else') };
    await assert.rejects(openZstdChunked(new BufferBlob(blob), wrong), (e: Error) => e instanceof TocError && /TOC checksum mismatch/.test(e.message));
  });

  it('a missing checksum when one is required', async () => {
    await assert.rejects(openZstdChunked(new BufferBlob(blob), {}, { requireChecksum: true }), /no zstd:chunked manifest-checksum annotation/);
  });

  it('a footer that points outside the blob', async () => {
    const bad = Buffer.from(blob);
    bad.writeBigUInt64LE(BigInt(blob.length + 1000), blob.length - 64); // manifest offset
    await assert.rejects(openZstdChunked(new BufferBlob(bad, 'bad footer'), {}), (e: Error) => e instanceof TocError && /bad footer: TOC range \d+\+\d+ points outside the blob/.test(e.message));
  });

  it('a position annotation that points outside the blob', async () => {
    const bad = { ...ann, [Annotation.zstdChunkedManifestPosition]: `${blob.length - 10}:100:200:1` };
    await assert.rejects(openZstdChunked(new BufferBlob(blob), bad), /points outside the blob/);
  });

  it('a malformed position annotation and a wrong manifest type', async () => {
    await assert.rejects(openZstdChunked(new BufferBlob(blob), { ...ann, [Annotation.zstdChunkedManifestPosition]: '1:2:x:1' }), /expected 4 decimal numbers/);
    await assert.rejects(openZstdChunked(new BufferBlob(blob), { ...ann, [Annotation.zstdChunkedManifestPosition]: '10:20:30:2' }), /manifest type 2, expected 1/);
  });

  it('a TOC declared larger than 150 MiB (uncompressed or compressed), before reading it', async () => {
    const m = parseManifestPosition(ann[Annotation.zstdChunkedManifestPosition]!, 'p');
    const big = { ...ann, [Annotation.zstdChunkedManifestPosition]: `${m.offset}:${m.length}:${151 << 20}:1` };
    await assert.rejects(openZstdChunked(new BufferBlob(blob), big), /exceeds the 157286400-byte limit/);
    const bad = Buffer.from(blob);
    bad.writeBigUInt64LE(BigInt(151 << 20), blob.length - 64 + 8); // compressed length in the footer
    await assert.rejects(openZstdChunked(new BufferBlob(bad), {}), /exceeds the 157286400-byte limit/);
  });

  it('a TOC whose declared uncompressed size is smaller than what it inflates to', async () => {
    const m = parseManifestPosition(ann[Annotation.zstdChunkedManifestPosition]!, 'p');
    const lie = { ...ann, [Annotation.zstdChunkedManifestPosition]: `${m.offset}:${m.length}:100:1` };
    // Within one block of the declared size the bound cannot tell; the exact length check then refuses it.
    await assert.rejects(openZstdChunked(new BufferBlob(blob), lie), /TOC: decompressed to \d+ bytes, but 100 are declared/);
  });

  it('a tar-split that disagrees with the TOC (metadata, a missing entry)', async () => {
    const mode = await withToc(blob, ann, (toc) => {
      toc.entries.find((e) => e.name === './small.txt')!.mode = 0o777;
    });
    await assert.rejects(openZstdChunked(new BufferBlob(mode.blob), mode.annotations), /tar-split and TOC disagree: ".\/small.txt": mode 511 != 420/);
    const missing = await withToc(blob, ann, (toc) => {
      toc.entries = toc.entries.filter((e) => e.name !== './small.txt');
    });
    await assert.rejects(openZstdChunked(new BufferBlob(missing.blob), missing.annotations), /tar-split has an entry for ".\/small.txt" that the TOC lacks/);
  });

  it('a tar-split whose bytes do not match the TOC tarSplitDigest', async () => {
    const ts = parseTarSplitPosition(ann[Annotation.zstdChunkedTarSplitPosition]!, 't');
    const bad = Buffer.from(blob);
    bad[ts.offset + 20] ^= 0xff;
    await assert.rejects(openZstdChunked(new BufferBlob(bad), ann), /tar-split digest mismatch/);
  });

  it('a corrupt chunk: EIO-worthy ChunkVerifyError, never wrong bytes', async () => {
    const layer = await openZstdChunked(new BufferBlob(blob), ann);
    const chunk = layer.entries.find((e) => e.path === 'sub/big')!.chunks.find((c) => !c.zeros && c.fileOffset > 0)!;
    const good = blob.subarray(chunk.start, chunk.end);
    assert.equal(sha256(await layer.decodeChunk(chunk, good)), chunk.digest);
    const bad = Buffer.from(good);
    bad[bad.length >> 1] ^= 0x55;
    await assert.rejects(layer.decodeChunk(chunk, bad), ChunkVerifyError);
    await assert.rejects(layer.decodeChunk({ ...chunk, digest: sha256('other') }, good), /digest sha256:[0-9a-f]+, TOC says/);
    await assert.rejects(layer.decodeChunk(chunk, good.subarray(1)), /got \d+ compressed bytes/);
  });

  it('a chunk that would inflate far beyond its declared size (decompression bomb)', async () => {
    const layer = await openZstdChunked(new BufferBlob(blob), ann);
    const bomb = await compress(Buffer.alloc(64 << 20), 3);
    const chunk: ChunkRef = { fileOffset: 0, size: 1000, start: 0, end: bomb.length, innerOffset: 0, digest: sha256(Buffer.alloc(1000)), zeros: false };
    await assert.rejects(layer.decodeChunk(chunk, bomb), (e: Error) => e instanceof ChunkVerifyError && /may inflate to 67108864 bytes, but 1000 are declared/.test(e.message));
  });

  it('a zeros chunk whose digest is not that of zeros', async () => {
    const layer = await openZstdChunked(new BufferBlob(blob), ann);
    const zeros: ChunkRef = { fileOffset: 0, size: 4096, start: 10, end: 20, innerOffset: 0, digest: sha256(Buffer.alloc(4096)), zeros: true };
    assert.deepEqual(await layer.decodeChunk(zeros, Buffer.alloc(0)), Buffer.alloc(4096));
    await assert.rejects(layer.decodeChunk({ ...zeros, digest: sha256('x') }, Buffer.alloc(0)), ChunkVerifyError);
  });

  it('TOC entries that escape the root, carry NUL, or point chunks into the TOC', () => {
    const entry = (over: Record<string, unknown>) => ({ version: 1, entries: [{ type: 'reg', name: 'f', size: 5, digest: sha256('hello'), offset: 10, endOffset: 20, ...over }] });
    assert.doesNotThrow(() => decodeZstdChunkedToc(entry({}), 100));
    assert.throws(() => decodeZstdChunkedToc(entry({ name: '../../etc/passwd' }), 100), (e: Error) => e instanceof TocError && /escapes the layer root/.test(e.message));
    assert.throws(() => decodeZstdChunkedToc(entry({ name: 'a\0b' }), 100), /NUL/);
    assert.throws(() => decodeZstdChunkedToc(entry({ endOffset: 200 }), 100), /runs into the TOC/);
    assert.throws(() => decodeZstdChunkedToc(entry({ digest: 'md5:x' }), 100), /not a sha256 digest/);
    assert.throws(() => decodeZstdChunkedToc({ version: 2, entries: [] }, 100), /version 2/);
    assert.throws(() => decodeZstdChunkedToc({ version: 1, entries: [{ type: 'chunk', name: 'f' }] }, 100), /chunk entry does not follow/);
    assert.throws(() => decodeZstdChunkedToc({ version: 1, entries: [{ type: 'hardlink', name: 'l', linkName: 'nowhere' }] }, 100), /points to "nowhere", which is not in the layer/);
  });

  it('a blob that is plain zstd, not zstd:chunked', async () => {
    const plain = await compress(Buffer.alloc(100_000, 1), 3);
    await assert.rejects(openZstdChunked(new BufferBlob(plain, 'plain.zst'), {}), /plain.zst: no zstd:chunked position annotation and no zstd:chunked footer/);
  });

  it('writer: a truncated tar, a non-tar input, and a sparse file', async () => {
    const tar = await smallTar();
    await assert.rejects(convertZstd(tar.subarray(0, 700)), (e: Error) => e instanceof TarFormatError && /truncated header/.test(e.message));
    const big = tar.indexOf(Buffer.from('./sub/big'));
    await assert.rejects(convertZstd(tar.subarray(0, big + 512 + 1000)), /unexpected end of archive inside an entry/);
    await assert.rejects(convertZstd(Buffer.alloc(2048, 0x41)), /not a tar archive, or corrupt/);
    const dir = await tempDir('starling-zc-sparse-');
    await run('truncate', ['-s', '10M', join(dir, 'sparse')]);
    await run('sh', ['-c', `printf data >> ${join(dir, 'sparse')}`]);
    await run('tar', ['-C', dir, '-cSf', join(dir, 'sparse.tar'), '--format=gnu', 'sparse']);
    await assert.rejects(convertZstd(join(dir, 'sparse.tar')), /"sparse": GNU sparse files cannot be stored in zstd:chunked/);
  });
});
