// zstd frame walking: an upper bound of the inflated size from headers alone, skippable frames,
// malformed framing, and decompressExact refusing what could inflate beyond the declared size.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compress } from '@mongodb-js/zstd';
import { decompressExact, inflateBound, MAX_BLOCK, skippableFrame, ZstdFrameError } from '../../../src/format/zstdchunked/frames.js';

describe('zstd frames', () => {
  const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));

  it('bounds the inflated size of real frames from above, within a block', async () => {
    const c = await compress(data, 3);
    const b = inflateBound(c);
    assert.equal(b.frames, 1);
    assert.ok(b.max >= data.length && b.max < data.length + MAX_BLOCK, String(b.max));
    const two = inflateBound(Buffer.concat([c, skippableFrame(Buffer.from('meta')), c]));
    assert.equal(two.frames, 2);
    assert.equal(two.max, 2 * b.max);
  });

  it('is exact for a frame that declares its content size', async () => {
    const empty = await compress(Buffer.alloc(0), 3);
    assert.deepEqual(inflateBound(empty), { max: 0, exact: true, frames: 1, parts: [{ start: 0, end: empty.length, max: 0 }] });
  });

  it('refuses truncated and foreign bytes', async () => {
    const c = await compress(data, 3);
    assert.throws(() => inflateBound(c.subarray(0, c.length - 5)), ZstdFrameError);
    assert.throws(() => inflateBound(Buffer.from('not zstd at all')), /not a zstd frame at byte 0/);
    assert.throws(() => inflateBound(skippableFrame(Buffer.alloc(10)).subarray(0, 12)), /truncated/);
  });

  it('decompresses exactly the declared size and refuses anything else', async () => {
    const c = await compress(data, 3);
    assert.deepEqual(await decompressExact(c, data.length, (m) => new Error(m)), data);
    await assert.rejects(decompressExact(c, data.length - 1, (m) => new Error(`x: ${m}`)), /x: decompressed to 300000 bytes, but 299999 are declared/);
    await assert.rejects(decompressExact(c, 1000, (m) => new Error(m)), /may inflate to \d+ bytes, but 1000 are declared/);
    await assert.rejects(decompressExact(Buffer.from('junk'), 4, (m) => new Error(m)), /not a zstd frame/);
  });

  it('decompresses many frames without content sizes (a tar-split) however their last blocks round up', async () => {
    // Each frame's bound rounds its last block up to a whole block; over 12 frames that is far more
    // than two blocks past the declared size, which must not make a real tar-split unreadable.
    const text = Buffer.from(Array.from({ length: 12 * 200_000 }, (_, i) => 'abcdefghij'.charCodeAt((i * 7919) % 10) ^ (i % 3)));
    const frames = await Promise.all(Array.from({ length: 12 }, (_, i) => compress(text.subarray(i * 200_000, (i + 1) * 200_000), 3)));
    const all = Buffer.concat(frames);
    assert.ok(inflateBound(all).max > text.length + 2 * MAX_BLOCK, 'the summed bound overshoots by more than two blocks');
    assert.deepEqual(await decompressExact(all, text.length, (m) => new Error(m)), text);
    // Declared half the size: refused at the frame that would pass it, before inflating the rest.
    await assert.rejects(decompressExact(all, text.length / 2, (m) => new Error(m)), /may inflate to \d+ bytes, but 1200000 are declared/);
  });
});
