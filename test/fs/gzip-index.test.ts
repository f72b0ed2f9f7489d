// A gzip layer served through its checkpoint index (format/gzipindex/layer.ts) by the chunk store and
// LazyFs: files sharing a span cost one fetch and one inflate, the span is cached once (memory, then
// disk) under its digest and sliced per file; a span that does not verify fails its files only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BufferBlob } from '../../src/blob/source.js';
import { buildGzipIndex } from '../../src/format/gzipindex/build.js';
import { gzipIndexToc } from '../../src/format/gzipindex/layer.js';
import type { GzipIndex } from '../../src/format/gzipindex/model.js';
import { spanAt, spanRange } from '../../src/format/gzipindex/span.js';
import type { ChunkRef } from '../../src/format/toc.js';
import { sha256 } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import { writeFilesTar } from '../fixtures/image.js';
import { gnuGzip } from '../format/gzipindex/helpers.js';
import { setup } from './helpers/fixture.js';
import { noise, recording, type BuiltLayer } from './helpers/layer.js';

const T = { timeout: 60_000 };
const SPAN = 64 << 10;

/** Small files of ~5 KB (about twelve per span) and a file over several spans. */
const FILES: Record<string, Buffer> = { 'big.bin': noise(300_000, 9) };
for (let i = 0; i < 40; i++) FILES[`d/f${String(i).padStart(2, '0')}`] = noise(5000 + i, i + 1);

async function gzipIndexed(): Promise<{ layer: BuiltLayer; index: GzipIndex }> {
  const dir = await mkdtemp(join(tmpdir(), 'starling-gzidx-fs-'));
  try {
    await writeFilesTar(FILES, join(dir, 'layer.tar'));
    const gz = gnuGzip(await readFile(join(dir, 'layer.tar')));
    const index = await buildGzipIndex(Readable.from([gz]), { mediaType: MediaType.ociLayerGzip, digest: sha256(gz), size: gz.length }, SPAN);
    return { layer: { toc: gzipIndexToc(index), blob: new BufferBlob(gz, 'gzip layer'), bytes: gz }, index };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Two small files in one span, and the span's number. */
function twoInOneSpan(index: GzipIndex): { paths: [string, string]; span: number } {
  const inSpan = new Map<number, string[]>();
  for (const e of index.entries) {
    if (e.type !== 'reg' || !e.path.startsWith('d/')) continue;
    const s = spanAt(index, e.offset);
    if (spanAt(index, e.offset + e.size - 1) === s) inSpan.set(s, [...(inSpan.get(s) ?? []), e.path]);
  }
  const [span, paths] = [...inSpan].find(([, p]) => p.length >= 2)!;
  return { paths: [paths[0]!, paths[1]!], span };
}

test('files of one span cost one fetch and one inflate; the span is cached once and sliced for each', T, async () => {
  const { layer, index } = await gzipIndexed();
  const { paths, span } = twoInOneSpan(index);
  const r = spanRange(index, span);
  const rec = recording(layer.blob);
  let inflates = 0;
  const toc = { ...layer.toc, decodeChunk: (c: ChunkRef, b: Buffer) => (inflates++, layer.toc.decodeChunk(c, b)) };
  const env = await setup([{ ...layer, toc, blob: rec.blob }]);
  try {
    // Both at once: the second waits for the first's span (in-flight dedupe).
    const [a, b] = await Promise.all(paths.map((p) => env.readAll(`/${p}`)));
    assert.deepEqual([a, b], paths.map((p) => FILES[p]));
    assert.equal(rec.seen.length, 1);
    assert.equal(inflates, 1);
    assert.ok(rec.seen[0]!.offset <= r.start && rec.seen[0]!.offset + rec.seen[0]!.length >= r.end);
    // Every file, big.bin across spans included, from the spans' slices.
    for (const [p, want] of Object.entries(FILES)) assert.deepEqual(await env.readAll(`/${p}`), want, p);
  } finally {
    await env.cleanup();
  }
  // A new mount on the same cache: the span comes from disk, re-hashed, and nothing is fetched.
  const dir = await mkdtemp(join(tmpdir(), 'starling-gzidx-cache-'));
  const first = await setup([layer], { cacheDir: dir });
  await first.readAll(`/${paths[0]}`);
  await first.store.close();
  const rec2 = recording(layer.blob);
  const again = await setup([{ ...layer, blob: rec2.blob }], { cacheDir: dir });
  try {
    assert.deepEqual(await again.readAll(`/${paths[1]}`), FILES[paths[1]]);
    assert.equal(rec2.seen.length, 0);
    assert.ok(again.metrics.cache.diskHits >= 1);
  } finally {
    await again.cleanup();
  }
});

test('a span that does not verify gives EIO for its files only', T, async () => {
  const { layer, index } = await gzipIndexed();
  const { paths, span } = twoInOneSpan(index);
  const r = spanRange(index, span);
  const bytes = Buffer.from(layer.bytes);
  for (let k = (r.start + r.end) >> 1, n = 0; n < 8; n++) bytes[k + n]! ^= 0x5a;
  const env = await setup([{ ...layer, blob: new BufferBlob(bytes, 'tampered gzip layer') }]);
  try {
    for (const p of paths) await assert.rejects(env.fs.read(`/${p}`, 0, 4096), (err: Error & { code?: string }) => err.code === 'EIO', p);
    const other = Object.keys(FILES).find((p) => p.startsWith('d/') && spanAt(index, index.entries.find((e) => e.path === p)!.offset) > span + 1)!;
    assert.deepEqual(await env.readAll(`/${other}`), FILES[other]);
    assert.ok(env.layerMetrics[0]!.verificationFailures >= 1);
  } finally {
    await env.cleanup();
  }
});
