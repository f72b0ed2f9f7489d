// Authentication against real Distribution: bearer tokens from a token issuer run by the test
// (anonymous, OAuth2 POST with password and refresh token, GET with Basic), token caching and
// expiry, re-authentication on 401/403; htpasswd Basic auth with credentials from docker's
// config.json (auths, credHelpers, credsStore, DOCKER_AUTH_CONFIG).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryBlob } from '../../src/blob/registry-blob.js';
import { sha256, type Digest } from '../../src/oci/digest.js';
import { RegistryClient } from '../../src/registry/client.js';
import { dockerConfigCredentials, staticCredentials, type Credential, type CredentialStore } from '../../src/registry/credentials.js';
import { RegistryAuthError } from '../../src/registry/errors.js';
import { uploadBlobFile } from '../../src/registry/upload.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { startTokenServer, type TokenServer } from '../helpers/token-server.js';
import { htpasswdLine } from './htpasswd.js';

const NONE: CredentialStore = { get: async () => undefined };
const FAST = { retries: 1, baseDelayMs: 5, maxDelayMs: 10 };

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-auth-'));
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

let n = 0;
/** Pushes a fresh small blob to `repo`; returns its digest. */
async function pushBlob(c: RegistryClient, repo: string): Promise<{ digest: Digest; data: Buffer }> {
  const data = Buffer.from(`blob number ${n++} ${'x'.repeat(1000)}`);
  const digest = sha256(data);
  const f = join(work, digest.slice(7));
  await writeFile(f, data);
  await uploadBlobFile(c, repo, { digest, size: data.length }, f);
  return { digest, data };
}

describe('bearer tokens', () => {
  let ts: TokenServer;
  let reg: RunningRegistry;
  before(async () => {
    ts = await startTokenServer({ users: { alice: 'pw' }, refreshTokens: { 'refresh-1': 'alice' }, anonymousPull: true });
    reg = await startRegistry({ token: ts.registryConfig });
  });
  after(async () => {
    await reg?.stop();
    await ts?.stop();
  });

  const client = (cred?: Credential) => new RegistryClient(reg.host, { credentials: cred ? staticCredentials(reg.host, cred) : NONE, retry: FAST });

  test('push with a password (OAuth2 POST), pull anonymously, push anonymously is refused', async () => {
    const alice = client({ kind: 'basic', username: 'alice', password: 'pw' });
    const { digest, data } = await pushBlob(alice, 'tok/repo');
    await alice.close();
    const post = ts.log.find((r) => r.method === 'POST' && r.scopes.includes('repository:tok/repo:pull,push'));
    assert.equal(post?.grant, 'password');
    assert.equal(post?.user, 'alice');

    const anon = client();
    const blob = await RegistryBlob.open(anon, 'tok/repo', { digest, size: data.length });
    assert.deepEqual(await blob.read(5, 10), data.subarray(5, 15));
    assert.ok(ts.log.some((r) => r.method === 'GET' && r.user === undefined && r.scopes.includes('repository:tok/repo:pull')));
    await assert.rejects(pushBlob(anon, 'tok/repo'), (err: Error) => {
      assert.ok(err instanceof RegistryAuthError);
      assert.match(err.message, new RegExp(`^registry ${reg.host}, repository tok/repo, blob sha256:[0-9a-f]{64}: POST .*HTTP 401`));
      return true;
    });
    await anon.close();
  });

  test('a refresh token (identity token) gets push rights through grant_type=refresh_token', async () => {
    const c = client({ kind: 'identity', token: 'refresh-1' });
    await pushBlob(c, 'tok/refresh');
    await c.close();
    assert.ok(ts.log.some((r) => r.grant === 'refresh_token' && r.user === 'alice'));
  });

  test('wrong credentials are an authentication error naming the registry', async () => {
    const c = client({ kind: 'basic', username: 'alice', password: 'wrong' });
    await assert.rejects(pushBlob(c, 'tok/repo'), (err: Error) => err instanceof RegistryAuthError && /token server refused \(HTTP 401\)/.test(err.message) && err.message.includes(reg.host));
    await c.close();
  });

  test('tokens are cached per scope until they expire', async () => {
    const seed = client({ kind: 'basic', username: 'alice', password: 'pw' });
    const { digest, data } = await pushBlob(seed, 'tok/cache');
    await seed.close();
    const c = client();
    const blob = await RegistryBlob.open(c, 'tok/cache', { digest, size: data.length });
    for (let i = 0; i < 10; i++) assert.deepEqual(await blob.read(i, 3), data.subarray(i, i + 3));
    assert.equal(c.tokenRequests, 1);
    // Concurrent first requests of a fresh client share one challenge round and one token request.
    const fresh = client();
    const reads = await Promise.all(Array.from({ length: 12 }, () => RegistryBlob.open(fresh, 'tok/cache', { digest, size: data.length }).then((b) => b.read(0, 8))));
    for (const r of reads) assert.deepEqual(r, data.subarray(0, 8));
    assert.equal(fresh.tokenRequests, 1);
    await fresh.close();
    // Tokens are dropped 10 s before they expire: an 11 s token is good for about 1 s.
    ts.setExpiresIn(11);
    const c2 = client();
    const b2 = await RegistryBlob.open(c2, 'tok/cache', { digest, size: data.length });
    await b2.read(0, 1);
    assert.equal(c2.tokenRequests, 1);
    await new Promise((r) => setTimeout(r, 1200));
    await b2.read(0, 1);
    assert.equal(c2.tokenRequests, 2);
    ts.setExpiresIn(300);
    await c.close();
    await c2.close();
  });

  test('a 401 or a 403 from the registry re-authenticates once; a second refusal is an error', async () => {
    const seed = client({ kind: 'basic', username: 'alice', password: 'pw' });
    const { digest, data } = await pushBlob(seed, 'tok/reauth');
    await seed.close();
    const proxy = await startFaultProxy(reg.url);
    try {
      const c = new RegistryClient(proxy.host, { credentials: NONE, retry: FAST });
      const blob = await RegistryBlob.open(c, 'tok/reauth', { digest, size: data.length });
      const before = c.tokenRequests;
      const challenge = `Bearer realm="${ts.realm}",service="${ts.service}",scope="repository:tok/reauth:pull",error="invalid_token"`;
      proxy.inject({ kind: 'status', status: 401, headers: { 'www-authenticate': challenge }, match: { range: true } });
      assert.deepEqual(await blob.read(1, 2), data.subarray(1, 3));
      assert.equal(c.tokenRequests, before + 1);
      proxy.inject({ kind: 'status', status: 403, match: { range: true } });
      assert.deepEqual(await blob.read(1, 2), data.subarray(1, 3));
      assert.equal(c.tokenRequests, before + 2);
      proxy.inject({ kind: 'status', status: 403, times: 2, match: { range: true } });
      await assert.rejects(blob.read(1, 2), (err: Error) => err instanceof RegistryAuthError && /HTTP 403 \(access denied\)/.test(err.message));
      await c.close();
    } finally {
      await proxy.stop();
    }
  });
});

test('a token server without the OAuth2 POST form: credentials go by GET with Basic', async () => {
  const ts = await startTokenServer({ users: { bob: 'b0b' }, noPost: true });
  const reg = await startRegistry({ token: ts.registryConfig });
  try {
    const c = new RegistryClient(reg.host, { credentials: staticCredentials(reg.host, { kind: 'basic', username: 'bob', password: 'b0b' }), retry: FAST });
    await pushBlob(c, 'get/form');
    await c.close();
    const statuses = ts.log.map((r) => `${r.method} ${r.status}${r.user ? ` ${r.user}` : ''}`);
    assert.deepEqual(statuses.slice(0, 2), ['POST 404', 'GET 200 bob']);
  } finally {
    await reg.stop();
    await ts.stop();
  }
});

test('a token server answering 503 or resetting is retried', async () => {
  const ts = await startTokenServer({ anonymousPull: true });
  const tproxy = await startFaultProxy(new URL(ts.realm).origin);
  const reg = await startRegistry({ token: { ...ts.registryConfig, realm: `${tproxy.url}/token` } });
  try {
    const c = new RegistryClient(reg.host, { credentials: NONE, retry: { retries: 3, baseDelayMs: 5, maxDelayMs: 10 } });
    tproxy.inject({ kind: 'status', status: 503, match: { path: '/token' } });
    tproxy.inject({ kind: 'reset', match: { path: '/token' } });
    assert.equal(await c.headManifest('any/repo', 'latest'), undefined);
    assert.deepEqual(tproxy.log.map((r) => r.fault ?? r.status), ['status', 'reset', 200]);
    await c.close();
  } finally {
    await reg.stop();
    await tproxy.stop();
    await ts.stop();
  }
});

describe('htpasswd Basic auth with docker config.json', () => {
  let reg: RunningRegistry;
  before(async () => {
    reg = await startRegistry({ htpasswd: await htpasswdLine('carol', 'c4rol') });
  });
  after(async () => {
    await reg?.stop();
  });

  const withConfig = async (name: string, config: unknown, env: NodeJS.ProcessEnv = {}) => {
    const dir = join(work, name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'config.json'), JSON.stringify(config));
    return new RegistryClient(reg.host, { credentials: dockerConfigCredentials({ DOCKER_CONFIG: dir, PATH: process.env.PATH, ...env }), retry: FAST });
  };

  test('auths entry (base64 user:password) is used after the Basic challenge', async () => {
    const c = await withConfig('auths', { auths: { [reg.host]: { auth: Buffer.from('carol:c4rol').toString('base64') } } });
    const { digest, data } = await pushBlob(c, 'basic/repo');
    const blob = await RegistryBlob.open(c, 'basic/repo', { digest, size: data.length });
    assert.deepEqual(await blob.readRanges([{ offset: 0, length: 4 }, { offset: 100, length: 4 }]), [data.subarray(0, 4), data.subarray(100, 104)]);
    await c.close();
    // Legacy keys with a scheme are matched by host too.
    const legacy = await withConfig('legacy', { auths: { [`http://${reg.host}/v1/`]: { username: 'carol', password: 'c4rol' } } });
    await pushBlob(legacy, 'basic/repo');
    await legacy.close();
  });

  test('no credentials and wrong credentials are clear errors', async () => {
    const none = await withConfig('none', {});
    await assert.rejects(pushBlob(none, 'basic/repo'), /authentication required \(Basic realm "starling-test"\) and no credentials are configured/);
    await none.close();
    const wrong = await withConfig('wrong', { auths: { [reg.host]: { username: 'carol', password: 'nope' } } });
    await assert.rejects(pushBlob(wrong, 'basic/repo'), (err: Error) => err instanceof RegistryAuthError && err.message.includes(`registry ${reg.host}, repository basic/repo`) && /HTTP 401/.test(err.message));
    await wrong.close();
  });

  test('credHelpers and credsStore run docker-credential-* with the server on stdin', async () => {
    const bin = join(work, 'bin');
    await mkdir(bin, { recursive: true });
    const helper = join(bin, 'docker-credential-startest');
    await writeFile(
      helper,
      `#!/bin/sh\n[ "$1" = get ] || exit 2\nread server\nif [ "$server" = "${reg.host}" ]; then printf '{"ServerURL":"%s","Username":"carol","Secret":"c4rol"}' "$server"; else echo "credentials not found in native keychain"; exit 1; fi\n`,
    );
    await chmod(helper, 0o755);
    const env = { PATH: `${bin}:${process.env.PATH}` };
    const perHost = await withConfig('helpers', { credHelpers: { [reg.host]: 'startest' }, auths: { [reg.host]: { username: 'carol', password: 'wrong' } } }, env);
    await pushBlob(perHost, 'basic/helper');
    await perHost.close();
    const store = await withConfig('store', { credsStore: 'startest' }, env);
    await pushBlob(store, 'basic/helper');
    await store.close();
    assert.equal(await dockerConfigCredentials({ DOCKER_CONFIG: join(work, 'store'), ...env }).get('other.example:5000'), undefined);
  });

  test('DOCKER_AUTH_CONFIG wins over the config file', async () => {
    const c = await withConfig('envwins', { auths: { [reg.host]: { username: 'carol', password: 'wrong' } } }, {
      DOCKER_AUTH_CONFIG: JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('carol:c4rol').toString('base64') } } }),
    });
    await pushBlob(c, 'basic/env');
    await c.close();
  });
});
