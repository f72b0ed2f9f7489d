// The addon's sha256 (native/sha256.cc) on its own, and chunkDigest, which uses it for large chunks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chunkDigest, nativeAddon } from '../../src/format/native.js';
import { sha256 } from '../../src/oci/digest.js';
import { variedData } from './gzipindex/helpers.js';

const T = { timeout: 60_000 };

test("sha256 on the pool gives node:crypto's digest for 0 B to 8 MiB, and the JS thread turns while it runs; chunkDigest agrees on both sides of its pool threshold", T, async () => {
  for (const size of [0, 1, 55, 64, 65_535, 65_536, 1 << 20, 8 << 20]) {
    const data = variedData(size, size % 97);
    assert.equal(`sha256:${(await nativeAddon().sha256(data)).toString('hex')}`, sha256(data), `${size} bytes`);
    assert.equal(await chunkDigest(data), sha256(data), `chunkDigest of ${size} bytes`);
  }
  const big = variedData(8 << 20, 11);
  let turned = false;
  setImmediate(() => (turned = true));
  await nativeAddon().sha256(big);
  assert.equal(turned, true, 'hashing 8 MiB did not let the event loop turn');
  assert.throws(() => nativeAddon().sha256('text' as unknown as Buffer), /data must be a Buffer/);
});
