// The gzip checkpoint addon on its own (native/gzip_index.cc through scan.ts and native.ts):
// checkpoints at every bit offset, spans that cross gzip members, blobs from GNU gzip, pigz and Go,
// and every span inflated from its checkpoint equal to the same bytes of `gzip -dc`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { nativeAddon } from '../../../src/format/native.js';
import type { GzipScan } from '../../../src/format/gzipindex/scan.js';
import { gnuGzip, goGzip, gunzipCli, pigz, scanBlob, variedData } from './helpers.js';

const T = { timeout: 120_000 };

/** Inflates every span of `scan` from its checkpoint and checks it against `reference`; returns the span count. */
async function checkEverySpan(blob: Buffer, scan: GzipScan, reference: Buffer): Promise<number> {
  const { checkpoints } = scan;
  for (let i = 0; i < checkpoints.length; i++) {
    const c = checkpoints[i]!;
    const next = checkpoints[i + 1];
    const end = next?.out ?? scan.uncompressedSize;
    const input = blob.subarray(c.in - (c.bits > 0 ? 1 : 0), next?.in ?? blob.length);
    const span = await nativeAddon().extractSpan(input, c.bits, c.window, end - c.out);
    assert.ok(span.equals(reference.subarray(c.out, end)), `span ${i} (${c.out}..${end}, bits ${c.bits}) differs from gzip -dc`);
    assert.equal(`sha256:${createHash('sha256').update(span).digest('hex')}`, scan.spanDigests[i]);
  }
  return checkpoints.length;
}

test('checkpoints at every block boundary cover bit offsets 0-7, and every span inflates from its checkpoint', T, async () => {
  const data = variedData(4 << 20, 1);
  const blob = gnuGzip(data, '-6');
  const reference = gunzipCli(blob);
  assert.ok(reference.equals(data));
  // span 1: a checkpoint at every deflate block boundary
  const { output, scan } = await scanBlob(blob, 1);
  assert.ok(output.equals(reference));
  assert.equal(scan.compressedSize, blob.length);
  assert.equal(scan.uncompressedSize, data.length);
  assert.equal(scan.checkpoints[0]!.out, 0);
  assert.equal(scan.checkpoints[0]!.in, 10); // right after gzip -n's 10-byte header
  assert.deepEqual([...new Set(scan.checkpoints.map((c) => c.bits))].sort(), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal(scan.spanDigests.length, scan.checkpoints.length);
  assert.ok((await checkEverySpan(blob, scan, reference)) > 50);
});

test('checkpoints are at least a span apart, windows hold the 32 KiB before them', T, async () => {
  const data = variedData(4 << 20, 2);
  const blob = gnuGzip(data, '-9');
  const { scan } = await scanBlob(blob, 512 << 10);
  for (let i = 1; i < scan.checkpoints.length; i++) {
    const c = scan.checkpoints[i]!;
    assert.ok(c.out - scan.checkpoints[i - 1]!.out >= 512 << 10);
    assert.ok(c.window.equals(data.subarray(c.out - 32768, c.out)), `window of checkpoint ${i}`);
  }
  assert.ok(scan.checkpoints.length >= 5 && scan.checkpoints.length <= 8, `${scan.checkpoints.length} checkpoints for 4 MiB at 512 KiB spans`);
  await checkEverySpan(blob, scan, data);
});

test('spans cross gzip member boundaries (several members, GNU gzip and Go)', T, async () => {
  const parts = [variedData(700_000, 3), variedData(5, 4), variedData(900_000, 5), Buffer.alloc(0), variedData(300_000, 6)];
  const blob = Buffer.concat(parts.map((p, i) => (i % 2 ? goGzip(p, '-level', '1') : gnuGzip(p, '-6'))));
  const reference = gunzipCli(blob);
  assert.ok(reference.equals(Buffer.concat(parts)));
  const { output, scan } = await scanBlob(blob, 256 << 10, 4096);
  assert.ok(output.equals(reference));
  // member boundaries in the output: 700000, 700005, 1600005 (an empty member also ends there)
  const crossing = scan.checkpoints.filter((c, i) => {
    const end = scan.checkpoints[i + 1]?.out ?? scan.uncompressedSize;
    return [700_000, 700_005, 1_600_005].some((b) => c.out < b && b < end);
  });
  assert.ok(crossing.length >= 2, `${crossing.length} spans cross a member boundary`);
  await checkEverySpan(blob, scan, reference);
});

test('blobs from pigz and Go compress/gzip index and extract like GNU gzip ones', T, async () => {
  const data = variedData(2 << 20, 7);
  for (const [name, blob] of [
    ['pigz', pigz(data, '-6', '-p', '2', '-b', '128')],
    ['pigz -9 -p 1', pigz(data, '-9', '-p', '1')],
    ['go -6', goGzip(data, '-level', '6')],
    ['go -1', goGzip(data, '-level', '1')],
    ['go members', goGzip(data, '-members', '3')],
  ] as const) {
    const reference = gunzipCli(blob);
    assert.ok(reference.equals(data), name);
    const { output, scan } = await scanBlob(blob, 100_000);
    assert.ok(output.equals(data), name);
    assert.ok(scan.checkpoints.length > 5, `${name}: ${scan.checkpoints.length} checkpoints`);
    await checkEverySpan(blob, scan, reference);
  }
});

test('a truncated blob, trailing garbage or a blob that is not gzip is refused with the reason', T, async () => {
  const data = variedData(300_000, 8);
  const blob = gnuGzip(data);
  await assert.rejects(scanBlob(blob.subarray(0, blob.length - 100), 65536), /truncated gzip: input ends inside member 1/);
  await assert.rejects(scanBlob(blob.subarray(0, 5), 65536), /not a gzip stream/);
  await assert.rejects(scanBlob(data, 65536), /not a gzip stream: incorrect header check/);
  await assert.rejects(scanBlob(Buffer.concat([blob, Buffer.from('garbage!')]), 65536), /data after gzip member 1: incorrect header check/);
  const corrupt = Buffer.from(blob);
  corrupt[blob.length - 3]! ^= 0xff; // ISIZE of the trailer
  await assert.rejects(scanBlob(corrupt, 65536), /incorrect length check/);
});

test('extractSpan refuses too little input, a wrong checkpoint and bad arguments', T, async () => {
  const data = variedData(1 << 20, 9);
  const blob = gnuGzip(data);
  const { scan } = await scanBlob(blob, 200_000);
  const c = scan.checkpoints[1]!;
  const input = blob.subarray(c.in - (c.bits > 0 ? 1 : 0), scan.checkpoints[2]!.in);
  const want = scan.checkpoints[2]!.out - c.out;
  await assert.rejects(nativeAddon().extractSpan(input.subarray(0, input.length >> 1), c.bits, c.window, want), /compressed input ends after \d+ of \d+ uncompressed bytes/);
  // Without their windows, spans whose back-references reach before them are refused or come out
  // as other bytes (then caught by the span digest).
  let wrong = 0;
  for (let i = 1; i < scan.checkpoints.length; i++) {
    const cp = scan.checkpoints[i]!;
    const end = scan.checkpoints[i + 1]?.out ?? data.length;
    const got = await nativeAddon().extractSpan(blob.subarray(cp.in - (cp.bits > 0 ? 1 : 0), scan.checkpoints[i + 1]?.in ?? blob.length), cp.bits, Buffer.alloc(0), end - cp.out).catch((err: Error) => err);
    if (got instanceof Error) assert.match(got.message, /span does not inflate/);
    if (got instanceof Error || !got.equals(data.subarray(cp.out, end))) wrong++;
  }
  assert.ok(wrong > 0);
  assert.throws(() => nativeAddon().extractSpan(input, 8, c.window, want), /bits must be 0 to 7/);
  assert.throws(() => nativeAddon().extractSpan(input, c.bits, Buffer.alloc(40_000), want), /window must be at most 32 KiB/);
  const indexer = new (nativeAddon().GzipIndexer)(1);
  const first = indexer.inflate(blob, 1 << 20, true);
  assert.throws(() => indexer.inflate(blob, 1 << 20, true), /while a previous call is still running/);
  await first;
});

test('inflating runs on the libuv pool: the JS thread turns while a span and an index step are inflated', T, async () => {
  const data = variedData(8 << 20, 10);
  const blob = gnuGzip(data, '-1');
  const turns = async (work: () => Promise<unknown>) => {
    let turned = false;
    setImmediate(() => (turned = true));
    await work();
    return turned;
  };
  // Synchronous work would resolve before the event loop reaches setImmediate.
  assert.equal(await turns(() => new (nativeAddon().GzipIndexer)(1 << 20).inflate(blob, 16 << 20, true)), true);
  const { scan } = await scanBlob(blob, 4 << 20);
  const c = scan.checkpoints[1]!;
  assert.equal(await turns(() => nativeAddon().extractSpan(blob.subarray(c.in - (c.bits > 0 ? 1 : 0)), c.bits, c.window, data.length - c.out)), true);
});
