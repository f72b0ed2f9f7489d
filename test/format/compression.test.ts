import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { text } from 'node:stream/consumers';
import { decompressedTar, detectCompression } from '../../src/format/compression.js';

const payload = Buffer.from('x'.repeat(100_000) + 'end');

test('detects and decompresses plain, gzip and zstd input by magic', async () => {
  const zstd = execFileSync('zstd', ['-c', '-q'], { input: payload });
  for (const [name, data] of [['none', payload], ['gzip', gzipSync(payload)], ['zstd', zstd]] as const) {
    const { compression, tar } = await decompressedTar(Readable.from([data.subarray(0, 3), data.subarray(3)]));
    assert.equal(compression, name);
    assert.equal(await text(tar), payload.toString());
  }
});

test('corrupt zstd input fails with a clear error', async () => {
  const bad = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(64, 7)]);
  const { tar } = await decompressedTar(Readable.from([bad]));
  await assert.rejects(text(tar), /zstd decompression failed/);
});

test('detectCompression on short input', () => {
  assert.equal(detectCompression(Buffer.from([0x1f])), 'none');
});
