// Protocol pieces without a server: WWW-Authenticate challenges, Content-Range, multipart/byteranges,
// Retry-After and backoff.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseChallenges } from '../../src/registry/auth.js';
import { byterangesBoundary, ByterangesScanner, parseContentRange, parseMultipartByteranges } from '../../src/registry/multipart.js';
import { backoffMs, DEFAULT_RETRY, isRetryableStatus, retryAfterMs } from '../../src/registry/retry.js';

test('parses bearer and basic challenges, quoted commas and escapes included', () => {
  assert.deepEqual(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:samalba/my-app:pull,push' } },
  ]);
  assert.deepEqual(parseChallenges(['Basic realm="a \\"quoted\\" realm"', 'Bearer realm=https://x/t, error=invalid_token']), [
    { scheme: 'basic', params: { realm: 'a "quoted" realm' } },
    { scheme: 'bearer', params: { realm: 'https://x/t', error: 'invalid_token' } },
  ]);
  assert.deepEqual(parseChallenges('Basic realm="r", Bearer realm="t"').map((c) => c.scheme), ['basic', 'bearer']);
  assert.deepEqual(parseChallenges(undefined), []);
});

test('Content-Range and the multipart boundary', () => {
  assert.deepEqual(parseContentRange('bytes 0-99/1000'), { start: 0, end: 99, total: 1000 });
  assert.deepEqual(parseContentRange('bytes 5-5/*'), { start: 5, end: 5 });
  assert.equal(parseContentRange('bytes 9-5/10'), undefined);
  assert.equal(parseContentRange('items 0-1/2'), undefined);
  assert.equal(byterangesBoundary('multipart/byteranges; boundary=abc123'), 'abc123');
  assert.equal(byterangesBoundary('multipart/byteranges; boundary="q u"'), 'q u');
  assert.equal(byterangesBoundary('application/octet-stream'), undefined);
});

test('multipart/byteranges parts are cut by their Content-Range, even when the payload holds the boundary', () => {
  const b = 'BOUND';
  const part1 = Buffer.from('xx--BOUND\r\nyy'); // the boundary inside binary payload
  const body = Buffer.concat([
    Buffer.from(`\r\n--${b}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 10-22/100\r\n\r\n`),
    part1,
    Buffer.from(`\r\n--${b}\r\ncontent-range: bytes 90-99/100\r\n\r\n`),
    Buffer.from('0123456789'),
    Buffer.from(`\r\n--${b}--\r\n`),
  ]);
  const parts = parseMultipartByteranges(body, b);
  assert.equal(parts.length, 2);
  assert.deepEqual(parts[0]!.data, part1);
  assert.deepEqual({ ...parts[1], data: parts[1]!.data.toString() }, { start: 90, end: 99, total: 100, data: '0123456789' });
  assert.throws(() => parseMultipartByteranges(body.subarray(0, 60), b), /truncated|without/);
  // Read as it arrives, a byte at a time: each part comes out once its last byte is in, and only then.
  const scanner = new ByterangesScanner(b);
  const seen: Array<{ at: number; start: number }> = [];
  for (let filled = 0; filled <= body.length; filled++) for (const p of scanner.scan(body, filled)) seen.push({ at: filled, start: p.start });
  scanner.end();
  const end1 = body.indexOf(part1) + part1.length;
  const end2 = body.indexOf('0123456789') + 10;
  assert.deepEqual(seen, [{ at: end1, start: 10 }, { at: end2, start: 90 }]);
  const cut = new ByterangesScanner(b);
  cut.scan(body, end2);
  assert.throws(() => cut.end(), /ends without its closing boundary/);
  assert.throws(() => parseMultipartByteranges(Buffer.from(`--${b}\r\nX: y\r\n\r\nabc\r\n--${b}--`), b), /without a valid Content-Range/);
});

test('retry rules: 429 and 5xx but not 501; Retry-After seconds and dates; jittered backoff', () => {
  for (const s of [429, 500, 502, 503, 504, 408]) assert.ok(isRetryableStatus(s), String(s));
  for (const s of [400, 401, 403, 404, 416, 501]) assert.ok(!isRetryableStatus(s), String(s));
  assert.equal(retryAfterMs('3'), 3000);
  assert.equal(retryAfterMs(new Date(Date.UTC(2030, 0, 1, 0, 0, 10)).toUTCString(), Date.UTC(2030, 0, 1)), 10_000);
  assert.equal(retryAfterMs('soon'), undefined);
  for (let attempt = 1; attempt <= 10; attempt++) {
    const d = backoffMs(DEFAULT_RETRY, attempt);
    const cap = Math.min(DEFAULT_RETRY.maxDelayMs, DEFAULT_RETRY.baseDelayMs * 2 ** (attempt - 1));
    assert.ok(d >= cap / 2 && d <= cap, `attempt ${attempt}: ${d}`);
  }
});
