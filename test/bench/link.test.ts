// The benchmark's link check against the real registry behind the relay: the figures it records
// must be the configured link's, and the relay must count what the client downloaded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertLinkMatches, checkLink, startEmulatedRegistry } from '../../bench/net/link.js';

test('link check through the relay measures the configured RTT and rate of a real registry', async () => {
  const profile = { rttMs: 30, rateMbit: 80 };
  const reg = await startEmulatedRegistry(profile);
  try {
    const before = await reg.relay.counters();
    const check = await checkLink(reg, 4_000_000);
    assert.ok(check.rttMs >= 29 && check.rttMs < 45, `RTT ${check.rttMs} ms`);
    // 4 MB at 80 Mbit/s is 0.4 s; handshake and one RTT add 60 ms.
    assert.ok(check.throughputMbit > 64 && check.throughputMbit <= 80, `throughput ${check.throughputMbit} Mbit/s`);
    assertLinkMatches(profile, check);
    const after = await reg.relay.counters();
    assert.ok(after.bytesDown - before.bytesDown >= 4_000_000, 'relay did not count the probe download');
    assert.throws(() => assertLinkMatches({ rttMs: 60, rateMbit: 80 }, check), /RTT/);
    assert.throws(() => assertLinkMatches({ rttMs: 30, rateMbit: 1000 }, check), /throughput/);
  } finally {
    await reg.stop();
  }
});
