import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { sha256, sha256Async } from '../../src/oci/digest.js';

const reference = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

test('sha256Async agrees with sha256 below and above the size it moves hashing off the main thread at', async () => {
  for (const size of [0, 1, 4096, (256 << 10) - 1, 256 << 10, (4 << 20) + 3]) {
    const data = randomBytes(size);
    assert.equal(await sha256Async(data), reference(data), `size ${size}`);
    assert.equal(sha256(data), reference(data), `size ${size}`);
  }
});

test('sha256Async hashes only the view it is given, not the whole underlying buffer', async () => {
  const big = randomBytes(2 << 20);
  const view = big.subarray(1000, 1000 + (1 << 20));
  assert.equal(await sha256Async(view), reference(view));
});
