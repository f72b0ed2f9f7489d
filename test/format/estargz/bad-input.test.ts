// Bad input to the writer and hostile blobs to the reader: each is refused with an error that names
// what is wrong; unverifiable chunk data never comes back as bytes.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { pack, type Header } from 'tar-stream';
import { BufferBlob } from '../../../src/blob/source.js';
import { sha256 } from '../../../src/oci/digest.js';
import { estargzFooter } from '../../../src/format/estargz/footer.js';
import { MAX_TOC_BYTES, openEstargz, readFileRange } from '../../../src/format/estargz/reader.js';
import { END_OF_ARCHIVE, padding, regularFileHeader } from '../../../src/format/estargz/tar-blocks.js';
import { TarFormatError } from '../../../src/format/estargz/tar-reader.js';
import { TarEntryError } from '../../../src/format/tar-entry.js';
import { ChunkVerifyError, TocError } from '../../../src/format/toc.js';
import { realTar } from '../../fixtures/real-tar.js';
import { convert } from './helpers.js';

const run = promisify(execFile);

async function packTar(entries: { header: Partial<Header> & { name: string }; content?: string }[]): Promise<Buffer> {
  const p = pack();
  for (const e of entries) p.entry(e.header as Header, e.content ?? '');
  p.finalize();
  const parts: Buffer[] = [];
  for await (const d of p as AsyncIterable<Buffer>) parts.push(d);
  return Buffer.concat(parts);
}

let realTarBytes: Buffer;
before(async () => {
  realTarBytes = await readFile(await realTar('pax'));
});

test('truncated input: inside a payload and inside a header', async () => {
  const midPayload = realTarBytes.subarray(0, Math.floor(realTarBytes.length / 2) + 100);
  await assert.rejects(convert(midPayload, { level: 1 }), (err: Error) => err instanceof TarFormatError && /truncated tar: input ended inside the content of "/.test(err.message));
  const small = await packTar([{ header: { name: 'a.txt' }, content: 'hello' }, { header: { name: 'b.txt' }, content: 'world' }]);
  await assert.rejects(convert(small.subarray(0, 512 + 512 + 100), { level: 1 }), /truncated tar: input ended inside a tar header/);
});

test('not a tar: random bytes, a few bytes, nothing', async () => {
  await assert.rejects(convert(Buffer.alloc(4096, 0x41), { level: 1 }), /not a tar: the first 512-byte block is not a valid tar header/);
  await assert.rejects(convert(Buffer.from('hello'), { level: 1 }), /not a tar: the input is only 5 bytes/);
  await assert.rejects(convert(Buffer.alloc(0), { level: 1 }), /not a tar: the input is empty/);
  await assert.rejects(convert(gzipSync(realTarBytes.subarray(0, 4096)), { level: 1 }), /not a tar: the input is gzip-compressed; decompress it first/);
});

test('entry paths escaping the root, and hardlinks escaping it, are refused by name', async () => {
  const escape = await packTar([{ header: { name: 'ok/' , type: 'directory' } }, { header: { name: '../x' }, content: 'evil' }]);
  await assert.rejects(convert(escape, { level: 1 }), (err: Error) => err instanceof TarEntryError && err.message.includes('"../x" escapes the layer root'));
  const deep = await packTar([{ header: { name: 'a/../../etc/passwd' }, content: 'evil' }]);
  await assert.rejects(convert(deep, { level: 1 }), /escapes the layer root/);
  const link = await packTar([{ header: { name: 'l', type: 'link', linkname: '../../etc/shadow' } }]);
  await assert.rejects(convert(link, { level: 1 }), /hardlink "l" target path "..\/..\/etc\/shadow" escapes the layer root/);
});

test('absolute entry paths are made relative; a ./-prefixed root entry is the root', async () => {
  const tar = await packTar([
    { header: { name: './', type: 'directory', mode: 0o755 } },
    { header: { name: '/abs/file.txt' }, content: 'x' },
  ]);
  const { blob, result } = await convert(tar, { level: 1 });
  const layer = await openEstargz(new BufferBlob(blob), { tocDigest: result.tocDigest });
  assert.deepEqual(layer.entries.map((e) => [e.path, e.type]), [['', 'dir'], ['abs/file.txt', 'reg']]);
});

test('sparse entries (GNU tar -S) are refused as unsupported', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'starling-sparse-'));
  try {
    await writeFile(join(dir, 'sparse'), 'head');
    await truncate(join(dir, 'sparse'), 4 << 20);
    await run('tar', ['-C', dir, '--format=gnu', '-S', '-cf', join(dir, 's.tar'), 'sparse']);
    await assert.rejects(convert(await readFile(join(dir, 's.tar')), { level: 1 }), /sparse tar entries are not supported: "sparse"/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('input landmarks and stargz.index.json are dropped; later duplicates win', async () => {
  const tar = await packTar([
    { header: { name: 'stargz.index.json' }, content: '{"version":1,"entries":[]}' },
    { header: { name: '.prefetch.landmark' }, content: '\x0f' },
    { header: { name: 'dup.txt' }, content: 'first version' },
    { header: { name: 'other.txt' }, content: 'other' },
    { header: { name: './dup.txt' }, content: 'second version' },
  ]);
  const { blob, result } = await convert(tar, { level: 1 });
  const layer = await openEstargz(new BufferBlob(blob), { tocDigest: result.tocDigest });
  assert.deepEqual(layer.entries.map((e) => e.path), ['other.txt', 'dup.txt']);
  const dup = layer.entries[1]!;
  assert.equal((await readFileRange(layer, new BufferBlob(blob), dup, 0, 100)).toString(), 'second version');
  assert.equal(layer.prefetchEnd, undefined, 'only our .no.prefetch.landmark is in the TOC');
});

test('a TOC digest that does not match the descriptor is refused with TocError', async () => {
  const { blob } = await convert(await packTar([{ header: { name: 'f' }, content: 'data' }]), { level: 1 });
  await assert.rejects(openEstargz(new BufferBlob(blob, 'layer X'), { tocDigest: sha256('other') }), (err: Error) => err instanceof TocError && /layer X: TOC digest mismatch/.test(err.message));
});

test('a tampered chunk throws ChunkVerifyError, never returns bytes (stored and deflated members)', async () => {
  const content = 'payload bytes that we will tamper with '.repeat(1000);
  for (const level of [0, 6]) {
    const tar = await packTar([{ header: { name: 'f' }, content }]);
    const { blob, result } = await convert(tar, { level });
    const layer = await openEstargz(new BufferBlob(blob), { tocDigest: result.tocDigest });
    const f = layer.entries[0]!;
    const chunk = f.chunks[0]!;
    const tampered = Buffer.from(blob);
    // Level 0: a payload byte in a stored block (the CRC is past what the reader inflates);
    // level 6: a byte in the middle of the deflate stream.
    tampered[Math.floor((chunk.start + chunk.end) / 2)]! ^= 0x01;
    await assert.rejects(readFileRange(layer, new BufferBlob(tampered), f, 0, f.size), ChunkVerifyError, `level ${level}`);
    assert.equal((await readFileRange(layer, new BufferBlob(blob), f, 0, f.size)).toString(), content);
  }
});

/** A blob whose TOC is `toc` (any JSON), after `data` bytes of gzip members. */
function blobWithToc(toc: unknown, data = gzipSync(Buffer.alloc(512))): { blob: Buffer; tocDigest: ReturnType<typeof sha256> } {
  const json = Buffer.from(JSON.stringify(toc));
  const tocMember = gzipSync(Buffer.concat([regularFileHeader('stargz.index.json', json.length), json, padding(json.length), END_OF_ARCHIVE]));
  return { blob: Buffer.concat([data, tocMember, estargzFooter(data.length)]), tocDigest: sha256(json) };
}

test('hostile or inconsistent TOCs are refused with a TocError naming the entry', async () => {
  const data = gzipSync(Buffer.alloc(1024, 1));
  const digest = sha256(Buffer.alloc(10, 1));
  const reg = (extra: object) => ({ name: 'f', type: 'reg', size: 10, offset: 1, chunkDigest: digest, ...extra });
  const cases: [string, unknown, RegExp][] = [
    ['escaping name', { version: 1, entries: [{ name: '../../etc/shadow', type: 'reg' }] }, /entry 0 \("..\/..\/etc\/shadow"\).*escapes the layer root/],
    ['NUL in name', { version: 1, entries: [{ name: 'a\u0000b', type: 'dir' }] }, /NUL/],
    ['version 2', { version: 2, entries: [] }, /version 2 is not supported/],
    ['unknown type', { version: 1, entries: [{ name: 'x', type: 'socket' }] }, /unknown type "socket"/],
    ['offset beyond the TOC', { version: 1, entries: [reg({ offset: data.length + 5 })] }, /runs into the TOC|is empty/],
    ['chunks do not cover the file', { version: 1, entries: [reg({ size: 20, chunkSize: 10 })] }, /chunks cover 10 bytes of 20/],
    ['no digest at all', { version: 1, entries: [reg({ chunkDigest: undefined })] }, /cannot be verified/],
    ['negative size', { version: 1, entries: [reg({ size: -1 })] }, /size -1 is not a non-negative integer/],
    ['hardlink to nothing', { version: 1, entries: [{ name: 'l', type: 'hardlink', linkName: 'missing' }] }, /hardlink "l" points to "missing"/],
    ['orphan chunk', { version: 1, entries: [{ name: 'd', type: 'dir' }, { name: 'd', type: 'chunk', offset: 1 }] }, /chunk entry does not follow a regular file/],
    ['bad modtime', { version: 1, entries: [{ name: 'd', type: 'dir', modtime: 'yesterday' }] }, /modtime "yesterday"/],
    ['not base64 xattr', { version: 1, entries: [{ name: 'd', type: 'dir', xattrs: { 'user.a': '!!' } }] }, /xattr "user.a" is not base64/],
    ['root is a file', { version: 1, entries: [{ name: '/', type: 'symlink', linkName: 'x' }] }, /root must be a directory/],
  ];
  for (const [what, toc, re] of cases) {
    const { blob, tocDigest } = blobWithToc(toc, data);
    await assert.rejects(openEstargz(new BufferBlob(blob), { tocDigest }), (err: Error) => err instanceof TocError && re.test(err.message), `${what}`);
  }
  // Old stargz: no chunkDigest, a single-chunk file is verified by its whole-file digest.
  const old = blobWithToc({ version: 1, entries: [reg({ chunkDigest: undefined, digest })] }, data);
  const layer = await openEstargz(new BufferBlob(old.blob), { tocDigest: old.tocDigest });
  assert.equal(layer.entries[0]!.chunks[0]!.digest, digest);
});

test('TOC size limits: compressed region and decompressed size', async () => {
  const huge = Buffer.alloc(MAX_TOC_BYTES + 1024);
  const blob = Buffer.concat([huge, estargzFooter(0)]);
  await assert.rejects(openEstargz(new BufferBlob(blob)), /compressed TOC of \d+ bytes exceeds/);
  const bomb = gzipSync(Buffer.alloc(MAX_TOC_BYTES + 4096), { level: 1 });
  await assert.rejects(openEstargz(new BufferBlob(Buffer.concat([bomb, estargzFooter(0)]))), /larger than \d+ bytes uncompressed/);
  await assert.rejects(openEstargz(new BufferBlob(Buffer.concat([gzipSync('junk'), estargzFooter(0)]))), /TOC member is not a valid tar|not a tar/);
  await assert.rejects(openEstargz(new BufferBlob(Buffer.alloc(30))), /no eStargz footer/);
  await assert.rejects(openEstargz(new BufferBlob(Buffer.concat([Buffer.alloc(10), estargzFooter(500)]))), /TOC offset 500 is outside the blob/);
});
