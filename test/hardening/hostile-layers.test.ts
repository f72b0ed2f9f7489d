// Hostile seekable layers, built on purpose (test/hardening/blobs.ts): every TOC trick of issue 7
// in both formats. Each is refused when the layer is opened (TocError naming what is wrong), or the
// layer opens and the affected file reads as EIO through LazyFs while the others read correctly —
// never a crash, a hang, an unbounded allocation, or a path that leaves the layer root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createGzip, gzipSync } from 'node:zlib';
import { compress } from '@mongodb-js/zstd';
import { BufferBlob, type BlobSource } from '../../src/blob/source.js';
import { openEstargz, readFileRange } from '../../src/format/estargz/reader.js';
import { regularFileHeader } from '../../src/format/estargz/tar-blocks.js';
import { ChunkVerifyError, TocError, type LayerToc, type TocEntry } from '../../src/format/toc.js';
import { openZstdChunked } from '../../src/format/zstdchunked/reader.js';
import { FsError } from '../../src/fs/errors.js';
import { entryOf } from '../../src/fs/tree.js';
import { sha256 } from '../../src/oci/digest.js';
import { setup } from '../fs/helpers/fixture.js';
import { noise } from '../fs/helpers/layer.js';
import { estargzBlob, estargzData, estargzTocMember, zstdChunkedBlob, zstdChunkedData, type FileSpec } from './blobs.js';

type Format = 'estargz' | 'zstd';
const FORMATS: Format[] = ['estargz', 'zstd'];

const passwd = readFileSync('/etc/passwd');
const data = noise(20_000, 3);
const FILES: FileSpec[] = [
  { name: 'etc/passwd', content: passwd },
  { name: 'bin/data', content: data, chunkSize: 4096 },
];

interface Opened {
  toc: LayerToc;
  blob: BufferBlob;
  bytes: Buffer;
}

async function layerData(format: Format, files = FILES) {
  return format === 'estargz' ? estargzData(files) : await zstdChunkedData(files);
}

/** Builds the blob around `entries` (or raw TOC bytes) and opens it the way a mount does (TOC digest from the descriptor). */
async function open(format: Format, dataBytes: Buffer, toc: TocEntry[] | Buffer): Promise<Opened> {
  const doc = Buffer.isBuffer(toc) ? toc : { version: 1, entries: toc };
  if (format === 'estargz') {
    const { blob, tocDigest } = estargzBlob(dataBytes, doc);
    const src = new BufferBlob(blob, 'hostile eStargz');
    return { toc: await openEstargz(src, { tocDigest }), blob: src, bytes: blob };
  }
  const { blob, annotations } = await zstdChunkedBlob(dataBytes, doc);
  const src = new BufferBlob(blob, 'hostile zstd:chunked');
  return { toc: await openZstdChunked(src, annotations, { requireChecksum: true }), blob: src, bytes: blob };
}

async function refused(p: Promise<unknown>, why: RegExp): Promise<void> {
  await assert.rejects(p, (err: Error) => {
    assert.ok(err instanceof TocError, `expected a TocError, got ${err.constructor.name}: ${err.message}`);
    assert.match(err.message, why);
    return true;
  });
}

/** Every accepted path is relative, clean and NUL-free: nothing can point outside the layer root. */
function assertPathsInside(toc: LayerToc): void {
  for (const e of toc.entries) {
    for (const p of e.type === 'hardlink' ? [e.path, e.linkName] : [e.path]) {
      assert.ok(!p.startsWith('/') && !p.includes('\0') && !p.split('/').some((c) => c === '..' || c === '.' || (c === '' && p !== '')), `unsafe path ${JSON.stringify(p)}`);
    }
  }
}

/** Reads files through a LazyFs over the layer: `eio` paths must fail with EIO, the others give their content. */
async function readThroughLazyFs(l: Opened, expect: { eio?: string[]; ok?: Record<string, Buffer> }): Promise<void> {
  const env = await setup([l]);
  try {
    for (const p of expect.eio ?? []) {
      await assert.rejects(env.readAll(`/${p}`), (err: Error) => err instanceof FsError && err.code === 'EIO', `${p} should be EIO`);
    }
    for (const [p, want] of Object.entries(expect.ok ?? {})) assert.deepEqual(await env.readAll(`/${p}`), want, p);
  } finally {
    await env.cleanup();
  }
}

for (const format of FORMATS) {
  test(`${format}: a well-formed layer of the builder opens and reads back (control case)`, async () => {
    const d = await layerData(format);
    const l = await open(format, d.data, d.entries);
    await readThroughLazyFs(l, { ok: { 'etc/passwd': passwd, 'bin/data': data } });
  });

  test(`${format}: names with '..', NUL are refused; absolute, '//' and '.' names are normalised inside the root`, async () => {
    const d = await layerData(format);
    const withName = (name: string, i = 1) => d.entries.map((e, k) => (k === i ? { ...e, name } : e));
    for (const bad of ['../escape', 'a/../../escape', '/../../etc/shadow', 'x/../..']) {
      await refused(open(format, d.data, withName(bad)), /escapes the layer root/);
    }
    await refused(open(format, d.data, withName('etc/pass\0wd')), /NUL/);
    for (const [name, want] of [
      ['/etc/passwd', 'etc/passwd'],
      ['//etc//./passwd', 'etc/passwd'],
      ['./etc/x/../passwd', 'etc/passwd'],
    ]) {
      const l = await open(format, d.data, withName(name!));
      assertPathsInside(l.toc);
      assert.ok(l.toc.entries.some((e) => e.path === want && e.type === 'reg'), `${name} → ${want}`);
    }
  });

  test(`${format}: very long names (a 5000-byte component, 4000 components) open without harm`, async () => {
    const d = await layerData(format);
    const long = 'n'.repeat(5000);
    const deep = Array.from({ length: 4000 }, (_, i) => `d${i % 10}`).join('/');
    const entries = [...d.entries, { name: long, type: 'dir' as const }, { name: `${deep}/leaf`, type: 'symlink' as const, linkName: 'x' }];
    const l = await open(format, d.data, entries);
    assertPathsInside(l.toc);
    const env = await setup([l]);
    try {
      assert.ok(env.fs.readdir('/').names.includes(long));
      assert.equal(env.fs.readlink(`/${deep}/leaf`), 'x');
    } finally {
      await env.cleanup();
    }
  });

  test(`${format}: symlinks pointing outside are served as link text, never followed`, async () => {
    const d = await layerData(format);
    const entries: TocEntry[] = [
      ...d.entries,
      { name: 'up', type: 'symlink', linkName: '../../../../etc/shadow' },
      { name: 'abs', type: 'symlink', linkName: '/etc/shadow' },
    ];
    const l = await open(format, d.data, entries);
    const env = await setup([l]);
    try {
      assert.equal(env.fs.readlink('/up'), '../../../../etc/shadow');
      assert.equal(env.fs.readlink('/abs'), '/etc/shadow');
      // Opening a link reads the link entry itself (no content), not the host file it names.
      assert.equal((await env.readAll('/abs')).length, 0);
    } finally {
      await env.cleanup();
    }
  });

  test(`${format}: hardlinks outside the root or to missing targets are refused; cycles are never followed`, async () => {
    const d = await layerData(format);
    await refused(open(format, d.data, [...d.entries, { name: 'h', type: 'hardlink', linkName: '../../etc/shadow' }]), /escapes the layer root/);
    await refused(open(format, d.data, [...d.entries, { name: 'h', type: 'hardlink', linkName: 'no/such/file' }]), /not in the layer/);
    const cycle: TocEntry[] = [...d.entries, { name: 'a', type: 'hardlink', linkName: 'b' }, { name: 'b', type: 'hardlink', linkName: 'a' }, { name: 'self', type: 'hardlink', linkName: 'self' }];
    let l: Opened | undefined;
    try {
      l = await open(format, d.data, cycle);
    } catch (err) {
      assert.ok(err instanceof TocError, String(err));
    }
    if (l) {
      // Opened: the links resolve to nothing readable, and building the tree terminates.
      await assert.rejects(readFileRange(l.toc, l.blob, l.toc.entries.find((e) => e.path === 'a')!, 0, 10), TocError);
      const env = await setup([l]);
      try {
        for (const p of ['/a', '/b', '/self']) assert.throws(() => env.fs.lookup(p), (e: Error) => e instanceof FsError && e.code === 'ENOENT');
        assert.deepEqual(await env.readAll('/etc/passwd'), passwd);
      } finally {
        await env.cleanup();
      }
    }
  });

  test(`${format}: duplicate entries — the later one wins, once`, async () => {
    const d = await layerData(format);
    const dup = d.entries.find((e) => e.name === 'etc/passwd')!;
    const entries: TocEntry[] = [...d.entries, { name: '/etc//passwd', type: 'symlink', linkName: 'group' }];
    const l = await open(format, d.data, entries);
    const matches = l.toc.entries.filter((e) => e.path === 'etc/passwd');
    assert.equal(matches.length, 1);
    assert.equal(matches[0]!.type, 'symlink');
    assert.ok(dup);
  });

  test(`${format}: an entry below a regular file or a symlink never goes through it (the parent becomes a directory in the tree)`, async () => {
    const d = await layerData(format);
    const entries: TocEntry[] = [...d.entries, { name: 'lnk', type: 'symlink', linkName: '/etc' }, { name: 'lnk/evil', type: 'dir' }, { name: 'etc/passwd/x', type: 'dir' }];
    let l: Opened;
    try {
      l = await open(format, d.data, entries);
    } catch (err) {
      assert.ok(err instanceof TocError, String(err));
      return;
    }
    const env = await setup([l]).catch((err: Error) => {
      assert.ok(err instanceof TocError, `${err.constructor.name}: ${err.message}`);
      return undefined;
    });
    if (!env) return;
    try {
      // Nothing is followed: the later entries' parents become directories inside the tree (as
      // extracting would replace a non-directory), so /lnk/evil lives in the mount, not in /etc.
      assert.equal(entryOf(env.fs.lookup('/lnk')).type, 'dir');
      assert.equal(entryOf(env.fs.lookup('/lnk/evil')).type, 'dir');
      assert.equal(entryOf(env.fs.lookup('/etc/passwd')).type, 'dir');
      assert.ok(env.fs.readdir('/etc/passwd').names.includes('x'));
    } finally {
      await env.cleanup();
    }
  });

  test(`${format}: sizes and offsets beyond the blob, overlapping and unordered chunks are refused`, async () => {
    const d = await layerData(format);
    const idx = d.entries.findIndex((e) => e.name === 'bin/data');
    const change = (f: (es: TocEntry[]) => void) => {
      const es = structuredClone(d.entries);
      f(es);
      return es;
    };
    const cases: [string, TocEntry[]][] = [
      ['offset beyond the blob', change((es) => (es[idx]!.offset = 10_000_000))],
      ['size larger than the chunks', change((es) => (es[idx]!.size = 2 ** 40))],
      ['size smaller than the chunks', change((es) => (es[idx]!.size = 100))],
      ['negative size', change((es) => (es[idx]!.size = -1))],
      ['fractional offset', change((es) => (es[idx]!.offset = 1.5))],
      ['overlapping chunks', change((es) => (es[idx + 2]!.chunkOffset = es[idx + 1]!.chunkOffset))],
      ['unordered chunks', change((es) => ([es[idx + 1], es[idx + 2]] = [es[idx + 2]!, es[idx + 1]!]))],
      ['a chunk with no size', change((es) => (es[idx + 1]!.chunkSize = 0))],
      ['a gap between chunks', change((es) => (es[idx + 2]!.chunkOffset = es[idx + 2]!.chunkOffset! + 1))],
      ['a chunk entry with no file', change((es) => es.splice(idx, 1))],
    ];
    if (format === 'zstd') cases.push(['endOffset beyond the data', change((es) => (es[idx]!.endOffset = 10_000_000))]);
    for (const [what, entries] of cases) {
      await assert.rejects(open(format, d.data, entries), (err: Error) => err instanceof TocError && err.message.length > 0, what);
    }
  });

  test(`${format}: a chunk or file digest that does not match the bytes is EIO for that file only`, async () => {
    const d = await layerData(format);
    const idx = d.entries.findIndex((e) => e.name === 'bin/data');
    const swapped = structuredClone(d.entries);
    // The second chunk's digest names other bytes than its compressed range holds.
    swapped[idx + 1]!.chunkDigest = sha256(Buffer.alloc(4096, 1));
    const l = await open(format, d.data, swapped);
    await readThroughLazyFs(l, { eio: ['bin/data'], ok: { 'etc/passwd': passwd } });
    const wrongWhole = structuredClone(d.entries);
    const p = wrongWhole.find((e) => e.name === 'etc/passwd')!;
    // The digest a single-chunk file is verified with: chunkDigest in eStargz, digest in zstd:chunked.
    if (format === 'estargz') p.chunkDigest = sha256('something else');
    else p.digest = sha256('something else');
    const l2 = await open(format, d.data, wrongWhole);
    await readThroughLazyFs(l2, { eio: ['etc/passwd'], ok: { 'bin/data': data } });
    await refused(open(format, d.data, d.entries.map((e) => (e.name === 'etc/passwd' ? { ...e, digest: 'sha256:xyz' } : e))), /not a sha256 digest/);
  });

  test(`${format}: flipped bits in the blob's file data are EIO, never wrong bytes`, async () => {
    const d = await layerData(format);
    const l = await open(format, d.data, d.entries);
    const c = l.toc.entries.find((e) => e.path === 'bin/data')!.chunks[2]!;
    l.bytes[c.start + Math.floor((c.end - c.start) / 2)] ^= 0x10;
    await readThroughLazyFs(l, { eio: ['bin/data'], ok: { 'etc/passwd': passwd } });
  });

  test(`${format}: wrong TOC digest, invalid JSON and wrong versions are refused`, async () => {
    const d = await layerData(format);
    if (format === 'estargz') {
      const { blob } = estargzBlob(d.data, { version: 1, entries: d.entries });
      await refused(openEstargz(new BufferBlob(blob), { tocDigest: sha256('another toc') }), /TOC digest mismatch/);
    } else {
      const { blob, annotations } = await zstdChunkedBlob(d.data, { version: 1, entries: d.entries });
      const ann = { ...annotations, 'io.github.containers.zstd-chunked.manifest-checksum': sha256('another toc') };
      await refused(openZstdChunked(new BufferBlob(blob), ann), /checksum mismatch/);
    }
    await refused(open(format, d.data, Buffer.from('{"version":1,"entries":[{"name":')), /not valid JSON/);
    await refused(open(format, d.data, Buffer.from('[]')), /not a JSON object/);
    await refused(open(format, d.data, Buffer.from('{"version":2,"entries":[]}')), /version 2 is not supported/);
    await refused(open(format, d.data, Buffer.from(JSON.stringify({ version: 1, entries: [{ name: 'x', type: 'socket' }] }))), /unknown type/);
  });
}

test('estargz: a footer pointing at itself, past the blob, or at a non-gzip TOC is refused', async () => {
  const d = estargzData(FILES);
  const toc = { version: 1, entries: d.entries };
  const base = estargzBlob(d.data, toc);
  const self = estargzBlob(d.data, toc, { footerOffset: base.blob.length - 51 });
  await refused(openEstargz(new BufferBlob(self.blob)), /outside the blob/);
  await refused(openEstargz(new BufferBlob(estargzBlob(d.data, toc, { footerOffset: 2 ** 40 }).blob)), /outside the blob/);
  await refused(openEstargz(new BufferBlob(estargzBlob(d.data, toc, { tocMember: Buffer.from('not gzip at all') }).blob)), /does not decompress/);
  const wrongName = estargzBlob(d.data, toc, { tocMember: estargzTocMember(Buffer.from(JSON.stringify(toc)), 'other.json') });
  await refused(openEstargz(new BufferBlob(wrongName.blob)), /not stargz\.index\.json/);
  await refused(openEstargz(new BufferBlob(Buffer.from('tiny'))), /no eStargz footer/);
});

test('zstd:chunked: a footer pointing at itself or past the blob, and an unparsable TOC frame are refused', async () => {
  const d = await zstdChunkedData(FILES);
  const toc = { version: 1, entries: d.entries };
  const ok = await zstdChunkedBlob(d.data, toc, { noChecksum: true });
  const footerAt = ok.blob.length - 64;
  const self = await zstdChunkedBlob(d.data, toc, { noChecksum: true, manifest: { offset: footerAt, length: 64, uncompressedLength: 64 } });
  await refused(openZstdChunked(new BufferBlob(self.blob), {}), /TOC/);
  const past = await zstdChunkedBlob(d.data, toc, { noChecksum: true, manifest: { offset: 2 ** 40 } });
  await refused(openZstdChunked(new BufferBlob(past.blob), {}), /outside the blob/);
  const garbage = await zstdChunkedBlob(d.data, toc, { noChecksum: true, compressedToc: Buffer.from('definitely not zstd') });
  await refused(openZstdChunked(new BufferBlob(garbage.blob), {}), /TOC/);
  await refused(openZstdChunked(new BufferBlob(Buffer.from('tiny')), {}), /no zstd:chunked/);
  // A mount requires the checksum annotation: a footer alone cannot authenticate the TOC.
  await refused(openZstdChunked(new BufferBlob(ok.blob), {}, { requireChecksum: true }), /cannot be verified/);
});

/** A blob of `size` bytes that is zeros except for `tail` at its end; counts the bytes read. */
class SparseBlob implements BlobSource {
  bytesRead = 0;
  readonly description = 'sparse blob';
  constructor(
    readonly size: number,
    private readonly tail: Buffer,
  ) {}
  async read(offset: number, length: number): Promise<Buffer> {
    this.bytesRead += length;
    const out = Buffer.alloc(length);
    const tailStart = this.size - this.tail.length;
    for (let i = Math.max(offset, tailStart); i < offset + length; i++) out[i - offset] = this.tail[i - tailStart]!;
    return out;
  }
  async close(): Promise<void> {}
}

test('a TOC declared larger than 150 MiB is refused before it is fetched', async () => {
  const size = 200 << 20;
  const esgz = new SparseBlob(size, estargzBlob(Buffer.alloc(0), { version: 1, entries: [] }, { footerOffset: 1000 }).blob.subarray(-51));
  await refused(openEstargz(esgz), /exceeds/);
  assert.ok(esgz.bytesRead <= 64 << 10, `read ${esgz.bytesRead} bytes: more than the 64 KiB tail`);
  const zc = await zstdChunkedBlob(Buffer.alloc(16), { version: 1, entries: [] }, { noChecksum: true, manifest: { offset: 1000, length: 160 << 20, uncompressedLength: 160 << 20 } });
  const zsparse = new SparseBlob(size, zc.blob.subarray(-72));
  await refused(openZstdChunked(zsparse, {}), /exceeds the \d+-byte limit/);
  assert.ok(zsparse.bytesRead < 4096, `read ${zsparse.bytesRead} bytes`);
  // A small TOC declared (in the footer) to inflate to 200 MiB is refused before inflating.
  const liar = await zstdChunkedBlob(Buffer.alloc(16), { version: 1, entries: [] }, { noChecksum: true, manifest: { uncompressedLength: 200 << 20 } });
  await refused(openZstdChunked(new BufferBlob(liar.blob), {}), /exceeds/);
});

test('estargz: a TOC member that inflates past 150 MiB is refused, with bounded memory', async () => {
  // 160 MiB of JSON-ish padding in a tar member, gzip'd as a stream (about 160 KiB compressed).
  const gz = createGzip({ level: 1 });
  const parts: Buffer[] = [];
  gz.on('data', (b: Buffer) => parts.push(b));
  const done = new Promise((r) => gz.on('end', r));
  gz.write(regularFileHeader('stargz.index.json', 160 << 20));
  const zeros = Buffer.alloc(1 << 20, 0x20);
  for (let i = 0; i < 160; i++) if (!gz.write(zeros)) await new Promise((r) => gz.once('drain', r));
  gz.end();
  await done;
  const member = Buffer.concat(parts);
  const { blob } = estargzBlob(Buffer.from(gzipSync(Buffer.alloc(512))), {}, { tocMember: member });
  const before = process.memoryUsage.rss();
  await refused(openEstargz(new BufferBlob(blob)), /larger than/);
  assert.ok(process.memoryUsage.rss() - before < 400 << 20, 'inflating stopped near the limit');
});

test('decompression bombs: a chunk inflates only to its declared size', async () => {
  const bomb = Buffer.alloc(64 << 20); // 64 MiB of zeros
  // eStargz: a member holding 64 MiB of zeros, declared as a 4 KiB chunk whose digest is right.
  const gz = gzipSync(bomb, { level: 9 });
  const head = gzipSync(Buffer.alloc(512));
  const first4k = Buffer.alloc(4096);
  const small = gzipSync(Buffer.alloc(100));
  const eEntries: TocEntry[] = [
    { name: 'bomb', type: 'reg', size: 4096, offset: head.length, digest: sha256(first4k), chunkDigest: sha256(first4k), chunkSize: 4096 },
    // The opposite lie: 8 KiB declared, a member of 100 bytes.
    { name: 'liar', type: 'reg', size: 8192, offset: head.length + gz.length, digest: sha256(Buffer.alloc(8192)) },
  ];
  const e = await open('estargz', Buffer.concat([head, gz, small]), eEntries);
  const before = process.memoryUsage.rss();
  const bombEntry = e.toc.entries.find((x) => x.path === 'bomb')!;
  assert.deepEqual(await readFileRange(e.toc, e.blob, bombEntry, 0, 4096), first4k);
  assert.ok(process.memoryUsage.rss() - before < 32 << 20, 'inflated far less than the member holds');
  await assert.rejects(readFileRange(e.toc, e.blob, e.toc.entries.find((x) => x.path === 'liar')!, 0, 8192), (err: Error) => err instanceof ChunkVerifyError && /ends after 100 of 8192 uncompressed bytes/.test(err.message));
  await readThroughLazyFs(e, { eio: ['liar'], ok: { bomb: first4k } });
  // zstd:chunked: a frame that declares 64 MiB of content behind a 4 KiB chunk is refused unread.
  const z = await compress(bomb, 3);
  const lead = Buffer.alloc(16);
  const zEntries: TocEntry[] = [{ name: 'bomb', type: 'reg', size: 4096, offset: lead.length, endOffset: lead.length + z.length, digest: sha256(first4k) }];
  const zl = await open('zstd', Buffer.concat([lead, z]), zEntries);
  await assert.rejects(readFileRange(zl.toc, zl.blob, zl.toc.entries.find((x) => x.path === 'bomb')!, 0, 4096), (err: Error) => err instanceof ChunkVerifyError && /inflate to|declared/.test(err.message));
  await readThroughLazyFs(zl, { eio: ['bomb'] });
  // The same bomb streamed (no content size in the frame header): refused by the block-level bound.
  const streamed = await new Promise<Buffer>((resolve, reject) => {
    const child = execFile('zstd', ['-q', '-c', '-3'], { encoding: 'buffer', maxBuffer: 64 << 20 }, (err, out) => (err ? reject(err) : resolve(out)));
    child.stdin!.end(bomb);
  });
  assert.equal(streamed[4]! & 0xc0, 0, 'frame without a content size');
  const sEntries: TocEntry[] = [{ name: 'bomb', type: 'reg', size: 4096, offset: lead.length, endOffset: lead.length + streamed.length, digest: sha256(first4k) }];
  const sl = await open('zstd', Buffer.concat([lead, streamed]), sEntries);
  const rss = process.memoryUsage.rss();
  await assert.rejects(readFileRange(sl.toc, sl.blob, sl.toc.entries.find((x) => x.path === 'bomb')!, 0, 4096), (err: Error) => err instanceof ChunkVerifyError && /inflate to|declared/.test(err.message));
  assert.ok(process.memoryUsage.rss() - rss < 32 << 20, 'refused before inflating');
});
