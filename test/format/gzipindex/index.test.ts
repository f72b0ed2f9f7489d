// The gzip index of a layer: built in one pass (file table + checkpoints + span digests), stored and
// read back unchanged, every file's bytes read through verified spans; hostile indexes refused with
// the reason (truncated, oversized, checkpoints past the blob, paths escaping the root, another layer).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { deflateSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { BufferBlob } from '../../../src/blob/source.js';
import { buildGzipIndex } from '../../../src/format/gzipindex/build.js';
import { decodeGzipIndex, encodeGzipIndex, MAGIC, MAX_BODY_BYTES } from '../../../src/format/gzipindex/encoding.js';
import { gzipIndexToc } from '../../../src/format/gzipindex/layer.js';
import type { GzipIndex } from '../../../src/format/gzipindex/model.js';
import { readSpan, readTarRange, spanRange } from '../../../src/format/gzipindex/span.js';
import { ChunkVerifyError, type ChunkRef } from '../../../src/format/toc.js';
import { sha256 } from '../../../src/oci/digest.js';
import { MediaType } from '../../../src/oci/mediatypes.js';
import type { Descriptor } from '../../../src/oci/types.js';
import { gnuGzip, goGzip, pigz, variedData } from './helpers.js';

const T = { timeout: 120_000 };
const MTIME = new Date('2024-05-06T07:08:09Z');

/** A tar with every entry type the file table holds, files crossing spans, xattrs and a long name. */
async function sampleTar(): Promise<{ tar: Buffer; files: Map<string, Buffer> }> {
  const files = new Map<string, Buffer>([
    ['usr/lib/big.bin', variedData(3 << 20, 11)],
    ['usr/lib/small.txt', Buffer.from('small file\n')],
    ['etc/empty', Buffer.alloc(0)],
    [`usr/share/${'long-name-'.repeat(15)}.txt`, variedData(700_000, 12)],
    ['usr/lib/mid.bin', variedData(1_500_000, 13)],
  ]);
  const p = pack();
  const parts: Buffer[] = [];
  const ended = (async () => {
    for await (const d of p) parts.push(d as Buffer);
  })();
  p.entry({ name: './', type: 'directory', mode: 0o755, mtime: MTIME });
  for (const d of ['etc/', 'usr/', 'usr/lib/', 'usr/share/']) p.entry({ name: d, type: 'directory', mode: 0o755, mtime: MTIME });
  for (const [name, data] of files) {
    const pax = name.endsWith('small.txt') ? { 'SCHILY.xattr.user.note': 'hello', 'SCHILY.xattr.security.capability': '\x01\x02' } : undefined;
    p.entry({ name, mode: 0o640, uid: 1000, gid: 100, mtime: MTIME, size: data.length, ...(pax ? { pax } : {}) }, data);
  }
  p.entry({ name: 'usr/bin/tool', type: 'symlink', linkname: '../lib/big.bin', mtime: MTIME });
  p.entry({ name: 'usr/lib/hard.bin', type: 'link', linkname: 'usr/lib/mid.bin', mtime: MTIME });
  p.entry({ name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666, mtime: MTIME });
  p.entry({ name: 'run/fifo', type: 'fifo', mode: 0o600, mtime: MTIME });
  p.finalize();
  await ended;
  return { tar: Buffer.concat(parts), files };
}

const layerOf = (blob: Buffer): Descriptor => ({ mediaType: MediaType.ociLayerGzip, digest: sha256(blob), size: blob.length });

async function indexOf(blob: Buffer, span: number): Promise<GzipIndex> {
  const pieces: Buffer[] = [];
  for (let i = 0; i < blob.length; i += 65536) pieces.push(blob.subarray(i, i + 65536));
  return buildGzipIndex(Readable.from(pieces), layerOf(blob), span);
}

test('the file table lists every tar entry with its data offset, and files read back through the spans', T, async () => {
  const { tar, files } = await sampleTar();
  for (const [name, blob] of [
    ['gzip', gnuGzip(tar, '-6')],
    ['pigz', pigz(tar, '-p', '2')],
    ['go, 3 members', goGzip(tar, '-members', '3')],
  ] as const) {
    const index = await indexOf(blob, 256 << 10);
    assert.equal(index.uncompressedSize, tar.length, name);
    assert.equal(index.compressedSize, blob.length);
    assert.deepEqual(
      index.entries.map((e) => `${e.type} ${e.path}`),
      ['dir ', 'dir etc', 'dir usr', 'dir usr/lib', 'dir usr/share', ...[...files.keys()].map((f) => `reg ${f}`), 'symlink usr/bin/tool', 'hardlink usr/lib/hard.bin', 'char dev/null', 'fifo run/fifo'],
    );
    const blobSource = new BufferBlob(blob);
    for (const e of index.entries.filter((x) => x.type === 'reg')) {
      assert.ok(tar.subarray(e.offset, e.offset + e.size).equals(files.get(e.path)!), `${name}: offset of ${e.path}`);
      assert.ok((await readTarRange(index, blobSource, e.offset, e.size)).equals(files.get(e.path)!), `${name}: ${e.path} through the spans`);
      assert.equal(e.mode, 0o640);
      assert.equal(e.uid, 1000);
      assert.equal(e.gid, 100);
      assert.equal(e.mtimeMs, MTIME.getTime());
    }
    const small = index.entries.find((e) => e.path === 'usr/lib/small.txt')!;
    assert.deepEqual([...small.xattrs].map(([k, v]) => [k, v.toString('latin1')]), [['security.capability', '\x01\x02'], ['user.note', 'hello']]);
    assert.equal(index.entries.find((e) => e.type === 'symlink')!.linkName, '../lib/big.bin');
    assert.equal(index.entries.find((e) => e.type === 'hardlink')!.linkName, 'usr/lib/mid.bin');
    assert.deepEqual([index.entries.find((e) => e.type === 'char')!.devMajor, index.entries.find((e) => e.type === 'char')!.devMinor], [1, 3]);
    // 5.3 MiB of tar at 256 KiB spans
    assert.ok(index.checkpoints.length >= 15 && index.checkpoints.length <= 22, `${name}: ${index.checkpoints.length} spans`);
  }
});

test('as a LayerToc, a file is slices of the spans it lies in, each span decoded whole and verified; a range that is not a span is refused', T, async () => {
  const { tar, files } = await sampleTar();
  const blob = await pigz(tar);
  const index = await indexOf(blob, 256 << 10);
  const toc = gzipIndexToc(index);
  assert.equal(toc.format, 'gzip-index');
  // What the chunk store loads for a slice: the whole span.
  const unitOf = (c: ChunkRef): ChunkRef => ({ ...c, fileOffset: 0, size: c.unitSize!, innerOffset: 0 });
  for (const e of toc.entries.filter((x) => x.type === 'reg')) {
    let at = 0;
    const parts: Buffer[] = [];
    for (const c of e.chunks) {
      assert.equal(c.fileOffset, at);
      at += c.size;
      assert.ok(c.innerOffset + c.size <= c.unitSize!);
      parts.push((await toc.decodeChunk(unitOf(c), blob.subarray(c.start, c.end))).subarray(c.innerOffset, c.innerOffset + c.size));
    }
    assert.ok(Buffer.concat(parts).equals(files.get(e.path)!), e.path);
  }
  const big = toc.entries.find((e) => e.path === 'usr/lib/big.bin')!;
  assert.ok(big.chunks.length >= 12, `${big.chunks.length} chunks`);
  const [c1, c2] = [big.chunks[1]!, big.chunks[2]!];
  const compressed = blob.subarray(c1.start, c1.end);
  await assert.rejects(toc.decodeChunk({ ...unitOf(c1), digest: c2.digest }, compressed), ChunkVerifyError);
  await assert.rejects(toc.decodeChunk({ ...unitOf(c1), size: c1.unitSize! - 1 }, compressed), ChunkVerifyError);
  await assert.rejects(toc.decodeChunk({ ...unitOf(c1), end: c1.end - 1 }, compressed.subarray(1)), ChunkVerifyError);
});

test('an index is stored compressed and reads back field for field', T, async () => {
  const { tar } = await sampleTar();
  const blob = gnuGzip(tar, '-9');
  const index = await indexOf(blob, 1 << 20);
  const stored = await encodeGzipIndex(index);
  assert.ok(stored.subarray(0, 8).equals(MAGIC));
  assert.ok(stored.length < 7 * 32768, `${stored.length} bytes for ${index.checkpoints.length} windows`);
  const back = await decodeGzipIndex(stored, layerOf(blob));
  assert.deepEqual(back, index);
  assert.ok((await encodeGzipIndex(back)).equals(stored));
});

test('a span whose bytes do not match its digest is refused; the others still read', T, async () => {
  const { tar: data } = await sampleTar();
  const blob = gnuGzip(data);
  const index = await indexOf(blob, 512 << 10);
  const r = spanRange(index, 1);
  const tampered = Buffer.from(blob);
  tampered[r.start + Math.floor((r.end - r.start) / 2)]! ^= 0x01;
  await assert.rejects(readSpan(index, new BufferBlob(tampered), 1), (err: Error) => err instanceof ChunkVerifyError && /span 1 /.test(err.message));
  assert.ok((await readSpan(index, new BufferBlob(tampered), 0)).equals(data.subarray(0, index.checkpoints[1]!.out)));
  const forged = { ...index, spanDigests: index.spanDigests.map((d, i) => (i === 2 ? sha256('other') : d)) };
  await assert.rejects(readSpan(forged, new BufferBlob(blob), 2), /span 2 .*digest sha256:[0-9a-f]+, the index says/);
});

/** An index stored with `body` as its body (and a header that says so). */
function storedWithBody(body: Buffer, bodyLength = body.length): Buffer {
  const header = Buffer.alloc(16);
  MAGIC.copy(header);
  header.writeUInt16LE(1, 8);
  header.writeUInt32LE(bodyLength, 12);
  return Buffer.concat([header, deflateSync(body)]);
}

test('hostile indexes are refused with the reason', T, async () => {
  const { tar } = await sampleTar();
  const blob = gnuGzip(tar);
  const layer = layerOf(blob);
  const index = await indexOf(blob, 256 << 10);
  const stored = await encodeGzipIndex(index);
  const refused = async (bytes: Buffer, reason: RegExp, what = layer) => assert.rejects(decodeGzipIndex(bytes, what), reason);
  const edited = async (edit: (ix: GzipIndex) => GzipIndex) => encodeGzipIndex(edit(index));

  await refused(stored.subarray(0, stored.length - 20), /body does not decompress/);
  await refused(stored.subarray(0, 10), /bad magic/);
  await refused(Buffer.from('not an index at all'), /bad magic/);
  const body = (await import('node:zlib')).inflateSync(stored.subarray(16));
  await refused(storedWithBody(body.subarray(0, body.length - 7)), /truncated: needs \d+ more bytes/);
  await refused(storedWithBody(body, body.length - 1), /body is \d+ bytes, the header says/);
  await refused(storedWithBody(Buffer.concat([body, Buffer.alloc(3)])), /3 bytes after the last entry/);
  await refused(storedWithBody(body, MAX_BODY_BYTES + 1), /exceeds the \d+-byte limit/);
  const version2 = Buffer.from(stored);
  version2.writeUInt16LE(2, 8);
  await refused(version2, /version 2 is not supported/);
  // counts that claim more than the body holds
  const manyEntries = Buffer.from(body);
  manyEntries.writeUInt32LE(3_000_000, 56);
  await refused(storedWithBody(manyEntries), /entry count 3000000 exceeds the limit or the body/);

  await refused(stored, /it is the index of sha256:/, { ...layer, digest: sha256('another layer') });
  await refused(stored, /it is of a \d+-byte blob, the layer is 5 bytes/, { ...layer, size: 5 });
  await refused(await edited((ix) => ({ ...ix, checkpoints: ix.checkpoints.map((c, i) => (i === 3 ? { ...c, in: blob.length + 100 } : c)) })), /checkpoint 3: compressed offset \d+ is outside the blob/);
  await refused(await edited((ix) => ({ ...ix, checkpoints: ix.checkpoints.map((c, i) => (i === 2 ? { ...c, in: ix.checkpoints[1]!.in } : c)) })), /checkpoint 2 is not after checkpoint 1/);
  await refused(await edited((ix) => ({ ...ix, checkpoints: ix.checkpoints.map((c, i) => (i === 1 ? { ...c, bits: 9 } : c)) })), /checkpoint 1: bit count 9/);
  await refused(await edited((ix) => ({ ...ix, uncompressedSize: 1000 })), /checkpoint 1: uncompressed offset \d+ is past the end of the tar/);
  const entry = (i: number, change: object) => (ix: GzipIndex) => ({ ...ix, entries: ix.entries.map((e, j) => (j === i ? { ...e, ...change } : e)) });
  await refused(await edited(entry(6, { path: '../../etc/passwd' })), /entry 6 .*"..\/..\/etc\/passwd" escapes the layer root/);
  await refused(await edited(entry(6, { path: 'etc/x\0y' })), /contains a NUL byte/);
  await refused(await edited(entry(6, { offset: 5 })), /entry 6 .*out of order or past the end of the tar/);
  await refused(await edited(entry(6, { size: tar.length })), /out of order or past the end of the tar/);
  await refused(await edited(entry(1, { size: 10 })), /entry 1 .*a dir has data/);
  await refused(await edited(entry(0, { type: 'reg' })), /the root must be a directory/);
  const hardlink = index.entries.findIndex((e) => e.type === 'hardlink');
  await refused(await edited(entry(hardlink, { linkName: 'nowhere' })), /hardlink "usr\/lib\/hard.bin" points to "nowhere", which is not in the layer/);
});
