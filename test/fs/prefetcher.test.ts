import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Priority } from '../../src/fs/fetcher.js';
import { indexLayer } from '../../src/fs/layer-index.js';
import { Prefetcher } from '../../src/fs/prefetcher.js';
import { big, image, setup } from './helpers/fixture.js';

test('prefetch fetches the prioritised chunks first, background fill the rest; later reads fetch nothing', async () => {
  const layers = image();
  const env = await setup(layers);
  try {
    const toolChunks = layers[0]!.toc.entries.find((e) => e.path === 'bin/tool')!.chunks;
    const prefetchOrder: number[] = [];
    const pl = env.readers.map((reader, i) => ({
      reader,
      entries: indexLayer(layers[i]!.toc.entries, 'test').entries,
      priority: i === 0 ? toolChunks.slice(0, 2) : [],
      background: true,
      prefetch: env.layerMetrics[i]!.prefetch,
      backgroundProgress: env.layerMetrics[i]!.background,
    }));
    const p = new Prefetcher(pl, env.fetcher, { prefetch: true, background: false });
    p.start();
    await p.done;
    prefetchOrder.push(env.layerMetrics[0]!.fetchedBytes);
    assert.equal(env.layerMetrics[0]!.prefetch.state, 'done');
    assert.equal(env.layerMetrics[0]!.prefetch.done, toolChunks[1]!.end - toolChunks[0]!.start);
    assert.equal(env.layerMetrics[0]!.fetchedBytes, toolChunks[1]!.end - toolChunks[0]!.start, 'only the prioritised chunks');
    const bg = new Prefetcher(pl, env.fetcher, { prefetch: false, background: true });
    bg.start();
    await bg.done;
    assert.equal(env.layerMetrics[0]!.background.state, 'done');
    assert.equal(env.layerMetrics[0]!.background.done, env.layerMetrics[0]!.background.total);
    const before = env.layerMetrics.map((m) => m.fetchedBytes);
    assert.deepEqual(await env.readAll('/bin/tool'), big);
    assert.equal((await env.readAll('/etc/motd')).length, 100_000);
    assert.deepEqual(env.layerMetrics.map((m) => m.fetchedBytes), before, 'everything came from the caches');
  } finally {
    await env.cleanup();
  }
});

test('the fetcher runs on-demand reads before queued background work and caps background requests', async () => {
  const { Fetcher } = await import('../../src/fs/fetcher.js');
  const { BufferBlob } = await import('../../src/blob/source.js');
  const order: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const blob = new BufferBlob(Buffer.alloc(100));
  const slow = { ...blob, size: 100, description: 'slow', read: async (o: number, l: number) => (await gate, blob.read(o, l)), close: async () => {} };
  const f = new Fetcher({ maxInFlight: 2, maxBackground: 1 });
  const track = (name: string, p: Promise<Buffer>) => p.then(() => order.push(name));
  const all = [
    track('bg1', f.fetch(slow, 0, 10, Priority.Background)),
    track('bg2', f.fetch(blob, 0, 10, Priority.Background)),
    track('read', f.fetch(blob, 0, 10, Priority.Read)),
  ];
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(order, ['read'], 'the read overtook the second background request, which waits for the first');
  assert.equal(f.busyWithForeground, false);
  release();
  await Promise.all(all);
  assert.deepEqual(order, ['read', 'bg1', 'bg2']);
});
