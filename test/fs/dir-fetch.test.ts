// Directory fetch: a directory whose files keep missing one by one is fetched at once, once a tenth of
// its entries have missed and their misses could have carried it (DIR_BYTES_PER_MISS a miss), one
// paced request at a time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup } from './helpers/fixture.js';
import { buildLayer, noise, rangeOf, recording, type SpecEntry } from './helpers/layer.js';

/**
 * `pkg/m00`… (`n` files of `size` bytes, incompressible, one chunk each) with a 320 KiB file of another
 * directory after each, so that no neighbourhood window (256 KiB at first) brings one module along
 * with another: whatever arrives unasked came with the directory fetch. `extra` come last.
 */
function modules(n: number, size: number, extra: SpecEntry[] = []): SpecEntry[] {
  const specs: SpecEntry[] = [{ path: 'pkg' }, { path: 'other' }];
  for (let i = 0; i < n; i++) {
    specs.push({ path: `pkg/m${String(i).padStart(2, '0')}`, content: noise(size, i + 1) });
    specs.push({ path: `other/pad${i}`, content: noise(320 << 10, 500 + i) });
  }
  return [...specs, ...extra];
}

const name = (i: number) => `/pkg/m${String(i).padStart(2, '0')}`;

async function until(what: string, done: () => boolean): Promise<void> {
  for (let waited = 0; !done(); waited += 10) {
    if (waited > 10_000) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('at the second miss in a small directory its other files come one request each in blob order, large ones left out; reading them then fetches nothing', { timeout: 60_000 }, async () => {
  const layer = buildLayer(modules(10, 3000, [{ path: 'pkg/large', content: noise(1_200_000, 99) }]));
  const rec = recording(layer.blob);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  try {
    assert.deepEqual(await env.readAll(name(0)), noise(3000, 1));
    assert.equal(env.metrics.dirsAhead, 0, 'one miss is not a pattern');
    assert.deepEqual(await env.readAll(name(5)), noise(3000, 6));
    assert.equal(env.metrics.dirsAhead, 1);
    const rest = [1, 2, 3, 4, 6, 7, 8, 9];
    await until('the directory fetch', () => rec.seen.length >= 2 + rest.length);
    await new Promise((r) => setTimeout(r, 100)); // and nothing more goes out
    const m5 = rangeOf(layer, name(5)).start;
    assert.ok(rec.seen[1]!.offset <= m5 && rec.seen[1]!.offset + rec.seen[1]!.length > m5, 'the miss goes first');
    assert.deepEqual(
      rec.seen.slice(2).map((r) => r.offset),
      rest.map((i) => rangeOf(layer, name(i)).start),
      'then one request per module not read yet, in blob order',
    );
    const large = rangeOf(layer, '/pkg/large');
    assert.ok(rec.seen.every((r) => r.offset + r.length <= large.start || r.offset >= large.end), 'a file over DIR_FILE_MAX is left to its own reads');
    for (const i of rest) assert.deepEqual(await env.readAll(name(i)), noise(3000, i + 1));
    assert.equal(rec.seen.length, 2 + rest.length, 'the modules came from the directory fetch');
  } finally {
    await env.cleanup();
  }
});

/**
 * Reads `n` modules of `size` bytes in order: the first `k - 1` each a request of their own with
 * nothing fetched ahead, the k-th starts the directory fetch, which brings all the others.
 */
async function fetchedAtMiss(n: number, size: number, k: number): Promise<void> {
  const layer = buildLayer(modules(n, size));
  const rec = recording(layer.blob);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  try {
    for (let i = 0; i < k - 1; i++) assert.deepEqual(await env.readAll(name(i)), noise(size, i + 1));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(env.metrics.dirsAhead, 0);
    assert.equal(rec.seen.length, k - 1, 'a request per miss, nothing ahead');
    assert.deepEqual(await env.readAll(name(k - 1)), noise(size, k));
    assert.equal(env.metrics.dirsAhead, 1);
    await until('the directory fetch', () => rec.seen.length >= n);
    for (let i = k; i < n; i++) assert.deepEqual(await env.readAll(name(i)), noise(size, i + 1));
    assert.equal(rec.seen.length, n);
  } finally {
    await env.cleanup();
  }
}

test('a directory larger than two misses can carry is fetched only at the miss that could have carried it', { timeout: 60_000 }, async () => {
  // 40 modules of 50 kB: after k misses, 40 - k are left; k × 256 KiB covers them from k = 7 on.
  await fetchedAtMiss(40, 50_000, 7);
});

test('a directory of many small files is fetched only once a tenth of its entries have missed: a program picking a few modules out of it is left alone', { timeout: 60_000 }, async () => {
  // 40 modules of 3 kB: two misses could carry them all, but 4 of 40 entries must have missed first.
  await fetchedAtMiss(40, 3000, 4);
});

test('a directory with more than DIR_FETCH_MAX to fetch is never fetched at once, however many misses', { timeout: 60_000 }, async () => {
  const layer = buildLayer(modules(12, 900_000));
  const rec = recording(layer.blob);
  const env = await setup([{ ...layer, blob: rec.blob }]);
  try {
    for (let i = 0; i < 12; i++) {
      assert.deepEqual(await env.readAll(name(i)), noise(900_000, i + 1));
      assert.equal(env.metrics.dirsAhead, 0, `after ${name(i)}`);
    }
  } finally {
    await env.cleanup();
  }
});

test('turned off (--no-prefetch), a directory is never fetched at once: each module is a request of its own', { timeout: 60_000 }, async () => {
  const layer = buildLayer(modules(10, 3000));
  const rec = recording(layer.blob);
  const env = await setup([{ ...layer, blob: rec.blob }], { directories: false });
  try {
    for (let i = 0; i < 10; i++) assert.deepEqual(await env.readAll(name(i)), noise(3000, i + 1));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(rec.seen.length, 10);
    assert.equal(env.metrics.dirsAhead, 0);
  } finally {
    await env.cleanup();
  }
});
