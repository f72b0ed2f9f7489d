// Connections dialled ahead (RegistryClient.preconnect) against a real Distribution, through a TCP
// relay that counts the connections the client opens: requests sent after a preconnect use the
// connections it dialled; one the server has closed meanwhile is not used; unused ones close with
// the client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OciLayoutSource } from '../../src/oci/layout.js';
import { RegistryClient } from '../../src/registry/client.js';
import { openRegistryDestination } from '../../src/registry/image.js';
import { buildImage } from '../fixtures/image.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { copyImage } from './copy.js';

let reg: RunningRegistry;
let work: string;

/** A TCP relay to the registry that keeps the client-side sockets it accepted. */
interface Relay {
  host: string;
  accepted: Socket[];
  server: Server;
}

async function startRelay(target: string): Promise<Relay> {
  const [host, port] = target.split(':');
  const accepted: Socket[] = [];
  const server = createServer((client) => {
    accepted.push(client);
    const upstream = connect({ host: host!, port: Number(port) });
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { host: `127.0.0.1:${(server.address() as { port: number }).port}`, accepted, server };
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check(), what);
}

const open = (r: Relay) => r.accepted.filter((s) => !s.destroyed).length;

before(async () => {
  reg = await startRegistry();
  work = await mkdtemp(join(tmpdir(), 'starling-preconnect-'));
  await buildImage(join(work, 'layout'), { layers: [{ files: { 'etc/hello': 'hello\n' } }] }, 'v1');
  await copyImage(await OciLayoutSource.open(join(work, 'layout'), 'v1'), await openRegistryDestination(`${reg.host}/pre/app:v1`));
});

after(async () => {
  await reg?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

test('requests sent after a preconnect go over the connections it dialled; unused ones close with the client', { timeout: 60_000 }, async () => {
  const relay = await startRelay(reg.host);
  const client = new RegistryClient(relay.host, { plainHttp: true });
  let closed = false;
  try {
    client.preconnect(4);
    await until('four connections dialled ahead', () => relay.accepted.length === 4);
    const manifests = await Promise.all([1, 2, 3].map(() => client.getManifest('pre/app', 'v1')));
    assert.equal(new Set(manifests.map((m) => m.digest)).size, 1);
    assert.equal(relay.accepted.length, 4, 'no connection opened besides those dialled ahead');
    closed = true;
    await client.close();
    await until('every connection closed, the unused one included', () => open(relay) === 0);
  } finally {
    if (!closed) await client.close();
    relay.server.close();
  }
});

test('a connection dialled ahead that the server closed meanwhile is not used', { timeout: 60_000 }, async () => {
  const relay = await startRelay(reg.host);
  // No retries: a request handed a closed connection would fail instead of being sent again.
  const client = new RegistryClient(relay.host, { plainHttp: true, retry: { retries: 0 } });
  try {
    client.preconnect(2);
    await until('two connections dialled ahead', () => relay.accepted.length === 2);
    for (const s of relay.accepted) s.destroy();
    await new Promise((r) => setTimeout(r, 100)); // the client sees them closed
    const m = await client.getManifest('pre/app', 'v1');
    assert.match(m.digest, /^sha256:/);
    assert.equal(relay.accepted.length, 3, 'one new connection, none of the closed ones tried');
  } finally {
    await client.close();
    relay.server.close();
  }
});
