// Starling's snapshotter under a real containerd (Debian's, with its own config and the service as
// proxy plugin "starling"), real runc and a real Distribution: `ctr image pull` unpacks into our
// snapshots, `ctr run` runs a busybox image from them, the container's writes land in its active
// snapshot's upper dir, restarts (clean and kill -9) keep every snapshot, removing container and
// image leaves no snapshot, directory or mount, and `ctr-remote image rpull` (Prepares with the
// remote-snapshot labels) falls back to ordinary snapshots. Everything started is stopped in `after`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { listMounts } from '../../src/mount/stale.js';
import { sha256, type Digest } from '../../src/oci/digest.js';
import { buildImage } from '../fixtures/image.js';
import { startContainerd, type RunningContainerd } from '../helpers/containerd.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { busyboxTar } from './helpers/busybox.js';
import { snapshotRows, snapshotRowsAfterRestart, startService as startServiceAt, type RunningService } from './helpers/service.js';

const run = promisify(execFile);
const MESSAGE = 'hello from layer 1\n';

let work: string;
let registry: RunningRegistry | undefined;
let containerd: RunningContainerd | undefined;
let service: RunningService | undefined;
let image: string;
/** Chain IDs of the image's layers, bottom first: the names containerd commits them under. */
let chain: Digest[];

const root = () => join(work, 'snapshotter');
const socket = () => join(work, 'snapshotter.sock');

const snapshots = () => snapshotRows(containerd!);
const snapshotsAfterRestart = () => snapshotRowsAfterRestart(containerd!);
const runDir = () => join(work, 'run');
// The image daemons' run directories (the service's spare daemon's) go to the work dir, where the test sees them.
const startService = async () => void (service = await startServiceAt(socket(), root(), [], { ...process.env, STARLING_RUN_DIR: runDir() }));
const stopService = async (signal: NodeJS.Signals) => service?.stop(signal);

const snapshotDirs = () => readdir(join(root(), 'snapshots'));

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-containerd-'));
  // A busybox layer and a layer with one file above it.
  const busybox = await busyboxTar(work);
  const built = await buildImage(join(work, 'oci'), { layers: [{ tar: busybox }, { files: { 'etc/msg': MESSAGE } }] }, 'v1');
  const diffIDs = built.layers.map((l) => l.diffID);
  chain = [diffIDs[0]!, sha256(`${diffIDs[0]} ${diffIDs[1]}`)];

  registry = await startRegistry();
  image = `${registry.host}/test/busybox:v1`;
  await run('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${join(work, 'oci')}:v1`, `docker://${image}`]);
  await startService();
  await mkdir(join(work, 'containerd'));
  containerd = await startContainerd(join(work, 'containerd'), socket());
});

after(async () => {
  await containerd?.stop().catch((err: Error) => process.stderr.write(`containerd stop: ${err.message}\n`));
  await stopService('SIGTERM').catch(() => {});
  await registry?.stop().catch(() => {});
  if (work) await rm(work, { recursive: true, force: true });
});

test('ctr image pull unpacks every layer into Starling snapshots named by chain ID', { timeout: 120_000 }, async () => {
  await containerd!.ctr('image', 'pull', '--plain-http', '--snapshotter', 'starling', image);
  assert.deepEqual(
    await snapshots(),
    [
      [chain[0]!, '', 'Committed'],
      [chain[1]!, chain[0]!, 'Committed'],
    ].sort((a, b) => a[0]!.localeCompare(b[0]!)),
  );
  const dirs = await snapshotDirs();
  assert.equal(dirs.length, 2);
  const has = (path: string) => dirs.filter((d) => existsSync(join(root(), 'snapshots', d, 'fs', path)));
  assert.equal(has('bin/busybox').length, 1, 'the bottom layer is unpacked once');
  assert.equal(has('etc/msg').length, 1);
  assert.notDeepEqual(has('bin/busybox'), has('etc/msg'), 'each layer in its own snapshot');
});

test('ctr run runs the image from Starling snapshots; the container writes into its own upper dir only', { timeout: 120_000 }, async () => {
  const out = await containerd!.ctr('run', '--snapshotter', 'starling', '--rm', image, 'starling-rm', '/bin/sh', '-c', 'cat /etc/msg; /bin/busybox uname -s');
  assert.equal(out, `${MESSAGE}Linux\n`);

  await containerd!.ctr('run', '--snapshotter', 'starling', image, 'starling-keep', '/bin/sh', '-c', 'echo written > /etc/new; echo changed > /etc/msg');
  const rows = await snapshots();
  const active = rows.filter((r) => r[2] === 'Active');
  assert.equal(active.length, 1, JSON.stringify(rows));
  assert.equal(active[0]![1], chain[1], 'the container snapshot sits on the top layer');
  const mountCmd = await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'mounts', '/mnt', active[0]![0]!);
  const upper = /upperdir=([^,\s]+)/.exec(mountCmd)?.[1] ?? '';
  assert.ok(upper.startsWith(join(root(), 'snapshots')), mountCmd);
  assert.equal(await readFile(join(upper, 'etc/new'), 'utf8'), 'written\n');
  assert.equal(await readFile(join(upper, 'etc/msg'), 'utf8'), 'changed\n');
  for (const d of await snapshotDirs()) {
    const fs = join(root(), 'snapshots', d, 'fs');
    if (fs === upper) continue;
    assert.ok(!existsSync(join(fs, 'etc/new')), `${d} untouched`);
    if (existsSync(join(fs, 'etc/msg'))) assert.equal(await readFile(join(fs, 'etc/msg'), 'utf8'), MESSAGE);
  }
  await containerd!.ctr('container', 'rm', 'starling-keep');
  assert.deepEqual((await snapshots()).filter((r) => r[2] !== 'Committed'), []);
});

test('restarting the service, cleanly or after kill -9, keeps every snapshot', { timeout: 120_000 }, async () => {
  // A container's active snapshot too, not only committed layers.
  await containerd!.ctr('container', 'create', '--snapshotter', 'starling', image, 'starling-kept', '/bin/sh');
  const before = await snapshots();
  assert.equal(before.length, 3);
  await stopService('SIGTERM');
  await startService();
  assert.deepEqual(await snapshotsAfterRestart(), before);
  await stopService('SIGKILL');
  await startService();
  assert.deepEqual(await snapshotsAfterRestart(), before);
  // The killed service's spare daemon, orphaned, removed its run directory; the new service's has one.
  for (let i = 0; (await readdir(runDir()).catch(() => [])).length > 1; i++) {
    assert.ok(i < 50, `run directories left: ${(await readdir(runDir())).join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const out = await containerd!.ctr('run', '--snapshotter', 'starling', '--rm', image, 'starling-after', '/bin/sh', '-c', 'cat /etc/msg');
  assert.equal(out, MESSAGE);
  await containerd!.ctr('container', 'rm', 'starling-kept');
});

test('removing the containers and the image leaves no snapshot, no directory and no mount', { timeout: 120_000 }, async () => {
  await containerd!.ctr('image', 'rm', '--sync', image);
  assert.deepEqual(await snapshots(), []);
  assert.deepEqual(await snapshotDirs(), []);
  const mounts = (await listMounts()).filter((m) => m.mountpoint.startsWith(`${work}/`) || m.source.startsWith(`${work}/`));
  assert.deepEqual(mounts, []);
});

test('ctr-remote image rpull: Starling answers with an ordinary snapshot, containerd unpacks and commits it', { timeout: 120_000 }, async () => {
  await containerd!.ctrRemote('image', 'rpull', '--plain-http', '--snapshotter', 'starling', image);
  assert.deepEqual((await snapshots()).map((r) => r[0]).sort(), [...chain].sort());
  const info = JSON.parse(await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'info', chain[1]!)) as { Labels?: Record<string, string> };
  assert.equal(info.Labels?.['containerd.io/snapshot/remote/stargz.reference'], image, 'the Prepare carried the remote-snapshot labels');
  const out = await containerd!.ctr('run', '--snapshotter', 'starling', '--rm', image, 'starling-rpull', '/bin/sh', '-c', 'cat /etc/msg');
  assert.equal(out, MESSAGE);
  await containerd!.ctr('image', 'rm', '--sync', image);
  assert.deepEqual(await snapshots(), []);
  assert.deepEqual(await snapshotDirs(), []);
});
