import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChunkCache } from '../../src/fs/chunk-cache.js';
import type { FsError } from '../../src/fs/errors.js';
import { makedev } from '../../src/fs/lazyfs.js';
import { WINDOW } from '../../src/fs/neighbourhood.js';
import { big, image, setup } from './helpers/fixture.js';
import { buildLayer, noise, rangeOf, recording } from './helpers/layer.js';
import { chunkIndexAt } from '../../src/fs/lazyfs.js';

test('attributes of every entry type, xattrs, symlinks, hardlinks, statfs; reads of what is not a regular file', async () => {
  const { fs, cleanup } = await setup(image());
  try {
    const tool = fs.getattr('/bin/tool');
    assert.equal(tool.mode, 0o100755);
    assert.equal(tool.uid, 10);
    assert.equal(tool.gid, 20);
    assert.equal(tool.size, big.length);
    assert.equal(tool.mtimeMs, 1_600_000_000_000);
    assert.equal(tool.nlink, 2);
    assert.equal(fs.getattr('/bin/link').ino, tool.ino);
    assert.equal(fs.getattr('/bin/sh').mode, 0o120644);
    assert.equal(fs.getattr('/bin/sh').size, 4);
    assert.equal(fs.readlink('/bin/sh'), 'tool');
    assert.equal(fs.getattr('/dev/null').mode, 0o020666);
    assert.equal(fs.getattr('/dev/null').rdev, makedev(1, 3));
    assert.equal(fs.getattr('/dev/sda').mode & 0o170000, 0o060000);
    assert.equal(fs.getattr('/dev/pipe').mode & 0o170000, 0o010000);
    assert.equal(fs.getattr('/').mode, 0o040755);
    assert.deepEqual(fs.readdir('/etc').names.sort(), ['.', '..', 'hosts', 'motd']);
    assert.deepEqual(fs.listxattr('/etc/hosts'), ['user.note']);
    assert.equal(fs.getxattr('/etc/hosts', 'user.note').toString(), 'hi');
    assert.throws(() => fs.getxattr('/etc/hosts', 'user.none'), (e: FsError) => e.code === 'ENODATA');
    assert.throws(() => fs.getattr('/etc/gone'), (e: FsError) => e.code === 'ENOENT');
    assert.throws(() => fs.getattr('/etc/hosts/x'), (e: FsError) => e.code === 'ENOTDIR');
    assert.throws(() => fs.readlink('/etc/hosts'), (e: FsError) => e.code === 'EINVAL');
    await assert.rejects(fs.read('/etc/gone', 0, 10), (e: FsError) => e.code === 'ENOENT');
    assert.equal((await fs.read('/bin/sh', 0, 10)).length, 0, 'only regular files have content');
    const st = fs.statfs();
    assert.equal(st.files, 12); // hardlinked names count once
    assert.ok(st.blocks >= Math.ceil(big.length / 4096));
  } finally {
    await cleanup();
  }
});

test('reads return the right bytes at any offset; a miss brings the chunks after it in the same request', async () => {
  const { fs, layerMetrics, metrics, readAll, cleanup } = await setup(image());
  try {
    assert.equal((await readAll('/etc/hosts')).toString(), '127.0.0.1 upper\n');
    assert.equal(layerMetrics[0]!.fetchedBytes, 0, 'the lower layer is untouched');
    // a read straddling a chunk boundary (64 KiB chunks)
    const piece = await fs.read('/bin/tool', 65_000, 2_000);
    assert.deepEqual(piece, big.subarray(65_000, 67_000));
    assert.equal(layerMetrics[0]!.requests, 1, 'two neighbouring chunks in one request');
    const window = layerMetrics[0]!.fetchedBytes;
    assert.ok(window > 2 * 65_536 && window <= WINDOW.initial + 70_000, `one window of ${window} bytes`);
    assert.deepEqual(await fs.read('/bin/tool', 2 * 65_536, 100), big.subarray(2 * 65_536, 2 * 65_536 + 100));
    // A chunk of the window: no request for it (the one neighbour read is most of the window, so the
    // window after it may be on its way: that one begins where this one ends).
    assert.ok(layerMetrics[0]!.fetchedBytes - window <= WINDOW.initial * 2 + 70_000);
    assert.deepEqual(await fs.read('/bin/tool', big.length - 10, 100), big.subarray(big.length - 10));
    assert.equal((await fs.read('/bin/tool', big.length + 5, 100)).length, 0);
    assert.deepEqual(await readAll('/bin/link'), big);
    assert.equal((await readAll('/empty')).length, 0);
    assert.ok(metrics.servedBytes >= big.length);
  } finally {
    await cleanup();
  }
});

test('concurrent reads of the same chunk are fetched once; sequential reads trigger read-ahead', async () => {
  const { fs, layerMetrics, readAll, cleanup } = await setup(image());
  try {
    const reads = await Promise.all([fs.read('/etc/motd', 0, 10), fs.read('/etc/motd', 5, 10), fs.read('/etc/motd', 20, 10)]);
    assert.deepEqual(reads.map((b) => b.toString()), ['x'.repeat(10), 'x'.repeat(10), 'x'.repeat(10)]);
    assert.equal(layerMetrics[1]!.requests, 1);
    // A sequential read of the 1 MiB file in 128 KiB steps: the read-ahead fetches far ahead in
    // few large ranges instead of one request per 64 KiB chunk.
    assert.deepEqual(await readAll('/bin/tool'), big);
    assert.ok(layerMetrics[0]!.requests <= 3, `requests: ${layerMetrics[0]!.requests}`);
  } finally {
    await cleanup();
  }
});

test('the first read of a file in one large chunk brings its neighbourhood window; a file read on from there takes its read-ahead into the same request', { timeout: 30_000 }, async () => {
  // 256 KiB chunks: each library is one chunk but d.so; each is read first as the dynamic loader does (its header).
  const layer = buildLayer(
    [
      { path: 'lib' },
      { path: 'lib/d.so', content: noise(600_000, 4) },
      { path: 'lib/a.so', content: noise(100_000, 1) },
      { path: 'lib/b.so', content: noise(20_000, 2) },
      { path: 'lib/c.so', content: noise(20_000, 3) },
    ],
    256 << 10,
  );
  const rec = recording(layer.blob);
  const { fs, readAll, cleanup } = await setup([{ ...layer, blob: rec.blob }]);
  try {
    // Three chunks: the first read's request carries the two after it (its read-ahead) too.
    assert.deepEqual(await fs.read('/lib/d.so', 0, 4096), noise(600_000, 4).subarray(0, 4096));
    assert.deepEqual(await readAll('/lib/d.so'), noise(600_000, 4));
    assert.equal(rec.seen.length, 1, "the read-ahead came in the read's request");
    assert.deepEqual(await fs.read('/lib/a.so', 0, 4096), noise(100_000, 1).subarray(0, 4096));
    assert.equal(rec.seen.length, 2);
    const { offset, length } = rec.seen[1]!;
    assert.ok(offset + length >= rangeOf(layer, '/lib/c.so').end, 'its window reaches over b.so and c.so');
    // Without that window (the read's chunk went as a read-ahead, which has none), each was a request.
    assert.deepEqual(await readAll('/lib/b.so'), noise(20_000, 2));
    assert.deepEqual(await readAll('/lib/c.so'), noise(20_000, 3));
    assert.equal(rec.seen.length, 2, 'b.so and c.so came with it');
  } finally {
    await cleanup();
  }
});

test('warm disk cache: a second mount over the same cache dir fetches nothing', async () => {
  const layers = image();
  const first = await setup(layers);
  assert.deepEqual(await first.readAll('/bin/tool'), big);
  // Disk writes follow the served reads (two at a time): wait until every chunk of the file is there.
  const digests = new Set(layers[0]!.toc.entries.find((e) => e.path === 'bin/tool')!.chunks.map((c) => c.digest));
  for (let i = 0; i < 100 && ![...digests].every((d) => first.cache.onDisk(d)); i++) await new Promise((r) => setTimeout(r, 50));
  const second = await setup(layers, { cacheDir: first.dir });
  try {
    assert.deepEqual(await second.readAll('/bin/tool'), big);
    assert.equal(second.layerMetrics[0]!.fetchedBytes, 0);
    assert.ok(second.metrics.cache.diskHits > 0);
  } finally {
    await first.cleanup();
  }
});

test('a chunk leaves the memory cache once all its bytes are served, in any order (the kernel keeps them); one read in part stays', async () => {
  const layers = image();
  const { fs, cache, cleanup } = await setup(layers);
  try {
    const chunks = layers[0]!.toc.entries.find((e) => e.path === 'bin/tool')!.chunks; // 16 × 64 KiB
    const from = chunks[5]!.fileOffset + 100;
    const to = chunks[9]!.fileOffset + chunks[9]!.size;
    for (let off = from; off < to; off += 10_000) assert.deepEqual(await fs.read('/bin/tool', off, Math.min(10_000, to - off)), big.subarray(off, Math.min(off + 10_000, to)));
    assert.equal(cache.inMemory(chunks[5]!.digest), true, 'begun before the run: not read wholly by it');
    for (const i of [6, 7, 8, 9]) assert.equal(cache.inMemory(chunks[i]!.digest), false, `chunk ${i} was read wholly`);
    assert.equal(cache.inMemory(chunks[10]!.digest), true, 'read ahead, not read yet');
    // A chunk only partly read stays.
    await fs.read('/bin/tool', chunks[2]!.fileOffset + 1, 10);
    assert.equal(cache.inMemory(chunks[2]!.digest), true);
    // The kernel's parallel requests arrive out of order: the last piece of chunk 14 first.
    const c = chunks[14]!;
    for (let off = c.size - 8192; off >= 0; off -= 8192) await fs.read('/bin/tool', c.fileOffset + off, 8192);
    assert.equal(cache.inMemory(c.digest), false, 'chunk 14 was served wholly, backwards');
  } finally {
    await cleanup();
  }
});

test('a damaged disk cache entry is a miss and is fetched again, never served', async () => {
  const layers = image();
  const first = await setup(layers);
  try {
    await first.readAll('/etc/hosts');
    await new Promise((r) => setTimeout(r, 50));
    const sub = (await readdir(join(first.dir, 'chunks'))).filter((s) => s.length === 2);
    for (const s of sub) for (const f of await readdir(join(first.dir, 'chunks', s))) await writeFile(join(first.dir, 'chunks', s, f), 'garbage');
    const second = await setup(layers, { cacheDir: first.dir });
    assert.equal((await second.readAll('/etc/hosts')).toString(), '127.0.0.1 upper\n');
    assert.ok(second.layerMetrics[1]!.fetchedBytes > 0);
  } finally {
    await first.cleanup();
  }
});

test('two interleaved sequential readers of one file each keep their read-ahead', async () => {
  const content = noise(16 << 20, 3); // 256 chunks of 64 KiB
  const layers = [buildLayer([{ path: 'data', content }])];
  const { fs, cache, cleanup } = await setup(layers);
  try {
    const chunks = layers[0]!.toc.entries.find((e) => e.path === 'data')!.chunks;
    const b = 8 << 20;
    for (let off = 0; off < 4 * 131_072; off += 131_072) {
      for (const start of [0, b]) assert.deepEqual(await fs.read('/data', start + off, 131_072), content.subarray(start + off, start + off + 131_072));
    }
    await new Promise((r) => setTimeout(r, 100)); // read-ahead is not waited for
    const ahead = chunkIndexAt(chunks, b + (2 << 20));
    assert.equal(cache.inMemory(chunks[ahead]!.digest), true, 'the second reader\'s run read ahead 2 MiB past it');
  } finally {
    await cleanup();
  }
});

test('a walk through a directory\'s small files moves the next ones from the disk cache to memory, and never fetches', async () => {
  const names = Array.from({ length: 12 }, (_, i) => `d/f${String(i).padStart(2, '0')}`);
  const layers = [buildLayer([{ path: 'd' }, ...names.map((path, i) => ({ path, content: noise(3000, i + 1) }))])];
  const chunkOf = (name: string) => layers[0]!.toc.entries.find((e) => e.path === name)!.chunks[0]!;
  const first = await setup(layers);
  try {
    for (const name of names.slice(0, 10)) await first.readAll(`/${name}`);
    await first.store.close(); // disk writes follow the served reads
    // f10 and f11 came with a window of neighbours; were they decoded, they go off the disk again.
    for (const name of ['d/f10', 'd/f11']) {
      const hex = chunkOf(name).digest.slice('sha256:'.length);
      await rm(join(first.dir, 'chunks', hex.slice(0, 2), hex), { force: true });
    }
    const second = await setup(layers, { cacheDir: first.dir });
    const { fs, cache, layerMetrics } = second;
    await fs.read('/d/f05', 0, 10);
    await fs.read('/d/f02', 0, 10); // not the next one: no walk
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(cache.inMemory(chunkOf('d/f03').digest), false, 'no preload without a walk');
    await fs.read('/d/f03', 0, 10); // follows f02: a walk
    await new Promise((r) => setTimeout(r, 50));
    for (const name of names.slice(4, 10)) assert.equal(cache.inMemory(chunkOf(name).digest), true, `${name} preloaded`);
    assert.equal(layerMetrics[0]!.fetchedBytes, 0, 'f10 and f11 are not on disk and are not fetched');
    assert.equal(cache.inMemory(chunkOf('d/f10').digest), false);
  } finally {
    await first.cleanup();
  }
});

test('a tampered chunk gives EIO for reads that need it, logged once; other files and chunks still read', async () => {
  const layers = image();
  const tool = layers[0]!.toc.entries.find((e) => e.path === 'bin/tool')!;
  const victim = tool.chunks[3]!;
  layers[0]!.bytes[victim.start + 20] ^= 0xff;
  const { fs, layerMetrics, logs, readAll, cleanup } = await setup(layers, { memoryBytes: 0 });
  try {
    await assert.rejects(fs.read('/bin/tool', victim.fileOffset + 5, 10), (e: FsError) => e.code === 'EIO');
    await assert.rejects(fs.read('/bin/tool', victim.fileOffset, 10), (e: FsError) => e.code === 'EIO');
    assert.deepEqual(await fs.read('/bin/tool', 0, 100), big.subarray(0, 100));
    assert.equal((await readAll('/etc/hosts')).toString(), '127.0.0.1 upper\n');
    assert.ok(layerMetrics[0]!.verificationFailures >= 1);
    assert.equal(logs.filter((l) => l.includes('bin/tool')).length, 1);
    assert.match(logs[0]!, /layer0/);
  } finally {
    await cleanup();
  }
});

test('disk cache entries: intact is a hit; missing, short, long or altered is a miss, and a damaged file is removed', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'starling-fs-'));
  try {
    const { sha256 } = await import('../../src/oci/digest.js');
    const cache = await ChunkCache.open({ dir, diskBytes: 10 << 20, memoryBytes: 0 });
    const chunks = [1, 2, 3, 4].map((seed) => noise(5_000, seed));
    const digests = chunks.map((c) => sha256(c));
    for (const [i, c] of chunks.entries()) await cache.putDisk(digests[i]!, c);
    const file = (i: number) => join(dir, 'chunks', digests[i]!.slice(7, 9), digests[i]!.slice(7));
    await writeFile(file(1), chunks[1]!.subarray(0, 4_999)); // short
    await writeFile(file(2), Buffer.concat([chunks[2]!, Buffer.from('x')])); // long
    const altered = Buffer.from(chunks[3]!);
    altered[100]! ^= 1;
    await writeFile(file(3), altered); // same size, wrong bytes
    assert.deepEqual(await cache.getDisk(digests[0]!, 5_000), chunks[0]);
    for (const i of [1, 2, 3]) assert.equal(await cache.getDisk(digests[i]!, 5_000), undefined, `entry ${i}`);
    assert.equal(await cache.getDisk(sha256('never stored'), 12), undefined);
    assert.deepEqual([cache.counters.diskHits, cache.counters.diskMisses], [1, 4]);
    for (const i of [1, 2, 3]) {
      assert.equal(cache.onDisk(digests[i]!), false);
      await assert.rejects(readFile(file(i)), { code: 'ENOENT' }, `damaged entry ${i} is removed`);
    }
    assert.equal(cache.diskBytesUsed, 5_000);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('disk cache stays within its size bound', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'starling-fs-'));
  try {
    const cache = await ChunkCache.open({ dir, diskBytes: 300_000, memoryBytes: 0 });
    for (let i = 0; i < 10; i++) {
      const data = noise(50_000, i + 1);
      const { sha256 } = await import('../../src/oci/digest.js');
      await cache.putDisk(sha256(data), data);
    }
    assert.ok(cache.diskBytesUsed <= 300_000);
    let onDisk = 0;
    for (const s of await readdir(join(dir, 'chunks'))) onDisk += (await readdir(join(dir, 'chunks', s))).length;
    assert.equal(onDisk * 50_000, cache.diskBytesUsed);
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
