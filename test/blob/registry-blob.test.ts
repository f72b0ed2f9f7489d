// RegistryBlob against a real Distribution: range and multi-range reads checked byte for byte
// against the blob, size discovery, bounds, stats, connection reuse, and chunked uploads whose
// PATCH answer was lost (started over).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryBlob } from '../../src/blob/registry-blob.js';
import { BlobRangeError } from '../../src/blob/source.js';
import { sha256, type Digest } from '../../src/oci/digest.js';
import { RegistryClient } from '../../src/registry/client.js';
import { RegistryError, RegistryNotFoundError } from '../../src/registry/errors.js';
import { uploadBlobFile } from '../../src/registry/upload.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const REPO = 'blob/test';
const NONE = { get: async () => undefined };
let reg: RunningRegistry;
let proxy: FaultProxy;
let work: string;
const data = Buffer.alloc(3_000_001);
let digest: Digest;

before(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy(reg.url);
  work = await mkdtemp(join(tmpdir(), 'starling-rblob-'));
  let x = 12345;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    data[i] = x >>> 24;
  }
  digest = sha256(data);
  await writeFile(join(work, 'blob'), data);
  const c = new RegistryClient(reg.host, { credentials: NONE });
  await uploadBlobFile(c, REPO, { digest, size: data.length }, join(work, 'blob'));
  await c.close();
});

after(async () => {
  await proxy?.stop();
  await reg?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

test('random single and multi-range reads return exactly the blob bytes', async () => {
  const c = new RegistryClient(reg.host, { credentials: NONE });
  const blob = await RegistryBlob.open(c, REPO, { digest, size: data.length });
  assert.equal(blob.size, data.length);
  assert.equal(blob.description, `${reg.host}/${REPO}@${digest}`);
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 48271) % 2147483647;
    return seed % n;
  };
  for (let i = 0; i < 30; i++) {
    const offset = rnd(data.length);
    const length = Math.min(data.length - offset, rnd(200_000));
    assert.ok((await blob.read(offset, length)).equals(data.subarray(offset, offset + length)), `${offset}+${length}`);
  }
  assert.deepEqual(await blob.read(data.length - 1, 1), data.subarray(data.length - 1));
  assert.equal((await blob.read(17, 0)).length, 0);
  for (let round = 0; round < 5; round++) {
    const ranges = Array.from({ length: 1 + rnd(40) }, () => {
      const offset = rnd(data.length);
      return { offset, length: Math.min(data.length - offset, rnd(50_000)) };
    });
    const got = await blob.readRanges(ranges);
    ranges.forEach((r, i) => assert.ok(got[i]!.equals(data.subarray(r.offset, r.offset + r.length)), `round ${round} range ${i}`));
  }
  await c.close();
});

test('more ranges than one request may carry are split over several multi-range requests', async () => {
  const c = new RegistryClient(proxy.host, { credentials: NONE });
  const blob = await RegistryBlob.open(c, REPO, { digest, size: data.length }, { maxRangesPerRequest: 8 });
  const ranges = Array.from({ length: 20 }, (_, i) => ({ offset: i * 100_000, length: 1000 }));
  const n = proxy.log.length;
  const got = await blob.readRanges(ranges);
  ranges.forEach((r, i) => assert.ok(got[i]!.equals(data.subarray(r.offset, r.offset + r.length))));
  const sent = proxy.log.slice(n).map((r) => String(r.headers.range).split(',').length);
  assert.deepEqual(sent.sort(), [4, 8, 8]);
  await c.close();
});

test('a multi-range read tells of each range as its part arrives, before the whole answer is in', { timeout: 30_000 }, async () => {
  const c = new RegistryClient(proxy.host, { credentials: NONE });
  const blob = await RegistryBlob.open(c, REPO, { digest, size: data.length });
  // Parts of 400 KB: the answer crosses the socket in many pieces.
  const ranges = [2_500_000, 100, 1_200_000].map((offset) => ({ offset, length: 400_000 }));
  const told: Array<{ index: number; data: Buffer; received: number }> = [];
  const n = proxy.log.length;
  const got = await blob.readRanges(ranges, (index, bytes) => told.push({ index, data: Buffer.from(bytes), received: blob.stats.bytes }));
  assert.equal(proxy.log.length - n, 1, 'one request');
  assert.deepEqual(told.map((t) => t.index), [1, 2, 0], 'told in the order of the blob, as the server sends the parts');
  told.forEach((t) => assert.ok(t.data.equals(data.subarray(ranges[t.index]!.offset, ranges[t.index]!.offset + 400_000))));
  assert.ok(told[0]!.received < told[2]!.received, `the first part was told of when ${told[0]!.received} of ${told[2]!.received} bytes were in`);
  assert.ok(told[0]!.received < 2 * 400_000, 'before the second part was in');
  ranges.forEach((r, i) => assert.ok(got[i]!.equals(data.subarray(r.offset, r.offset + r.length))));
  await c.close();
});

test('bounds, sizes and missing blobs', async () => {
  const c = new RegistryClient(reg.host, { credentials: NONE });
  const blob = await RegistryBlob.open(c, REPO, { digest, size: data.length });
  await assert.rejects(blob.read(data.length - 1, 2), BlobRangeError);
  await assert.rejects(blob.read(-1, 2), BlobRangeError);
  await assert.rejects(blob.readRanges([{ offset: 0, length: 1 }, { offset: data.length, length: 1 }]), BlobRangeError);
  await assert.rejects(RegistryBlob.open(c, REPO, { digest, size: data.length + 1 }), new RegExp(`blob ${digest}: blob size ${data.length} does not match the descriptor's size ${data.length + 1}`));
  const missing = sha256('not there');
  await assert.rejects(RegistryBlob.open(c, REPO, { digest: missing, size: 9 }), (err: Error) => err instanceof RegistryNotFoundError && err.message.startsWith(`registry ${reg.host}, repository ${REPO}, blob ${missing}: HEAD`));
  await c.close();
});

test('sizeFromDescriptor: no request to open; a descriptor with the wrong size fails the first read', async () => {
  const c = new RegistryClient(proxy.host, { credentials: NONE });
  const n = proxy.log.length;
  const blob = await RegistryBlob.open(c, REPO, { digest, size: data.length }, { sizeFromDescriptor: true });
  assert.equal(proxy.log.length, n, 'nothing sent');
  assert.ok((await blob.read(10, 100)).equals(data.subarray(10, 110)));
  const wrong = await RegistryBlob.open(c, REPO, { digest, size: data.length + 1 }, { sizeFromDescriptor: true });
  await assert.rejects(wrong.read(10, 100), /got Content-Range/);
  await c.close();
});

test('size falls back to a one-byte ranged GET when HEAD fails', async () => {
  const c = new RegistryClient(proxy.host, { credentials: NONE });
  proxy.inject({ kind: 'status', status: 405, match: { method: 'HEAD' } });
  const n = proxy.log.length;
  const blob = await RegistryBlob.open(c, REPO, { digest, size: data.length });
  assert.equal(blob.size, data.length);
  assert.deepEqual(
    proxy.log.slice(n).map((r) => `${r.method} ${r.status} ${r.headers.range ?? ''}`),
    ['HEAD 405 ', 'GET 206 bytes=0-0'],
  );
  assert.equal(blob.stats.requests, 2);
  await c.close();
});

test('stats count requests and body bytes; parallel reads share a bounded set of connections', async () => {
  const c = new RegistryClient(proxy.host, { credentials: NONE, connectionsPerHost: 2 });
  const blob = await RegistryBlob.open(c, REPO, { digest, size: data.length });
  const conns = proxy.connections();
  const reads = Array.from({ length: 24 }, (_, i) => blob.read(i * 100_000, 10_000));
  const got = await Promise.all(reads);
  got.forEach((b, i) => assert.ok(b.equals(data.subarray(i * 100_000, i * 100_000 + 10_000))));
  assert.ok(proxy.connections() - conns <= 2, `${proxy.connections() - conns} new connections`);
  assert.equal(blob.stats.requests, 25); // HEAD + 24 GETs
  assert.equal(blob.stats.bytes, 24 * 10_000);
  await c.close();
});

test('a chunked upload whose PATCH answer was lost resumes from the registry upload status', async () => {
  const c = new RegistryClient(proxy.host, { credentials: NONE, retry: { retries: 3, baseDelayMs: 5, maxDelayMs: 10 } });
  const other = Buffer.concat([Buffer.from('other'), data.subarray(0, 2_500_000)]);
  const d = sha256(other);
  await writeFile(join(work, 'other'), other);
  proxy.inject({ kind: 'drop-response', match: { method: 'PATCH' } });
  const n = proxy.log.length;
  const r = await uploadBlobFile(c, 'blob/chunked', { digest: d, size: other.length }, join(work, 'other'), { chunkSize: 1 << 20 });
  assert.equal(r.how, 'chunked');
  const seq = proxy.log.slice(n).map((e) => `${e.method} ${e.status ?? 'reset'}`);
  // The answer to the first PATCH is lost; the retried PATCH finds the session URL stale (Distribution
  // signs the offset into it), so the upload starts over. Distribution sends that 404 and closes the
  // connection before reading the PATCH body, which the client sometimes sees as a network error and
  // retries (bounded by retries: 3): 1 to 4 stale 404s, then exactly one restart.
  const stale = seq.slice(2).findIndex((e) => e !== 'PATCH 404');
  assert.deepEqual(seq.slice(0, 2), ['POST 202', 'PATCH 202']);
  assert.ok(stale >= 1 && stale <= 4, `stale-session 404s: ${seq.join(', ')}`);
  assert.deepEqual(seq.slice(2 + stale), ['POST 202', 'PATCH 202', 'PATCH 202', 'PATCH 202', 'PUT 201']);
  const blob = await RegistryBlob.open(c, 'blob/chunked', { digest: d, size: other.length });
  assert.ok((await blob.read(0, other.length)).equals(other));
  await c.close();
});

test('a chunked upload whose PATCH fails on the network on every attempt starts over', async () => {
  const c = new RegistryClient(proxy.host, { credentials: NONE, retry: { retries: 3, baseDelayMs: 5, maxDelayMs: 10 } });
  const other = Buffer.concat([Buffer.from('third'), data.subarray(0, 2_500_000)]);
  const d = sha256(other);
  await writeFile(join(work, 'third'), other);
  proxy.inject({ kind: 'reset', times: 4, match: { method: 'PATCH' } }); // the first try and its 3 retries
  const n = proxy.log.length;
  const r = await uploadBlobFile(c, 'blob/chunked', { digest: d, size: other.length }, join(work, 'third'), { chunkSize: 1 << 20 });
  assert.equal(r.how, 'chunked');
  const seq = proxy.log.slice(n).map((e) => `${e.method} ${e.status ?? 'reset'}`);
  assert.deepEqual(seq, ['POST 202', 'PATCH reset', 'PATCH reset', 'PATCH reset', 'PATCH reset', 'POST 202', 'PATCH 202', 'PATCH 202', 'PATCH 202', 'PUT 201']);
  const blob = await RegistryBlob.open(c, 'blob/chunked', { digest: d, size: other.length });
  assert.ok((await blob.read(0, other.length)).equals(other));
  await c.close();
});

test('a registry that refuses the digest of an upload is an error naming the blob', async () => {
  const c = new RegistryClient(reg.host, { credentials: NONE, retry: { retries: 0, baseDelayMs: 1, maxDelayMs: 1 } });
  const wrong = sha256('something else');
  await writeFile(join(work, 'four'), 'four');
  await assert.rejects(uploadBlobFile(c, 'blob/bad', { digest: wrong, size: 4 }, join(work, 'four')), (err: Error) => err instanceof RegistryError && err.message.includes(`blob ${wrong}`) && /DIGEST_INVALID|HTTP 400/.test(err.message));
  await c.close();
});
