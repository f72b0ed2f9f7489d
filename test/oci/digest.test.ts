import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { sha256 } from '../../src/oci/digest.js';

const reference = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

test('sha256 of buffers of any size, and of strings', () => {
  for (const size of [0, 1, 4096, (4 << 20) + 3]) {
    const data = randomBytes(size);
    assert.equal(sha256(data), reference(data), `size ${size}`);
  }
  assert.equal(sha256('abc'), 'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('sha256 hashes only the view it is given (a chunk sliced from an inflated window), not the whole underlying buffer', () => {
  const big = randomBytes(2 << 20);
  const view = big.subarray(1000, 1000 + (1 << 20));
  assert.equal(sha256(view), reference(view));
  assert.notEqual(sha256(view), reference(big));
});
