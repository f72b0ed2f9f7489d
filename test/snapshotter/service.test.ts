// The snapshots gRPC service against its own client (our .proto): ordinary snapshots with the
// mounts containerd's overlayfs snapshotter returns, the status codes containerd reads, labels,
// List filters, Cleanup, and metadata that survives a restart. No containerd here (containerd.test.ts).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { serveSnapshots, snapshotsService, type SnapshotService } from '../../src/snapshotter/service.js';
import { Snapshotter } from '../../src/snapshotter/snapshotter.js';

interface Mount {
  type: string;
  source: string;
  options: string[];
}
interface Info {
  name: string;
  parent: string;
  kind: string;
  labels: Record<string, string>;
  created_at: { seconds: number; nanos: number };
  updated_at: { seconds: number; nanos: number };
}

let work: string;
let root: string;
let socket: string;
let sn: Snapshotter;
let service: SnapshotService;
let client: grpc.Client;

async function start(): Promise<void> {
  sn = await Snapshotter.open(root);
  service = await serveSnapshots(sn, socket);
  client = new (snapshotsService())(`unix:${socket}`, grpc.credentials.createInsecure());
}

async function stop(): Promise<void> {
  client?.close();
  await service?.close();
  await sn?.close();
}

function call<T>(method: string, request: object): Promise<T> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (r: object, cb: (e: grpc.ServiceError | null, v: T) => void) => void>)[method]!(request, (err, value) => (err ? reject(err) : resolve(value)));
  });
}

function list(...filters: string[]): Promise<Info[]> {
  return new Promise((resolve, reject) => {
    const infos: Info[] = [];
    const stream = (client as unknown as Record<string, (r: object) => grpc.ClientReadableStream<{ info: Info[] }>>).List!({ filters });
    stream.on('data', (d: { info: Info[] }) => infos.push(...d.info));
    stream.on('error', reject);
    stream.on('end', () => resolve(infos));
  });
}

const prepare = async (key: string, parent = '', labels: Record<string, string> = {}) => (await call<{ mounts: Mount[] }>('Prepare', { key, parent, labels })).mounts;
const view = async (key: string, parent = '') => (await call<{ mounts: Mount[] }>('View', { key, parent })).mounts;
const commit = (name: string, key: string, labels: Record<string, string> = {}) => call('Commit', { name, key, labels });

async function rejectsWith(p: Promise<unknown>, code: grpc.status, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: grpc.ServiceError) => {
    assert.equal(err.code, code, `${grpc.status[err.code]}: ${err.details}`);
    assert.match(err.details, re);
    return true;
  });
}

const dirs = () => readdir(join(root, 'snapshots')).then((d) => d.sort());
const snapshotDir = (m: Mount) => m.source.replace(/\/fs$/, '');

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-snapshots-'));
  root = join(work, 'root');
  socket = join(work, 'snapshots.sock');
  // The image daemons' run directories (a spare's included) go here, not to /run/starling.
  process.env.STARLING_RUN_DIR = join(work, 'run');
  await start();
});

after(async () => {
  await stop();
  await rm(work, { recursive: true, force: true });
});

test('ordinary snapshots: a bind mount without parents, overlay above, views read-only; directories by id, not by key', { timeout: 30_000 }, async () => {
  const key = 'default/1/extract-1 sha256:aaa';
  const [bottom] = await prepare(key);
  assert.equal(bottom!.type, 'bind');
  assert.deepEqual(bottom!.options, ['rw', 'rbind']);
  assert.match(bottom!.source, new RegExp(`^${root}/snapshots/\\d+/fs$`));
  await writeFile(join(bottom!.source, 'hello'), 'x'.repeat(10_000));
  await commit('sha256:aaa', key, { 'containerd.io/snapshot.ref': 'sha256:aaa', empty: '' });

  const base = await call<{ info: Info }>('Stat', { key: 'sha256:aaa' });
  assert.equal(base.info.kind, 'COMMITTED');
  assert.deepEqual(base.info.labels, { 'containerd.io/snapshot.ref': 'sha256:aaa' }, 'empty label values are not stored');
  const usage = await call<{ size: number; inodes: number }>('Usage', { key: 'sha256:aaa' });
  assert.equal(usage.inodes, 2);
  assert.ok(usage.size >= 10_000, `usage ${usage.size}`);

  const [upper] = await prepare('default/2/c1', 'sha256:aaa');
  assert.equal(upper!.type, 'overlay');
  const id = snapshotDir({ ...upper!, source: upper!.options.find((o) => o.startsWith('upperdir='))!.slice(9) });
  assert.deepEqual(
    upper!.options.filter((o) => !o.startsWith('index=')),
    [`workdir=${id}/work`, `upperdir=${id}/fs`, `lowerdir=${bottom!.source}`],
  );
  assert.deepEqual((await call<{ mounts: Mount[] }>('Mounts', { key: 'default/2/c1' })).mounts, [upper]);
  assert.equal((await stat(`${id}/work`)).mode & 0o777, 0o711);

  const [ro] = await view('default/3/v1', 'sha256:aaa');
  assert.deepEqual(ro, { type: 'bind', source: bottom!.source, target: '', options: ['ro', 'rbind'] });
  assert.equal((await dirs()).length, 3);
  assert.equal((await list()).length, 3);
});

test('bad requests get the status containerd expects and change nothing', { timeout: 30_000 }, async () => {
  const before = await list();
  const dirsBefore = await dirs();
  await rejectsWith(prepare('default/2/c1', 'sha256:aaa'), grpc.status.ALREADY_EXISTS, /already exists/);
  await rejectsWith(prepare('k', 'sha256:missing'), grpc.status.NOT_FOUND, /parent snapshot sha256:missing does not exist/);
  await rejectsWith(prepare('k', 'default/2/c1'), grpc.status.INVALID_ARGUMENT, /not a committed snapshot/);
  await rejectsWith(prepare(''), grpc.status.INVALID_ARGUMENT, /must not be empty/);
  await rejectsWith(prepare('k', '', { big: 'v'.repeat(5000) }), grpc.status.INVALID_ARGUMENT, /maximum size/);
  await rejectsWith(commit('sha256:aaa', 'default/2/c1'), grpc.status.ALREADY_EXISTS, /already exists/);
  await rejectsWith(commit('new', 'default/3/v1'), grpc.status.FAILED_PRECONDITION, /not active/);
  await rejectsWith(commit('new', 'nope'), grpc.status.NOT_FOUND, /does not exist/);
  await rejectsWith(call('Mounts', { key: 'sha256:aaa' }), grpc.status.FAILED_PRECONDITION, /committed/);
  await rejectsWith(call('Remove', { key: 'sha256:aaa' }), grpc.status.FAILED_PRECONDITION, /with child/);
  await rejectsWith(call('Stat', { key: 'nope' }), grpc.status.NOT_FOUND, /does not exist/);
  await rejectsWith(call('Update', { info: { name: 'sha256:aaa', parent: 'x' }, update_mask: { paths: ['parent'] } }), grpc.status.INVALID_ARGUMENT, /cannot update "parent"/);
  await rejectsWith(list('kind=='), grpc.status.INVALID_ARGUMENT, /parse error/);
  assert.deepEqual(await list(), before);
  assert.deepEqual(await dirs(), dirsBefore);
});

test('Update sets and removes labels; List filters as containerd sends them', { timeout: 30_000 }, async () => {
  const updated = await call<{ info: Info }>('Update', { info: { name: 'sha256:aaa', labels: { a: '1', b: '2' } }, update_mask: { paths: ['labels.a', 'labels.containerd.io/snapshot.ref'] } });
  assert.deepEqual(updated.info.labels, { a: '1' }, 'labels.KEY with no value removes that label; b was not in the mask');
  const all = await call<{ info: Info }>('Update', { info: { name: 'sha256:aaa', labels: { 'containerd.io/snapshot.ref': 'sha256:aaa' } } });
  assert.deepEqual(all.info.labels, { 'containerd.io/snapshot.ref': 'sha256:aaa' }, 'no mask: every label replaced');

  const names = async (...f: string[]) => (await list(...f)).map((i) => i.name).sort();
  assert.deepEqual(await names('labels."containerd.io/snapshot.ref"==sha256:aaa,parent==""'), ['sha256:aaa']);
  assert.deepEqual(await names('labels."containerd.io/snapshot.ref"==sha256:aaa,parent=="sha256:zzz"'), []);
  assert.deepEqual(await names('kind==active', 'kind==view'), ['default/2/c1', 'default/3/v1']);
  assert.deepEqual(await names('parent==sha256:aaa,name~=c1$'), ['default/2/c1']);
});

test('Remove drops the metadata at once and Cleanup the directories no snapshot owns', { timeout: 30_000 }, async () => {
  const [m] = await view('default/4/v2', 'sha256:aaa');
  assert.ok(m);
  const viewDir = (await dirs()).at(-1)!;
  await call('Remove', { key: 'default/4/v2' });
  await rejectsWith(call('Stat', { key: 'default/4/v2' }), grpc.status.NOT_FOUND, /does not exist/);
  assert.ok((await dirs()).includes(viewDir), 'directories go at Cleanup, as with containerd’s overlayfs');
  await mkdir(join(root, 'snapshots', 'new-123456', 'fs'), { recursive: true }); // an interrupted Prepare
  await call('Cleanup', {});
  assert.ok(!(await dirs()).includes(viewDir));
  assert.ok(!existsSync(join(root, 'snapshots', 'new-123456')));
  assert.equal((await dirs()).length, 3);

  // A Cleanup while a Prepare is under way leaves its temporary directory alone.
  const preparing = sn.prepare('default/9/racing', 'sha256:aaa', {});
  while (!readdirSync(join(root, 'snapshots')).some((d) => d.startsWith('new-'))) await new Promise((r) => setImmediate(r));
  await sn.cleanup();
  const [racing] = await preparing;
  assert.ok(existsSync(racing!.options.find((o) => o.startsWith('upperdir='))!.slice('upperdir='.length)));
  await call('Remove', { key: 'default/9/racing' });
  await call('Cleanup', {});
  assert.equal((await dirs()).length, 3);
});

test('metadata survives a restart unchanged; a second service on the same root is refused', { timeout: 30_000 }, async () => {
  const before = await list();
  await stop();
  assert.deepEqual(await readdir(join(work, 'run')).catch(() => []), [], "closing removes its spare daemon's run directory");
  await start();
  await assert.rejects(Snapshotter.open(root), /in use by another snapshotter service/, 'also before the first write');
  assert.deepEqual(await list(), before);
  const [m] = await prepare('default/5/c2', 'sha256:aaa');
  assert.ok(!(await dirs()).includes('4'), 'ids are never reused');
  assert.equal(m!.type, 'overlay');
});
