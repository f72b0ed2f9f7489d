import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startRegistry } from './registry.js';

test('the test registry starts, answers /v2/ and stops', async () => {
  const reg = await startRegistry();
  try {
    const res = await fetch(`${reg.url}/v2/`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  } finally {
    await reg.stop();
  }
});
