// Prefetch and the background fill: order, the quiet period, pacing, and on-demand reads first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Prefetcher, type PrefetchLayer } from '../../src/fs/prefetcher.js';
import { LayerMetrics } from '../../src/fs/metrics.js';
import { big, image, setup } from './helpers/fixture.js';
import { buildLayer, noise, recording, type SpecEntry } from './helpers/layer.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function prefetchLayers(metrics: LayerMetrics[], priority: PrefetchLayer['priority'][] = []): PrefetchLayer[] {
  return metrics.map((m, i) => ({ priority: priority[i] ?? [], background: true, prefetch: m.prefetch, backgroundProgress: m.background }));
}

test('prefetch fetches the prioritised chunks first, the background fill the rest; later reads and a remount fetch nothing', { timeout: 30_000 }, async () => {
  const layers = image();
  const env = await setup(layers, { scheduler: { quietMs: 0 } });
  let again: Awaited<ReturnType<typeof setup>> | undefined;
  try {
    const toolChunks = layers[0]!.toc.entries.find((e) => e.path === 'bin/tool')!.chunks;
    const p = new Prefetcher(prefetchLayers(env.layerMetrics, [toolChunks.slice(0, 2)]), env.store, { prefetch: true, background: false });
    p.start();
    await p.done;
    assert.equal(env.layerMetrics[0]!.prefetch.state, 'done');
    assert.equal(env.layerMetrics[0]!.prefetch.done, toolChunks[1]!.end - toolChunks[0]!.start);
    assert.equal(env.layerMetrics[0]!.fetchedBytes, toolChunks[1]!.end - toolChunks[0]!.start, 'only the prioritised chunks');
    const bg = new Prefetcher(prefetchLayers(env.layerMetrics), env.store, { prefetch: false, background: true });
    bg.start();
    await bg.done;
    for (const m of env.layerMetrics) {
      assert.equal(m.background.state, 'done');
      assert.equal(m.background.done, m.background.total);
    }
    const before = env.layerMetrics.map((m) => m.fetchedBytes);
    assert.deepEqual(await env.readAll('/bin/tool'), big);
    assert.equal((await env.readAll('/etc/motd')).length, 100_000);
    assert.deepEqual(env.layerMetrics.map((m) => m.fetchedBytes), before, 'everything came from the caches');
    await env.store.close();
    again = await setup(layers, { cacheDir: env.dir });
    assert.deepEqual(await again.readAll('/bin/tool'), big);
    assert.equal((await again.readAll('/etc/motd')).length, 100_000);
    assert.deepEqual(again.layerMetrics.map((m) => m.fetchedBytes), [0, 0], 'a remount over the same cache fetches nothing');
  } finally {
    await again?.store.close();
    await env.cleanup();
  }
});

test('the fill waits for a quiet period without on-demand requests, at mount and after every miss', { timeout: 30_000 }, async () => {
  const layer = buildLayer([{ path: 'd' }, ...Array.from({ length: 20 }, (_, i): SpecEntry => ({ path: `d/f${i}`, content: noise(40_000, i + 1) }))]);
  const rec = recording(layer.blob);
  const quietMs = 400;
  const env = await setup([{ ...layer, blob: rec.blob }], { scheduler: { quietMs } });
  try {
    const started = performance.now();
    const fill = new Prefetcher(prefetchLayers(env.layerMetrics), env.store, { prefetch: false, background: true });
    fill.start();
    await sleep(quietMs / 2);
    assert.equal(rec.seen.length, 0, 'nothing but metadata right after mount');
    await env.readAll('/d/f10');
    const readEnded = rec.seen[0]!.endedAt!;
    await fill.done;
    const background = rec.seen.slice(1);
    assert.ok(background.length > 0);
    assert.ok(background[0]!.startedAt - readEnded >= quietMs - 5, `the fill started ${background[0]!.startedAt - readEnded} ms after the miss`);
    assert.ok(background[0]!.startedAt - started >= quietMs);
    for (const r of background) assert.ok(r.offset >= rec.seen[0]!.offset + rec.seen[0]!.length || r.offset + r.length <= rec.seen[0]!.offset, 'the fill skips what the read brought');
    // The fill went on from where the read missed: the first background request follows its window.
    assert.equal(background[0]!.offset, rec.seen[0]!.offset + rec.seen[0]!.length);
    for (let i = 0; i < 20; i++) assert.deepEqual(await env.readAll(`/d/f${i}`), noise(40_000, i + 1));
    assert.equal(rec.seen.length, 1 + background.length, 'after the fill every read is a hit');
  } finally {
    await env.cleanup();
  }
});

test('while the fill runs, an on-demand request goes out before any further background request; background requests keep to the paced size', { timeout: 30_000 }, async () => {
  // 256 KiB chunks of noise: each is larger than the paced size, so the fill must split them.
  const layer = buildLayer([{ path: 'a', content: noise(2 << 20, 5) }, { path: 'z', content: noise(300_000, 6) }], 256 << 10);
  const rec = recording(layer.blob, 15);
  const rate = 2_000_000; // bytes/s: paced size 100 kB
  const env = await setup([{ ...layer, blob: rec.blob }], { scheduler: { quietMs: 0, backgroundRate: rate } });
  try {
    const slice = env.scheduler.backgroundSlice;
    assert.equal(slice, (rate * 50) / 1000);
    const fill = new Prefetcher(prefetchLayers(env.layerMetrics), env.store, { prefetch: false, background: true });
    fill.start();
    while (rec.seen.length < 3) await sleep(5);
    const issued = rec.seen.length;
    const read = env.readAll('/z');
    await sleep(1);
    const zStart = layer.toc.entries.find((e) => e.path === 'z')!.chunks[0]!.start;
    const next = rec.seen[issued];
    assert.ok(next, 'the read went out at once');
    assert.ok(next.offset <= zStart && zStart < next.offset + next.length, `the next request [${next.offset}, +${next.length}) is the read of z at ${zStart}`);
    assert.deepEqual(await read, noise(300_000, 6));
    await fill.done;
    const zEnd = layer.toc.entries.find((e) => e.path === 'z')!.chunks.at(-1)!.end;
    const background = rec.seen.filter((r) => r.offset + r.length <= zStart || r.offset >= zEnd);
    assert.ok(background.length > 10);
    for (const r of background) assert.ok(r.length <= slice, `a background request of ${r.length} bytes`);
    for (let i = 1; i < background.length; i++) assert.ok(background[i]!.startedAt >= background[i - 1]!.endedAt!, 'one background request at a time');
    const before = rec.seen.length;
    assert.deepEqual(await env.readAll('/a'), noise(2 << 20, 5));
    assert.equal(rec.seen.length, before, 'split chunks were joined and cached whole');
  } finally {
    await env.cleanup();
  }
});

test('a read that needs a chunk the fill has started on does not wait for the fill\'s next turn', { timeout: 30_000 }, async () => {
  // One 1 MiB chunk of noise: the fill fetches it in 100 kB slices, one per turn.
  const layer = buildLayer([{ path: 'a', content: noise(1 << 20, 7) }, { path: 'z', content: noise(10_000, 8) }], 1 << 20);
  const rec = recording(layer.blob, 10);
  const quietMs = 300;
  const env = await setup([{ ...layer, blob: rec.blob }], { scheduler: { quietMs, backgroundRate: 2_000_000 } });
  try {
    const fill = new Prefetcher(prefetchLayers(env.layerMetrics), env.store, { prefetch: false, background: true });
    fill.start();
    while (rec.seen.length < 1) await sleep(5);
    // An on-demand miss elsewhere: the fill's next slice now waits for another quiet period...
    assert.deepEqual(await env.readAll('/z'), noise(10_000, 8));
    const sent = rec.seen.length;
    // ...but a reader of `a` promotes the rest of it.
    const timeout = sleep(quietMs / 2).then(() => 'timeout');
    const got = await Promise.race([env.fs.read('/a', 0, 4096), timeout]);
    assert.notEqual(got, 'timeout', 'the read waited for the quiet period');
    assert.deepEqual(got, noise(1 << 20, 7).subarray(0, 4096));
    assert.equal(rec.seen.length, sent + 1, 'one request for the rest of the chunk');
    const aChunk = layer.toc.entries.find((e) => e.path === 'a')!.chunks[0]!;
    assert.equal(rec.seen[sent]!.offset + rec.seen[sent]!.length, aChunk.end);
    fill.stop();
  } finally {
    await env.cleanup();
  }
});

test('prefetch keeps the order it is given (a profile\'s first-read order) from one batch to the next', { timeout: 30_000 }, async () => {
  // c (last in the blob) is wanted before a, and is larger than one 8 MiB batch: its first batch
  // must go before anything of a (within a batch, requests go in blob order).
  const layer = buildLayer([{ path: 'a', content: noise(9 << 20, 1) }, { path: 'b', content: noise(1 << 20, 2) }, { path: 'c', content: noise(9 << 20, 3) }], 1 << 20);
  const rec = recording(layer.blob);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  try {
    const chunks = (p: string) => layer.toc.entries.find((e) => e.path === p)!.chunks;
    const p = new Prefetcher(prefetchLayers(env.layerMetrics, [[...chunks('c'), ...chunks('a')]]), env.store, { prefetch: true, background: false });
    p.start();
    await p.done;
    const cStart = chunks('c')[0]!.start;
    assert.ok(rec.seen[0]!.offset >= cStart, `the first request (at ${rec.seen[0]!.offset}) is for c (from ${cStart})`);
    assert.ok(rec.seen.at(-1)!.offset < chunks('b')[0]!.start, 'a comes last');
    assert.ok(rec.seen.every((r) => r.offset + r.length <= chunks('b')[0]!.start || r.offset >= cStart), 'b is not fetched');
  } finally {
    await env.cleanup();
  }
});
