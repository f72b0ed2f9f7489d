// Faults between Starling and a real Distribution (htpasswd auth, so redirects can leak
// Authorization if they are wrong), injected by the fault proxy: each ends in the right retry, the
// right error, and never in wrong bytes.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryBlob } from '../../src/blob/registry-blob.js';
import { sha256, type Digest } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import { RegistryClient } from '../../src/registry/client.js';
import { staticCredentials } from '../../src/registry/credentials.js';
import { openRegistrySource } from '../../src/registry/image.js';
import { uploadBlobFile } from '../../src/registry/upload.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { htpasswdLine } from './htpasswd.js';

const REPO = 'faults/blob';
const creds = staticCredentials('placeholder', { kind: 'basic', username: 'alice', password: 's3cret' });
let reg: RunningRegistry;
let proxy: FaultProxy;
let work: string;
const big = Buffer.alloc(2 << 20);
const small = Buffer.from('a small blob that fits under the small-blob limit\n'.repeat(100));
let bigDigest: Digest;
let smallDigest: Digest;

function client(retries = 3): RegistryClient {
  return new RegistryClient(proxy.host, { credentials: { get: (d) => creds.get(d === proxy.host ? 'placeholder' : d) }, retry: { retries, baseDelayMs: 5, maxDelayMs: 20 } });
}

async function open(c: RegistryClient, data: 'big' | 'small' = 'big'): Promise<RegistryBlob> {
  return RegistryBlob.open(c, REPO, data === 'big' ? { digest: bigDigest, size: big.length } : { digest: smallDigest, size: small.length });
}

before(async () => {
  reg = await startRegistry({ htpasswd: await htpasswdLine('alice', 's3cret') });
  proxy = await startFaultProxy(reg.url);
  work = await mkdtemp(join(tmpdir(), 'starling-faults-'));
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2246822519) >>> 0, i);
  bigDigest = sha256(big);
  smallDigest = sha256(small);
  const c = client();
  for (const [data, digest] of [[big, bigDigest], [small, smallDigest]] as const) {
    const f = join(work, digest.slice(7));
    await writeFile(f, data);
    await uploadBlobFile(c, REPO, { digest, size: data.length }, f);
  }
  await c.close();
});

beforeEach(() => {
  proxy.clear();
  proxy.log.length = 0;
  proxy.storageLog.length = 0;
});

after(async () => {
  await proxy?.stop();
  await reg?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

test('a connection reset mid-body is retried and the bytes are right', async () => {
  const c = client();
  const blob = await open(c);
  proxy.inject({ kind: 'reset-mid-body', afterBytes: 100_000, match: { method: 'GET', range: true } });
  const got = await blob.read(50_000, 400_000);
  assert.deepEqual(got, big.subarray(50_000, 450_000));
  const gets = proxy.log.filter((r) => r.method === 'GET');
  assert.deepEqual(gets.map((r) => r.fault), ['reset-mid-body', undefined]);
  assert.equal(proxy.pending(), 0);
  await c.close();
});

test('a 503 storm is ridden out; an endless 500 storm fails naming registry, repository and digest', async () => {
  const c = client(4);
  const blob = await open(c);
  const before = blob.stats.requests;
  proxy.inject({ kind: 'status', status: 503, times: 3, match: { range: true } });
  assert.deepEqual(await blob.read(0, 1000), big.subarray(0, 1000));
  assert.equal(blob.stats.requests - before, 4);

  proxy.inject({ kind: 'status', status: 500, times: Infinity, match: { range: true } });
  await assert.rejects(blob.read(0, 1000), (err: Error) => {
    assert.match(err.message, new RegExp(`^registry ${proxy.host}, repository ${REPO}, blob ${bigDigest}: GET .*HTTP 500.*gave up after 5 attempts`));
    return true;
  });
  proxy.clear();
  // 501 is not retried.
  proxy.inject({ kind: 'status', status: 501, times: Infinity, match: { range: true } });
  const n = proxy.log.length;
  await assert.rejects(blob.read(0, 10), /unexpected HTTP 501/);
  assert.equal(proxy.log.length - n, 1);
  await c.close();
});

test('a registry that does not answer in time is retried after the per-request timeout', async () => {
  const c = new RegistryClient(proxy.host, { credentials: { get: (d) => creds.get(d === proxy.host ? 'placeholder' : d) }, timeoutMs: 300, retry: { retries: 2, baseDelayMs: 5, maxDelayMs: 10 } });
  const blob = await open(c);
  proxy.inject({ kind: 'delay', ms: 1500, match: { range: true } });
  const n = proxy.log.length;
  assert.deepEqual(await blob.read(3, 4), big.subarray(3, 7));
  const gets = proxy.log.slice(n).filter((r) => r.headers.range);
  assert.deepEqual(gets.map((r) => r.fault), ['delay', undefined]);
  // A registry that never answers: the timeout ends every attempt, then the error names the blob.
  proxy.pause();
  try {
    await assert.rejects(blob.read(3, 4), new RegExp(`blob ${bigDigest}: GET .*(timeout|Timeout).*gave up after 3 attempts`));
  } finally {
    proxy.resume();
  }
  await c.close();
});

test('429 with Retry-After is honoured', async () => {
  const c = client();
  const blob = await open(c);
  proxy.inject({ kind: 'retry-after', seconds: 1, match: { range: true } });
  const t0 = Date.now();
  assert.deepEqual(await blob.read(10, 20), big.subarray(10, 30));
  assert.ok(Date.now() - t0 >= 950, `waited only ${Date.now() - t0} ms`);
  await c.close();
});

test('a 200 answer to a Range request: an error for a large blob, verified and sliced for a small one', async () => {
  const c = client();
  const blob = await open(c);
  proxy.inject({ kind: 'ignore-range', match: { range: true } });
  await assert.rejects(blob.read(1000, 100), (err: Error) => {
    assert.match(err.message, new RegExp(`blob ${bigDigest}: answered a Range request for 100 bytes at 1000 with 200 and the whole ${big.length}-byte blob`));
    return true;
  });
  const sm = await open(c, 'small');
  proxy.inject({ kind: 'ignore-range', match: { range: true } });
  assert.deepEqual(await sm.read(7, 50), small.subarray(7, 57));
  // A small blob whose 200 body was altered fails its digest check instead of returning wrong bytes.
  proxy.inject({ kind: 'ignore-range', alterOffset: 3000, match: { range: true } });
  await assert.rejects(sm.read(7, 50), new RegExp(`blob ${smallDigest}: blob body hashes to sha256:`));
  await c.close();
});

test('multi-range reads: one multipart request; a registry answering 200 or 501 switches to single ranges', async () => {
  const c = client();
  const ranges = [
    { offset: 900_000, length: 5000 },
    { offset: 10, length: 100 },
    { offset: 60, length: 100 }, // overlaps the previous one
    { offset: 2_000_000, length: 97_152 }, // up to the last byte
    { offset: 5, length: 0 },
  ];
  const want = ranges.map((r) => big.subarray(r.offset, r.offset + r.length));
  const blob = await open(c);
  const n = proxy.log.length;
  assert.deepEqual(await blob.readRanges(ranges), want);
  const sent = proxy.log.slice(n);
  assert.equal(sent.length, 1);
  assert.equal(sent[0]!.headers.range, 'bytes=10-159,900000-904999,2000000-2097151');

  for (const fault of [{ kind: 'ignore-range' } as const, { kind: 'status', status: 501 } as const, { kind: 'status', status: 400 } as const]) {
    const b = await open(c);
    proxy.inject({ ...fault, match: { path: /./, range: true } });
    const m = proxy.log.length;
    const told: Array<[number, Buffer]> = [];
    assert.deepEqual(await b.readRanges(ranges, (i, data) => told.push([i, data])), want);
    assert.deepEqual(told.sort((x, y) => x[0] - y[0]), want.map((w, i) => [i, w]), 'each range told once, with its bytes, on the single-range path too');
    const after = proxy.log.slice(m);
    assert.equal(after[0]!.fault, fault.kind);
    assert.ok(after.slice(1).every((r) => !String(r.headers.range).includes(',')), 'fell back to single ranges');
    // The fallback sticks: the next multi-range read goes straight to single ranges.
    const k = proxy.log.length;
    assert.deepEqual(await b.readRanges(ranges.slice(0, 2)), want.slice(0, 2));
    assert.ok(proxy.log.slice(k).every((r) => !String(r.headers.range).includes(',')));
  }
  await c.close();
});

test('a redirect to another host: Authorization is not forwarded, the location is reused, an expired one is re-resolved', async () => {
  const c = client();
  const blob = await open(c);
  proxy.inject({ kind: 'redirect', match: { method: 'GET', path: '/blobs/' } });
  assert.deepEqual(await blob.read(100, 1000), big.subarray(100, 1100));
  const redirected = proxy.log.find((r) => r.fault === 'redirect')!;
  assert.match(String(redirected.headers.authorization), /^Basic /);
  assert.equal(proxy.storageLog.length, 1);
  assert.equal(proxy.storageLog[0]!.headers.authorization, undefined);
  assert.equal(proxy.storageLog[0]!.headers.range, 'bytes=100-1099');

  // The next read goes to the storage URL directly.
  const n = proxy.log.length;
  assert.deepEqual(await blob.read(5000, 10), big.subarray(5000, 5010));
  assert.equal(proxy.log.length, n);
  assert.equal(proxy.storageLog.length, 2);

  // Expired presigned URL: 403 from storage → back through the registry → a fresh redirect.
  proxy.expireRedirects();
  proxy.inject({ kind: 'redirect', match: { method: 'GET', path: '/blobs/' } });
  assert.deepEqual(await blob.read(7000, 10), big.subarray(7000, 7010));
  assert.deepEqual(proxy.storageLog.map((r) => r.status), [206, 206, 403, 206]);
  assert.ok(proxy.storageLog.every((r) => r.headers.authorization === undefined));
  await c.close();
});

test('a blob whose HEAD is redirected exists without following the redirect', async () => {
  const c = client();
  proxy.inject({ kind: 'redirect', match: { method: 'HEAD', path: '/blobs/' } });
  assert.equal(await c.blobSize(REPO, bigDigest), -1);
  assert.equal(proxy.storageLog.length, 0);
  await c.close();
});

test('a full blob stream resumes after a reset with a Range request, and detects altered bytes', async () => {
  const rs = await openRegistrySource(`docker://${proxy.host}/${REPO}:none`, {
    credentials: { get: (d) => creds.get(d === proxy.host ? 'placeholder' : d) },
    client: { retry: { retries: 3, baseDelayMs: 5, maxDelayMs: 20 } },
  });
  const desc = { mediaType: MediaType.ociLayer, digest: bigDigest, size: big.length };
  await (await rs.openBlobSource(desc)).close(); // learns the Basic challenge, so the fault hits the download itself
  proxy.log.length = 0;
  proxy.inject({ kind: 'reset-mid-body', afterBytes: 700_000, match: { method: 'GET', path: '/blobs/' } });
  const chunks: Buffer[] = [];
  for await (const c of await rs.openBlobStream(desc)) chunks.push(c as Buffer);
  assert.ok(Buffer.concat(chunks).equals(big));
  const gets = proxy.log.filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
  assert.equal(gets.length, 2);
  assert.match(String(gets[1]!.headers.range), /^bytes=\d+-$/);
  assert.ok(Number(/=(\d+)-/.exec(String(gets[1]!.headers.range))![1]) >= 600_000);

  proxy.inject({ kind: 'alter-bytes', offset: 1_234_567, match: { method: 'GET', path: '/blobs/' } });
  await assert.rejects(
    (async () => {
      for await (const _ of await rs.openBlobStream(desc));
    })(),
    new RegExp(`blob ${bigDigest}: blob digest mismatch`),
  );
  await rs.close();
});

test('a registry refusing HEAD on manifests is resolved by GET', async () => {
  const c = client();
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, digest: smallDigest, size: small.length }, layers: [] }));
  await c.putManifest(REPO, 'nohead', MediaType.ociManifest, manifest);
  await c.close();
  const rs = await openRegistrySource(`docker://${proxy.host}/${REPO}:nohead`, { credentials: { get: (d) => creds.get(d === proxy.host ? 'placeholder' : d) } });
  proxy.inject({ kind: 'status', status: 405, times: Infinity, match: { method: 'HEAD', path: '/manifests/' } });
  const root = await rs.resolveRoot();
  assert.equal(root.descriptor.digest, sha256(manifest));
  assert.ok(proxy.log.some((r) => r.method === 'GET' && r.path.endsWith('/manifests/nohead') && r.status === 200));
  await rs.close();
});

test('a manifest whose bytes were altered on the way is refused', async () => {
  const c = client();
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, digest: smallDigest, size: small.length }, layers: [] }));
  await c.putManifest(REPO, 'm1', MediaType.ociManifest, manifest);
  proxy.inject({ kind: 'alter-bytes', offset: 10, match: { method: 'GET', path: '/manifests/' } });
  await assert.rejects(c.getManifest(REPO, sha256(manifest)), /manifest digest mismatch/);
  proxy.inject({ kind: 'alter-bytes', offset: 10, match: { method: 'GET', path: '/manifests/' } });
  await assert.rejects(c.getManifest(REPO, 'm1'), /Docker-Content-Digest says/);
  assert.equal((await c.getManifest(REPO, 'm1')).digest, sha256(manifest));
  await c.close();
});
