import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { sha256 } from '../../../src/oci/digest.js';
import { convertZstd } from './helpers.js';

// @mongodb-js/zstd 1.2's JS wrapper drops the level; the writer must still compress at the level asked.
test('the compression level is honoured: a higher level gives a smaller blob of the same tar', async () => {
  const tar = execFileSync('tar', ['-C', '/usr/lib/python3.11', '-cf', '-', 'json', 'email', 'http'], { maxBuffer: 64 << 20 });
  const low = await convertZstd(tar, { level: 1 });
  const high = await convertZstd(tar, { level: 19 });
  assert.ok(high.blob.length < low.blob.length * 0.95, `level 19 blob ${high.blob.length} B vs level 1 ${low.blob.length} B`);
  for (const { blob, result } of [low, high]) {
    assert.equal(result.diffID, sha256(tar));
    assert.equal(sha256(execFileSync('zstd', ['-dcq'], { input: blob, maxBuffer: 64 << 20 })), sha256(tar));
  }
});
