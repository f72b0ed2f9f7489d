// Round trip on real content: realTar('pax') → writeEstargz → openEstargz; every entry's metadata and
// bytes equal what tar-stream reads from the source tar. Also: the blob is an ordinary tar.gz,
// output is deterministic, and the chunk-size option shapes the chunks.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pack, type Header } from 'tar-stream';
import { decompressedTar } from '../../../src/format/compression.js';
import { writeEstargz } from '../../../src/format/estargz/writer.js';
import { BufferBlob } from '../../../src/blob/source.js';
import { sha256 } from '../../../src/oci/digest.js';
import { Annotation, MediaType } from '../../../src/oci/mediatypes.js';
import { openEstargz, readFileRange } from '../../../src/format/estargz/reader.js';
import { parseFooter } from '../../../src/format/estargz/footer.js';
import { normalizeEntryPath } from '../../../src/format/tar-entry.js';
import type { FileEntry, LayerToc } from '../../../src/format/toc.js';
import type { LayerWriteResult } from '../../../src/format/writer.js';
import { realTar } from '../../fixtures/real-tar.js';
import { convert, MemorySink, readSourceTar, type SourceEntry } from './helpers.js';

const run = promisify(execFile);
const TYPE: Record<string, string> = {
  file: 'reg',
  directory: 'dir',
  symlink: 'symlink',
  link: 'hardlink',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

let tarPath: string;
let source: SourceEntry[];
let blob: Buffer;
let result: LayerWriteResult;
let layer: LayerToc;

before(async () => {
  tarPath = await realTar('pax');
  source = await readSourceTar(tarPath);
  ({ blob, result } = await convert(tarPath));
  layer = await openEstargz(new BufferBlob(blob, 'roundtrip blob'), { tocDigest: result.tocDigest });
});

test('result describes the blob: digest, size, diffID over the whole decompressed blob, annotations', () => {
  assert.equal(result.mediaType, MediaType.ociLayerGzip);
  assert.equal(result.digest, sha256(blob));
  assert.equal(result.size, blob.length);
  const plain = gunzipSync(blob);
  assert.equal(result.diffID, sha256(plain));
  assert.equal(result.uncompressedSize, plain.length);
  assert.deepEqual(result.annotations, {
    [Annotation.estargzTocDigest]: result.tocDigest,
    [Annotation.estargzUncompressedSize]: String(plain.length),
    [Annotation.estargzTocOffset]: String(parseFooter(blob.subarray(blob.length - 51)).tocOffset),
  });
  // The decompressed blob ends with the TOC entry and exactly one end-of-archive marker.
  assert.ok(plain.subarray(plain.length - 1024).every((b) => b === 0));
  assert.equal(layer.format, 'estargz');
  assert.equal(layer.tocDigest, result.tocDigest);
});

test('every source entry comes back with the same metadata', () => {
  const byPath = new Map(layer.entries.map((e) => [e.path, e]));
  assert.equal(layer.entries.length, source.length, 'one entry per tar entry, landmark and TOC hidden');
  for (const s of source) {
    const path = normalizeEntryPath(s.name);
    const e = byPath.get(path);
    assert.ok(e, `missing ${path}`);
    const what = `${path}: `;
    assert.equal(e.type, TYPE[s.type], what + 'type');
    assert.equal(e.mode, s.mode & 0o7777, what + 'mode');
    assert.equal(e.uid, s.uid, what + 'uid');
    assert.equal(e.gid, s.gid, what + 'gid');
    assert.equal(e.userName ?? '', s.uname, what + 'userName');
    assert.equal(e.groupName ?? '', s.gname, what + 'groupName');
    assert.equal(e.mtimeMs, s.mtimeMs, what + 'mtime');
    assert.equal(e.size, s.type === 'file' ? s.size : 0, what + 'size');
    if (s.type === 'symlink') assert.equal(e.linkName, s.linkname, what + 'symlink target as stored');
    if (s.type === 'link') assert.equal(e.linkName, normalizeEntryPath(s.linkname), what + 'hardlink target');
    if (s.type === 'character-device' || s.type === 'block-device') {
      assert.deepEqual([e.devMajor, e.devMinor], [s.devmajor, s.devminor], what + 'device numbers');
    }
    const xattrKeys = Object.keys(s.pax).filter((k) => k.startsWith('SCHILY.xattr.'));
    assert.deepEqual([...e.xattrs.keys()].sort(), xattrKeys.map((k) => k.slice('SCHILY.xattr.'.length)).sort(), what + 'xattr names');
    if (s.type === 'file') assert.equal(e.digest, s.sha256, what + 'digest');
  }
});

test('the fixture’s special cases survive: setuid, xattr bytes, devices, hardlinks, odd names', () => {
  const get = (p: string): FileEntry => {
    const e = layer.entries.find((x) => x.path === p);
    assert.ok(e, p);
    return e;
  };
  assert.equal(get('data/with-zeros.bin').mode, 0o4755);
  const x = get('data/xattr-file');
  assert.equal(x.xattrs.get('user.starling.test')?.toString(), 'value-1');
  assert.deepEqual(x.xattrs.get('user.binary'), Buffer.from([0x00, 0xff, 0x10]));
  assert.deepEqual([x.uid, x.gid], [1000, 1000]);
  assert.deepEqual([get('dev-nodes/null').type, get('dev-nodes/null').devMajor, get('dev-nodes/null').devMinor], ['char', 1, 3]);
  assert.deepEqual([get('dev-nodes/loop7').type, get('dev-nodes/loop7').devMajor, get('dev-nodes/loop7').devMinor], ['block', 7, 7]);
  assert.equal(get('dev-nodes/fifo').type, 'fifo');
  assert.deepEqual([get('links/hardlink-to-ls').type, get('links/hardlink-to-ls').linkName], ['hardlink', 'usr/bin/ls']);
  assert.equal(get('links/abs-symlink').linkName, '/usr/bin/zstd');
  assert.ok(layer.entries.some((e) => e.path.startsWith('names/ÄÖÜ-größe-日本語')), 'non-ASCII name');
  assert.ok(layer.entries.some((e) => e.path.length > 150), 'name longer than ustar allows');
  assert.equal(get('data/big.bin').chunks.length, Math.ceil(get('data/big.bin').size / (4 << 20)));
  assert.equal(get('data/exact-8MiB.bin').chunks.length, 2);
  assert.equal(get('data/empty').chunks.length, 0);
});

test('every file’s bytes read through the reader equal the source; ranges across chunk edges too', async () => {
  const src = new BufferBlob(blob);
  for (const e of layer.entries) {
    if (e.type !== 'reg' && e.type !== 'hardlink') continue;
    const bytes = await readFileRange(layer, src, e, 0, Number.MAX_SAFE_INTEGER);
    const s = source.find((x) => normalizeEntryPath(x.name) === (e.type === 'hardlink' ? e.linkName : e.path));
    assert.equal(sha256(bytes), s?.sha256, e.path);
  }
  const big = layer.entries.find((e) => e.path === 'data/big.bin')!;
  const whole = await readFileRange(layer, src, big, 0, big.size);
  for (const [off, len] of [
    [(4 << 20) - 10, 20],
    [(8 << 20) - 1, (4 << 20) + 2],
    [big.size - 5, 100],
    [big.size, 10],
  ] as const) {
    assert.deepEqual(await readFileRange(layer, src, big, off, len), whole.subarray(off, off + len), `range ${off}+${len}`);
  }
});

test('the blob is an ordinary tar.gz: gzip -t passes and tar -tzf lists every entry', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'starling-esgz-'));
  try {
    const file = join(dir, 'layer.tar.gz');
    await writeFile(file, blob);
    await run('gzip', ['-t', file]);
    const { stdout } = await run('tar', ['--quoting-style=literal', '-tzf', file], { maxBuffer: 16 << 20 });
    const listed = stdout.split('\n').filter(Boolean);
    assert.deepEqual(listed.sort(), [...source.map((s) => s.name), '.no.prefetch.landmark', 'stargz.index.json'].sort());
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('output is deterministic: same bytes twice and whatever the parallelism', async () => {
  const a = await convert(tarPath, { level: 1, parallelism: 1 });
  const b = await convert(tarPath, { level: 1, parallelism: 64 });
  const c = await convert(tarPath, { level: 1 });
  assert.equal(sha256(a.blob), sha256(b.blob));
  assert.equal(sha256(a.blob), sha256(c.blob));
  assert.equal(a.result.tocDigest, b.result.tocDigest);
});

test('members too large to buffer stream instead, with the same bytes (long runs of headers)', async () => {
  const streamed = await convert(tarPath, { level: 1, maxMemberBuffer: 1024 });
  const buffered = await convert(tarPath, { level: 1 });
  assert.equal(sha256(streamed.blob), sha256(buffered.blob));
  // 3000 empty files and dirs: one member of 3000+ headers.
  const p = pack();
  for (let i = 0; i < 1500; i++) {
    p.entry({ name: `d${i}/`, type: 'directory', mode: 0o755 } as Header);
    p.entry({ name: `d${i}/empty`, mode: 0o644 } as Header, '');
  }
  p.entry({ name: 'last.txt', mode: 0o644 } as Header, 'the end');
  p.finalize();
  const parts: Buffer[] = [];
  for await (const d of p as AsyncIterable<Buffer>) parts.push(d);
  const headersTar = Buffer.concat(parts);
  const a = await convert(headersTar, { level: 1, maxMemberBuffer: 64 * 1024 });
  const b = await convert(headersTar, { level: 1 });
  assert.equal(sha256(a.blob), sha256(b.blob));
  const l = await openEstargz(new BufferBlob(a.blob), { tocDigest: a.result.tocDigest });
  assert.equal(l.entries.length, 3001);
  // Opening reads the blob's last 64 KiB first: a TOC inside it costs no second read; a larger one is read whole.
  const tiny = await convert(Buffer.concat([headersTar.subarray(0, 512 * 3), Buffer.alloc(1024)]), { level: 1 });
  for (const built of [tiny, a]) {
    const reads: number[] = [];
    const blob = new BufferBlob(built.blob);
    const counting = { size: blob.size, description: 'counting', read: (o: number, n: number) => (reads.push(n), blob.read(o, n)), close: async () => {} };
    const opened = await openEstargz(counting, { tocDigest: built.result.tocDigest });
    assert.deepEqual(opened.entries, (await openEstargz(blob, { tocDigest: built.result.tocDigest })).entries);
    const tocAndFooter = built.blob.length - opened.tocOffset;
    assert.deepEqual(reads, tocAndFooter <= 64 << 10 ? [Math.min(64 << 10, built.blob.length)] : [64 << 10, tocAndFooter - 51]);
  }
  // A chunk larger than the buffer limit streams too.
  const hugeChunks = await convert(tarPath, { level: 1, chunkSize: 64 << 20, maxMemberBuffer: 1 << 20 });
  assert.equal(sha256(hugeChunks.blob), sha256((await convert(tarPath, { level: 1, chunkSize: 64 << 20 })).blob));
  const last = l.entries.at(-1)!;
  assert.equal((await readFileRange(l, new BufferBlob(a.blob), last, 0, 100)).toString(), 'the end');
});

test('chunk size option: every payload member holds at most chunkSize bytes and chunkSize is recorded', async () => {
  const chunkSize = 1 << 20;
  const { blob: small, result: r } = await convert(tarPath, { level: 1, chunkSize });
  const l = await openEstargz(new BufferBlob(small), { tocDigest: r.tocDigest });
  const big = l.entries.find((e) => e.path === 'data/big.bin')!;
  assert.equal(big.chunks.length, Math.ceil(big.size / chunkSize));
  for (const [i, c] of big.chunks.entries()) {
    assert.equal(c.fileOffset, i * chunkSize);
    assert.equal(c.size, Math.min(chunkSize, big.size - c.fileOffset));
  }
  const toc = JSON.parse(tocJsonOf(small)) as { entries: { name: string; type: string; chunkSize?: number }[] };
  const pieces = toc.entries.filter((e) => e.name === 'data/exact-8MiB.bin');
  assert.equal(pieces.length, 8);
  assert.ok(pieces.every((p) => p.chunkSize === chunkSize), 'an exact multiple has chunkSize on its last chunk too');
  const bigPieces = toc.entries.filter((e) => e.name === 'data/big.bin');
  assert.equal(bigPieces.at(-1)!.chunkSize, undefined, 'a last partial chunk has no chunkSize');
});

test('gzip and zstd layers convert through decompressedTar to the same blob as the plain tar', async () => {
  const plain = await readFile(tarPath);
  const expected = await convert(plain, { level: 1 });
  const zstd = (await run('zstd', ['-q', '-c', '-1', tarPath], { encoding: 'buffer', maxBuffer: 64 << 20 })).stdout;
  for (const [name, data] of [['gzip', gzipSync(plain, { level: 1 })], ['zstd', zstd]] as const) {
    const { compression, tar } = await decompressedTar(Readable.from([data]));
    assert.equal(compression, name);
    const sink = new MemorySink();
    const r = await writeEstargz(tar, sink, { level: 1 });
    assert.equal(r.digest, expected.result.digest, name);
    assert.equal(sha256(sink.data), sha256(expected.blob), name);
  }
});

/** The TOC JSON of a blob, read with plain zlib (independent of our reader). */
function tocJsonOf(b: Buffer): string {
  const tocOffset = parseInt(b.toString('latin1', b.length - 51 + 16, b.length - 51 + 32), 16);
  const tar = gunzipSync(b.subarray(tocOffset, b.length - 51));
  const size = parseInt(tar.toString('latin1', 124, 136), 8);
  return tar.toString('utf8', 512, 512 + size);
}
