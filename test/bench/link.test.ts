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
    // The delay is really applied and the rate really limits; the upper RTT and lower rate bounds
    // only catch gross errors, since client and registry share this (possibly busy) machine.
    assert.ok(check.rttMs >= 29 && check.rttMs < 150, `RTT ${check.rttMs} ms`);
    // 4 MB at 80 Mbit/s is 0.4 s; handshake and one RTT add 60 ms.
    assert.ok(check.throughputMbit > 20 && check.throughputMbit <= 80, `throughput ${check.throughputMbit} Mbit/s`);
    const after = await reg.relay.counters();
    assert.ok(after.bytesDown - before.bytesDown >= 4_000_000, 'relay did not count the probe download');
    // The harness refuses a link whose measured figures are off the profile.
    assertLinkMatches(profile, { ...check, rttMs: 31, throughputMbit: 74 });
    assert.throws(() => assertLinkMatches({ rttMs: 60, rateMbit: 80 }, { ...check, rttMs: 31 }), /RTT 31 ms, configured 60 ms/);
    assert.throws(() => assertLinkMatches({ rttMs: 30, rateMbit: 1000 }, { ...check, throughputMbit: 74 }), /throughput 74 Mbit\/s, configured 1000 Mbit\/s/);
  } finally {
    await reg.stop();
  }
});
