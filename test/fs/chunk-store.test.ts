// The chunk store: neighbourhood windows on misses, and closing after reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Priority } from '../../src/fs/fetch-scheduler.js';
import { WINDOW } from '../../src/fs/neighbourhood.js';
import { setup } from './helpers/fixture.js';
import { buildLayer, noise, recording, type SpecEntry } from './helpers/layer.js';

/** A directory of `n` small files (~3 KB each, incompressible), a 1 MiB file, then another directory far away. */
function smallFiles(n = 40): SpecEntry[] {
  const specs: SpecEntry[] = [{ path: 'lib' }];
  for (let i = 0; i < n; i++) specs.push({ path: `lib/f${String(i).padStart(n > 100 ? 3 : 2, '0')}`, content: noise(3000, i + 1) });
  specs.push({ path: 'big', content: noise(1 << 20, 99) });
  specs.push({ path: 'far' });
  for (let i = 0; i < 10; i++) specs.push({ path: `far/g${i}`, content: noise(3000, 200 + i) });
  return specs;
}

test('a miss in a directory of small files brings its neighbours in the same request; reading them next fetches nothing', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles(100));
  const rec = recording(layer.blob);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  try {
    assert.deepEqual(await env.readAll('/lib/f00'), noise(3000, 1));
    assert.equal(rec.seen.length, 1);
    assert.ok(rec.seen[0]!.length > 60 * 3000, `one request of ${rec.seen[0]!.length} bytes holds the following files too`);
    assert.equal(env.store.windowOf(0), WINDOW.initial);
    for (let i = 1; i < 60; i++) assert.deepEqual(await env.readAll(`/lib/f${String(i).padStart(2, '0')}`), noise(3000, i + 1));
    const first = rec.seen[0]!;
    // Half the window read, and past its middle: the window after it went out, and nothing else.
    assert.deepEqual(rec.seen.slice(1).map((r) => r.offset), [first.offset + first.length], 'the neighbours came from the window');
    assert.ok(env.store.windowOf(0) > WINDOW.initial, 'a window whose neighbours were read grows');
  } finally {
    await env.cleanup();
  }
});

test('a miss whose neighbours are not read afterwards does not grow the window; a far miss after it shrinks it', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles());
  const env = await setup([layer]);
  try {
    await env.readAll('/lib/f00');
    assert.equal(env.store.windowOf(0), WINDOW.initial);
    await env.readAll('/far/g9'); // 1 MiB further on: not next to the first window
    assert.ok(env.store.windowOf(0) < WINDOW.initial, `window ${env.store.windowOf(0)}`);
    assert.deepEqual(await env.readAll('/far/g9'), noise(3000, 209));
  } finally {
    await env.cleanup();
  }
});

test('a window stops at chunks that are already cached, and never decodes a chunk twice', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles());
  const rec = recording(layer.blob);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  try {
    await env.readAll('/lib/f30'); // brings f30 onwards, and a few files before it
    const first = rec.seen[0]!;
    await env.readAll('/lib/f00'); // before the first window: its window must end where the first began
    assert.equal(rec.seen.length, 2);
    const second = rec.seen[1]!;
    assert.ok(second.offset + second.length <= first.offset, `second [${second.offset}, ${second.offset + second.length}) overlaps first at ${first.offset}`);
    for (let i = 0; i < 40; i++) assert.deepEqual(await env.readAll(`/lib/f${String(i).padStart(2, '0')}`), noise(3000, i + 1));
  } finally {
    await env.cleanup();
  }
});

test('close waits for the disk writes of reads that have resolved; none happens after it', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles());
  const env = await setup([layer]);
  const putDisk = env.cache.putDisk.bind(env.cache);
  let finishedAfterClose = 0;
  let closed = false;
  env.cache.putDisk = async (digest, data) => {
    await new Promise((r) => setTimeout(r, 50)); // a slow disk
    await putDisk(digest, data);
    if (closed) finishedAfterClose++;
  };
  try {
    assert.deepEqual(await env.readAll('/lib/f00'), noise(3000, 1)); // resolves before its disk write
    await env.store.close();
    closed = true;
    const files = async () => (await readdir(join(env.dir, 'chunks'), { recursive: true })).length;
    const after = await files();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(finishedAfterClose, 0);
    assert.equal(await files(), after, 'nothing was written after close');
    assert.ok(after >= 1, 'the chunk read was written before close returned');
  } finally {
    await env.cleanup();
  }
});

test('a miss inside a window still arriving waits for its bytes instead of fetching them again', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles());
  const rec = recording(layer.blob, 200);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  try {
    const first = env.readAll('/lib/f00');
    await new Promise((r) => setTimeout(r, 50)); // the window's request is out, its bytes not yet in
    const second = env.readAll('/lib/f01');
    assert.deepEqual(await first, noise(3000, 1));
    assert.deepEqual(await second, noise(3000, 2));
    assert.equal(rec.seen.length, 1, 'f01 came with f00\'s window');
  } finally {
    await env.cleanup();
  }
});

test('a walk that has used most of a window has the next one on its way before it gets there', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles(300));
  const rec = recording(layer.blob);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  try {
    for (let i = 0; i < 300; i++) assert.deepEqual(await env.readAll(`/lib/f${String(i).padStart(3, '0')}`), noise(3000, i + 1));
    const ends = rec.seen.map((r) => r.offset + r.length);
    // Each request begins where the one before ended: the walk never missed, every window was read ahead.
    for (let i = 1; i < rec.seen.length; i++) assert.equal(rec.seen[i]!.offset, ends[i - 1], `request ${i}`);
    assert.ok(rec.seen.length >= 3);
    const covered = ends.at(-1)!;
    const lastSmall = layer.toc.entries.find((e) => e.path === 'lib/f299')!.chunks[0]!;
    assert.ok(covered >= lastSmall.end, 'every small file came in those requests');
  } finally {
    await env.cleanup();
  }
});

test('a neighbour whose bytes in the window do not verify is fetched again on its own; the bad window is not used again', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles());
  const f05 = layer.toc.entries.find((e) => e.path === 'lib/f05')!.chunks[0]!;
  let damaged = 0;
  const flaky = {
    ...layer.blob,
    size: layer.blob.size,
    description: 'flaky',
    read: async (offset: number, length: number) => {
      const data = Buffer.from(await layer.blob.read(offset, length));
      // The first response flips a byte of f05 (a transient fault on the way).
      if (damaged++ === 0 && offset <= f05.start && f05.end <= offset + length) data[f05.start - offset + 20]! ^= 0xff;
      return data;
    },
    close: async () => {},
  };
  const rec = recording(flaky);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  try {
    assert.deepEqual(await env.readAll('/lib/f00'), noise(3000, 1));
    assert.deepEqual(await env.readAll('/lib/f05'), noise(3000, 6), 'f05 right after all');
    assert.equal(env.layerMetrics[0]!.verificationFailures, 1);
    assert.equal(rec.seen.length, 2, 'f05 was fetched again, once');
    // f05's own request was a window of its own: f06 comes from there, not from the dropped one.
    const f06 = layer.toc.entries.find((e) => e.path === 'lib/f06')!.chunks[0]!;
    const second = rec.seen[1]!;
    assert.ok(second.offset <= f06.start && f06.end <= second.offset + second.length);
    assert.deepEqual(await env.readAll('/lib/f06'), noise(3000, 7));
    assert.equal(rec.seen.length, 2);
  } finally {
    await env.cleanup();
  }
});

test('a miss waiting inside a window whose request fails fetches its own bytes; the asked chunk gets the error', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles());
  let calls = 0;
  const failing = {
    size: layer.blob.size,
    description: 'failing once',
    read: async (offset: number, length: number) => {
      await new Promise((r) => setTimeout(r, 100));
      if (calls++ === 0) throw new Error('connection reset');
      return layer.blob.read(offset, length);
    },
    close: async () => {},
  };
  const rec = recording(failing);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  try {
    const first = env.readAll('/lib/f00');
    await new Promise((r) => setTimeout(r, 30)); // f01 waits on f00's window, which then fails
    const second = env.readAll('/lib/f01');
    await assert.rejects(first, (e: Error & { code?: string }) => e.code === 'EIO');
    assert.deepEqual(await second, noise(3000, 2));
    assert.equal(rec.seen.length, 2, 'the window, then f01 on its own');
    const f01 = layer.toc.entries.find((e) => e.path === 'lib/f01')!.chunks[0]!;
    assert.ok(rec.seen[1]!.offset <= f01.start && f01.end <= rec.seen[1]!.offset + rec.seen[1]!.length, 'the second request holds f01');
  } finally {
    await env.cleanup();
  }
});

test('the chunks a coalesced prefetch range fetches between those asked for are kept: reading one next fetches nothing', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles());
  const rec = recording(layer.blob);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  const chunk = (name: string) => layer.toc.entries.find((e) => e.path === `lib/${name}`)!.chunks[0]!;
  try {
    await env.store.get(0, [chunk('f00'), chunk('f10')], Priority.Speculative);
    assert.equal(rec.seen.length, 1, 'f00 and f10 in one request, f01-f09 between them');
    for (const i of [5, 1, 9]) assert.deepEqual(await env.readAll(`/lib/f0${i}`), noise(3000, i + 1));
    assert.equal(rec.seen.length, 1, 'the files between came from that request');
  } finally {
    await env.cleanup();
  }
});

test('a read of a chunk between those a held-back guess asked for moves that guess ahead', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles());
  const rec = recording(layer.blob, 150);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  const chunk = (path: string) => layer.toc.entries.find((e) => e.path === path)!.chunks[0]!;
  try {
    const known = env.store.get(0, [chunk('big')], Priority.Prefetch);
    // Guesses wait while known files are being prefetched.
    const guess = env.store.get(0, [chunk('lib/f00'), chunk('lib/f10')], Priority.Speculative);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(rec.seen.length, 1, 'the guess is held back');
    assert.deepEqual(await env.readAll('/lib/f05'), noise(3000, 6));
    assert.equal(rec.seen.length, 2, 'f05 came with the guess, not on its own');
    assert.ok(rec.seen[1]!.startedAt < rec.seen[0]!.endedAt!, 'the guess went out before the prefetch ended');
    await Promise.all([known, guess]);
  } finally {
    await env.cleanup();
  }
});

test('guessed files far apart go as one multi-range request, each served as its range comes; on-demand misses stay single', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles());
  const rec = recording(layer.blob, 0, true);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  const chunk = (path: string) => layer.toc.entries.find((e) => e.path === path)!.chunks[0]!;
  try {
    // f00 and g9 lie over 1 MiB apart (more than coalescing bridges): two ranges.
    const got = await env.store.get(0, [chunk('far/g9'), chunk('lib/f00')], Priority.Speculative);
    assert.deepEqual(got, [noise(3000, 209), noise(3000, 1)]);
    assert.equal(rec.seen.length, 1, 'one request');
    assert.deepEqual(rec.seen[0]!.ranges!.map((r) => r.offset), [chunk('lib/f00').start, chunk('far/g9').start]);
    assert.deepEqual(env.scheduler.sent, [0, 0, 0, 1, 0]);
    // Two on-demand misses far apart: one request each (each a neighbourhood window of its own).
    await Promise.all([env.readAll('/lib/f20'), env.readAll('/far/g0')]);
    assert.equal(rec.seen.length, 3);
    assert.ok(rec.seen.slice(1).every((r) => r.ranges === undefined));
  } finally {
    await env.cleanup();
  }
});

test('read-ahead and guesses of a layer started in one turn share one request at read-ahead priority; a prefetch started beside them goes apart', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles());
  const rec = recording(layer.blob, 0, true);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  const chunk = (path: string) => layer.toc.entries.find((e) => e.path === path)!.chunks[0]!;
  try {
    // Three loads in one turn, as a mount's loader, program and first modules: f00 and big close enough to coalesce, g9 far from both.
    await Promise.all([
      env.store.get(0, [chunk('far/g9')], Priority.ReadAhead),
      env.store.get(0, [chunk('lib/f00')], Priority.Speculative),
      env.store.get(0, [chunk('big')], Priority.ReadAhead),
    ]);
    assert.equal(rec.seen.length, 1, 'one request');
    assert.deepEqual(rec.seen[0]!.ranges!.map((r) => r.offset), [chunk('lib/f00').start, chunk('far/g9').start]);
    assert.deepEqual(env.scheduler.sent, [0, 1, 0, 0, 0], 'sent at read-ahead priority');
    // Loads in different turns are not held for each other.
    await env.store.get(0, [chunk('far/g0')], Priority.ReadAhead);
    await env.store.get(0, [chunk('far/g4')], Priority.ReadAhead);
    assert.equal(rec.seen.length, 3);
    // A prefetch and a guess in one turn: two requests (guesses wait while known files are fetched).
    await Promise.all([env.store.get(0, [chunk('far/g2')], Priority.Prefetch), env.store.get(0, [chunk('far/g6')], Priority.Speculative)]);
    assert.equal(rec.seen.length, 5);
    assert.deepEqual(env.scheduler.sent, [0, 3, 1, 1, 0]);
    for (const [i, p] of ['lib/f00', 'far/g9', 'far/g2', 'far/g6'].entries()) assert.deepEqual(await env.readAll(`/${p}`), noise(3000, [1, 209, 202, 206][i]!));
    assert.equal(rec.seen.length, 5, 'reading them fetches nothing');
  } finally {
    await env.cleanup();
  }
});

test('a multi-range request that breaks off after its first range: that range is served, the rest get the error, and are fetched again when read', { timeout: 30_000 }, async () => {
  const layer = buildLayer(smallFiles());
  const rec = recording(layer.blob, 0, true);
  const inner = rec.blob.readRanges!;
  rec.blob.readRanges = async (ranges, onRange) => {
    const first = await layer.blob.read(ranges[0]!.offset, ranges[0]!.length);
    onRange?.(0, first);
    await inner([ranges[0]!]); // recorded as the request it was
    throw new Error('connection reset after the first part');
  };
  const env = await setup([{ ...layer, blob: rec.blob }]);
  const chunk = (path: string) => layer.toc.entries.find((e) => e.path === path)!.chunks[0]!;
  try {
    const [f00, g9] = env.store.getEach(0, [chunk('lib/f00'), chunk('far/g9')], Priority.Speculative);
    assert.deepEqual(await f00, noise(3000, 1));
    await assert.rejects(g9!, /connection reset after the first part/);
    assert.deepEqual(await env.readAll('/far/g9'), noise(3000, 209));
    assert.deepEqual(await env.readAll('/lib/f00'), noise(3000, 1));
    assert.equal(rec.seen.length, 2, 'g9 fetched again on its own, f00 not');
  } finally {
    await env.cleanup();
  }
});
