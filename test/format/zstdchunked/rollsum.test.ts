// The content-defined chunker on its own: cuts independent of how the payload is fed, the 1024-byte
// hole threshold, and chunks that tile the payload. (Equality with the Go compressor's cuts is in
// interop.test.ts.)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ContentChunker, HOLE_THRESHOLD } from '../../../src/format/zstdchunked/rollsum.js';

interface Chunk {
  offset: number;
  bytes: Buffer;
  zeros: boolean;
}

function chunk(data: Buffer, pieces: number[] | number): Chunk[] {
  const out: Chunk[] = [];
  let parts: Buffer[] = [];
  let zeros = false;
  let offset = 0;
  const chunker = new ContentChunker({
    data: (b) => parts.push(Buffer.from(b)),
    zeros: (n) => {
      parts.push(Buffer.alloc(n));
      zeros = true;
    },
    cut: () => {
      const bytes = Buffer.concat(parts);
      if (bytes.length === 0) return;
      out.push({ offset, bytes, zeros });
      offset += bytes.length;
      parts = [];
      zeros = false;
    },
  });
  let pos = 0;
  for (let k = 0; pos < data.length; k++) {
    const n = typeof pieces === 'number' ? pieces : pieces[k % pieces.length]!;
    chunker.push(data.subarray(pos, pos + n));
    pos += n;
  }
  chunker.finish();
  return out;
}

const summary = (chunks: Chunk[]) => chunks.map((c) => [c.offset, c.bytes.length, c.zeros]);

describe('ContentChunker', () => {
  const binary = readFileSync('/usr/bin/ls');
  const data = Buffer.concat([binary.subarray(0, 90_000), Buffer.alloc(HOLE_THRESHOLD - 1), binary.subarray(90_000), Buffer.alloc(70_000), binary.subarray(0, 50_000), Buffer.alloc(HOLE_THRESHOLD)]);

  it('tiles the payload with chunks whose bytes are the input, zeros chunks all zero', () => {
    const chunks = chunk(data, 65536);
    assert.deepEqual(Buffer.concat(chunks.map((c) => c.bytes)), data);
    assert.ok(chunks.length > 3);
    for (const c of chunks.filter((x) => x.zeros)) assert.ok(c.bytes.every((b) => b === 0));
    // /usr/bin/ls has zero runs of its own; the 70 000 added zeros join the ones that end its tail.
    const holes = chunks.filter((c) => c.zeros).map((c) => c.bytes.length);
    assert.ok(holes.some((n) => n >= 70_000 && n < 70_000 + 1024), String(holes));
    assert.equal(holes.at(-1), HOLE_THRESHOLD);
  });

  it('cuts in the same places however the payload is split into pushes', () => {
    const whole = summary(chunk(data, data.length));
    assert.deepEqual(summary(chunk(data, 1)), whole);
    assert.deepEqual(summary(chunk(data, [7, 1000, 3, 65536, 1023, 1024, 1])), whole);
    assert.deepEqual(summary(chunk(data, 4096)), whole);
  });

  it('treats 1023 zeros as data and 1024 as a hole', () => {
    assert.deepEqual(summary(chunk(Buffer.alloc(1023), 100)), [[0, 1023, false]]);
    assert.deepEqual(summary(chunk(Buffer.alloc(1024), 100)), [[0, 1024, true]]);
    const text = Buffer.from('some text without a cut in it\n');
    assert.deepEqual(summary(chunk(Buffer.concat([text, Buffer.alloc(5000), text]), 1000)), [
      [0, text.length, false],
      [text.length, 5000, true],
      [text.length + 5000, text.length, false],
    ]);
  });

  it('yields nothing for an empty payload', () => {
    assert.deepEqual(chunk(Buffer.alloc(0), 1), []);
  });
});
