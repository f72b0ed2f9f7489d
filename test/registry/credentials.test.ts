// docker config.json lookup: key matching (Docker Hub aliases, legacy URL keys), entry forms, errors.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dockerConfigCredentials } from '../../src/registry/credentials.js';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-creds-'));
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

async function store(name: string, config: unknown) {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return dockerConfigCredentials({ DOCKER_CONFIG: dir });
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

test('entries: auth (password may hold colons; trailing NULs trimmed), username/password, identitytoken, registrytoken', async () => {
  const s = await store('forms', {
    auths: {
      'https://index.docker.io/v1/': { auth: b64('hubuser:pa:ss\0\0') },
      'a.example': { username: 'u', password: 'p' },
      'b.example:5000': { auth: b64('u:'), identitytoken: 'refresh-xyz' },
      'c.example': { registrytoken: 'bearer-abc' },
      'https://legacy.example/v1/': { auth: b64('old:pw') },
      'empty.example': {},
    },
  });
  for (const hub of ['docker.io', 'registry-1.docker.io', 'index.docker.io']) assert.deepEqual(await s.get(hub), { kind: 'basic', username: 'hubuser', password: 'pa:ss' }, hub);
  assert.deepEqual(await s.get('a.example'), { kind: 'basic', username: 'u', password: 'p' });
  assert.deepEqual(await s.get('b.example:5000'), { kind: 'identity', token: 'refresh-xyz', username: 'u' });
  assert.deepEqual(await s.get('c.example'), { kind: 'bearer', token: 'bearer-abc' });
  assert.deepEqual(await s.get('legacy.example'), { kind: 'basic', username: 'old', password: 'pw' });
  assert.equal(await s.get('empty.example'), undefined);
  assert.equal(await s.get('unknown.example'), undefined);
  assert.equal(await s.get('b.example'), undefined); // the port is part of the key
});

test('no config file means no credentials; a broken one is an error naming the file', async () => {
  assert.equal(await dockerConfigCredentials({ DOCKER_CONFIG: join(work, 'nowhere') }).get('a.example'), undefined);
  await assert.rejects((await store('broken', '{not json')).get('a.example'), new RegExp(`${join(work, 'broken', 'config.json').replace(/\//g, '\\/')}: `));
  await assert.rejects((await store('badauth', { auths: { 'x.example': { auth: b64('no-colon') } } })).get('x.example'), /auths entry for x\.example: "auth" does not decode to user:password/);
  await assert.rejects(dockerConfigCredentials({ DOCKER_AUTH_CONFIG: '[]' }).get('x'), /DOCKER_AUTH_CONFIG: not a JSON object/);
});

test('a credential helper that is not installed is a clear error', async () => {
  const s = await store('nohelper', { credsStore: 'does-not-exist-anywhere' });
  await assert.rejects(s.get('a.example'), /credential helper docker-credential-does-not-exist-anywhere: .*ENOENT/);
});
