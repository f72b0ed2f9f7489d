// EarlyReadBlob: the first read of exactly the early range takes the early read's outcome (bytes or
// error) without asking the blob again; every other read asks the blob.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EarlyReadBlob, readEarly } from '../../src/blob/early-read.js';
import type { BlobSource } from '../../src/blob/source.js';

/** A blob of `data` that logs each read and close, and fails reads of `failAt`. */
function loggedBlob(data: Buffer, failAt = -1) {
  const reads: Array<[number, number]> = [];
  let closed = 0;
  const blob: BlobSource = {
    size: data.length,
    description: 'test blob',
    async read(offset, length) {
      reads.push([offset, length]);
      if (offset === failAt) throw new Error('registry says no');
      return data.subarray(offset, offset + length);
    },
    async close() {
      closed++;
    },
  };
  return { blob, reads, closed: () => closed };
}

const data = Buffer.from('0123456789abcdefghij');

test('the first read of the early range takes its bytes; other reads, and that range again, ask the blob', { timeout: 10_000 }, async () => {
  const early = loggedBlob(data);
  const range = readEarly(early.blob, { offset: 12, length: 8 });
  assert.deepEqual(early.reads, [[12, 8]], 'asked for at once');
  await range.data;
  assert.equal(early.closed(), 1, 'the early blob is closed once its read is done');
  const inner = loggedBlob(data);
  const blob = new EarlyReadBlob(inner.blob, range);
  assert.equal((await blob.read(0, 4)).toString(), '0123');
  assert.equal((await blob.read(12, 4)).toString(), 'cdef', 'not the early range exactly: asked for');
  assert.equal((await blob.read(12, 8)).toString(), 'cdefghij');
  assert.deepEqual(inner.reads, [[0, 4], [12, 4]], 'the early range came from the early read');
  assert.equal((await blob.read(12, 8)).toString(), 'cdefghij');
  assert.deepEqual(inner.reads, [[0, 4], [12, 4], [12, 8]], 'taken once: a second read asks');
});

test('a failed early read is the read\'s error, never unhandled; without an early range every read asks', { timeout: 10_000 }, async () => {
  const early = loggedBlob(data, 12);
  const range = readEarly(early.blob, { offset: 12, length: 8 });
  await new Promise((r) => setTimeout(r, 10)); // settled before anyone asked: must not be an unhandled rejection
  const inner = loggedBlob(data);
  await assert.rejects(new EarlyReadBlob(inner.blob, range).read(12, 8), /registry says no/);
  assert.deepEqual(inner.reads, []);
  const plain = new EarlyReadBlob(inner.blob, undefined);
  assert.equal((await plain.read(12, 8)).toString(), 'cdefghij');
  assert.deepEqual(inner.reads, [[12, 8]]);
});
