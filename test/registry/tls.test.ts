// HTTPS registries: a certificate that does not verify is refused with a clear error unless
// `insecure` is set; loopback hosts default to plain HTTP unless told otherwise.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { RegistryClient } from '../../src/registry/client.js';
import { RegistryError } from '../../src/registry/errors.js';
import { openRegistrySource } from '../../src/registry/image.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const NONE = { get: async () => undefined };
let reg: RunningRegistry;
let tls: FaultProxy;

before(async () => {
  reg = await startRegistry();
  tls = await startFaultProxy(reg.url, { tls: true });
});
after(async () => {
  await tls?.stop();
  await reg?.stop();
});

test('a self-signed registry is refused, without retries, unless insecure', async () => {
  const strict = new RegistryClient(tls.host, { plainHttp: false, credentials: NONE });
  assert.equal(strict.baseUrl.protocol, 'https:');
  await assert.rejects(strict.headManifest('a/b', 'latest'), (err: Error) => {
    assert.ok(err instanceof RegistryError);
    assert.match(err.message, new RegExp(`^registry ${tls.host}, repository a/b, tag latest: HEAD https://${tls.host}/v2/a/b/manifests/latest: .*self[- ]signed`, 'i'));
    return true;
  });
  assert.equal(tls.log.length, 0); // the TLS handshake failed: no request reached the proxy
  await strict.close();

  const insecure = new RegistryClient(tls.host, { plainHttp: false, insecure: true, credentials: NONE });
  assert.equal(await insecure.headManifest('a/b', 'latest'), undefined); // a 404 over TLS
  assert.equal(tls.log.length, 1);
  await insecure.close();
});

test('loopback defaults to http; plainHttp: false forces https', async () => {
  const src = await openRegistrySource(`docker://${tls.host}/a/b:latest`, { plainHttp: false, insecure: true, credentials: NONE });
  await assert.rejects(src.resolveRoot(), /tag latest: manifest unknown|HTTP 404/);
  await src.close();
  const plain = new RegistryClient(tls.host, { credentials: NONE, retry: { retries: 0, baseDelayMs: 1, maxDelayMs: 1 } });
  assert.equal(plain.baseUrl.protocol, 'http:');
  await assert.rejects(plain.headManifest('a/b', 'latest'), RegistryError); // http spoken to an https port
  await plain.close();
});
