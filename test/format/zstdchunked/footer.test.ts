// Footer and position-annotation parsing: both generations, and malformed input refused by FooterError only.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  encodeFooter,
  FooterError,
  formatManifestPosition,
  formatTarSplitPosition,
  parseFooter,
  parseFooter40,
  parseManifestPosition,
  parseTarSplitPosition,
} from '../../../src/format/zstdchunked/footer.js';

describe('zstd:chunked footers', () => {
  const manifest = { offset: 1000, length: 200, uncompressedLength: 900 };
  const tarSplit = { offset: 1208, length: 50, uncompressedLength: 400 };

  it('round-trips the 64-byte footer', () => {
    const f = encodeFooter(manifest, tarSplit);
    assert.equal(f.length, 64);
    assert.equal(f.subarray(56).toString('latin1'), 'GNUlInUx');
    assert.deepEqual(parseFooter(Buffer.concat([Buffer.alloc(100, 7), f])), { size: 64, manifest, tarSplit });
  });

  it('reads the legacy 40-byte GnUlInUx footer', () => {
    const f = Buffer.alloc(40);
    [1000, 200, 900, 1].forEach((v, i) => f.writeBigUInt64LE(BigInt(v), i * 8));
    f.write('GnUlInUx', 32, 'latin1');
    assert.deepEqual(parseFooter(Buffer.concat([Buffer.alloc(40), f])), { size: 40, manifest });
    assert.deepEqual(parseFooter40(f), { size: 40, manifest });
  });

  it('finds no footer in other bytes, and refuses a bad type or an out-of-range number', () => {
    assert.equal(parseFooter(Buffer.alloc(72)), undefined);
    assert.equal(parseFooter(Buffer.alloc(10)), undefined);
    const badType = encodeFooter(manifest, tarSplit);
    badType.writeBigUInt64LE(2n, 24);
    assert.throws(() => parseFooter(badType), (e: Error) => e instanceof FooterError && /manifest type 2/.test(e.message));
    const huge = encodeFooter(manifest, tarSplit);
    huge.writeBigUInt64LE(1n << 60n, 0);
    assert.throws(() => parseFooter(huge), /manifest offset \d+ is out of range/);
  });

  it('parses and formats position annotations', () => {
    assert.deepEqual(parseManifestPosition(formatManifestPosition(manifest), 'k'), manifest);
    assert.deepEqual(parseTarSplitPosition(formatTarSplitPosition(tarSplit), 'k'), tarSplit);
    for (const bad of ['', '1:2:3', '1:2:3:4:5', '-1:2:3:1', '1:2:3:1 ', 'a:b:c:d', '99999999999999999:1:1:1']) {
      assert.throws(() => parseManifestPosition(bad, 'key'), FooterError, bad);
    }
    assert.throws(() => parseManifestPosition('1:2:3:0', 'key'), /manifest type 0/);
    assert.throws(() => parseTarSplitPosition('1:2', 'key'), /expected 3 decimal numbers/);
  });
});
