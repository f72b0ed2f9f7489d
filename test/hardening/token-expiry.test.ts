// A token that expires while mounted: Distribution with token auth (test/helpers/token-server.ts)
// behind the fault proxy, an eStargz image mounted by the daemon with credentials. Mid-mount the
// registry refuses the token (401 with a Bearer challenge, as it does once a token has expired), and
// tokens issued from then on live only one second: reads re-authenticate and get the right bytes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { childDigest, startMountEnv, testFiles, type MountEnv } from './mount-env.js';
import { sha256 } from '../../src/oci/digest.js';

let env: MountEnv;
let mnt: string;

before(async () => {
  env = await startMountEnv({ files: testFiles(8, 200_000), images: { img: 'estargz' }, proxy: true, token: true });
  mnt = join(env.work, 'mnt');
  await env.mount(env.ref('img'), mnt, '--cache-dir', join(env.work, 'cache'), '--no-prefetch', '--no-background-fetch', '--fuse-timeout', '60');
});

after(async () => {
  await env?.cleanup();
});

/**
 * The i-th file read by these tests: every other one in the blob, so that each read has to fetch (a
 * read's neighbourhood window may hold the start of the next file, never the one after).
 */
const file = (i: number) => `data/f${String(2 * i).padStart(3, '0')}.bin`;

test('the registry refuses the mount\'s token mid-mount: the read re-authenticates and succeeds', async () => {
  assert.equal(await childDigest(join(mnt, file(0))), sha256(env.files.get(file(0))!));
  const before = env.tokens!.log.length;
  const ts = env.tokens!;
  env.proxy!.inject({
    kind: 'status',
    status: 401,
    headers: { 'www-authenticate': `Bearer realm="${ts.realm}",service="${ts.service}",scope="repository:test/img:pull",error="invalid_token"` },
    match: { method: 'GET', path: '/blobs/sha256:', range: true },
  });
  assert.equal(await childDigest(join(mnt, file(1))), sha256(env.files.get(file(1))!));
  assert.equal(env.proxy!.pending(), 0, 'the 401 was served');
  assert.ok(env.tokens!.log.length > before, 'a new token was fetched');
});

test('short-lived tokens expire between reads: later reads still succeed', async () => {
  env.tokens!.setExpiresIn(1);
  // Get a short-lived token in use, then let it expire (the registry's own clock check has leeway,
  // so the client must renew on its side or on the registry's 401).
  const ts = env.tokens!;
  env.proxy!.inject({
    kind: 'status',
    status: 401,
    headers: { 'www-authenticate': `Bearer realm="${ts.realm}",service="${ts.service}",scope="repository:test/img:pull",error="invalid_token"` },
    match: { method: 'GET', path: '/blobs/sha256:', range: true },
  });
  assert.equal(await childDigest(join(mnt, file(2))), sha256(env.files.get(file(2))!));
  await new Promise((r) => setTimeout(r, 2500));
  const before = env.tokens!.log.length;
  assert.equal(await childDigest(join(mnt, file(3))), sha256(env.files.get(file(3))!));
  assert.ok(env.tokens!.log.length > before, 'the expired token was renewed');
});
