// Remote (lazy) snapshots under a real containerd + runc, a real Distribution and FUSE:
// `ctr-remote image rpull` of eStargz and zstd:chunked images mounts their layers lazily (one mount
// daemon per image) and containerd's content store gets only manifest and config; `ctr run` runs on
// them and writes only into its upper dir; a plain gzip layer and a layer whose TOC does not verify
// are unpacked by containerd instead; restarting the service (cleanly, kill -9) while a container
// reads leaves the container running; a dead image daemon is started again before the service
// serves, or at the next container's Mounts when it died under a running service; CRI's labels mount lazily too; removing the image leaves no mount and no directory.
// The daemons get `--background-quiet 600`: "fetched only metadata and TOCs" must not race the fill.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { LOAD_AFTER_MS } from '../../src/mount/machine-idle.js';
import { listMounts } from '../../src/mount/stale.js';
import type { StatsReport } from '../../src/mount/image-mount.js';
import { sha256, type Digest } from '../../src/oci/digest.js';
import { snapshotsService } from '../../src/snapshotter/service.js';
import { buildImage } from '../fixtures/image.js';
import { startContainerd, type RunningContainerd } from '../helpers/containerd.js';
import { getImage, pushBadToc, pushMixed } from '../helpers/mixed-image.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { busyboxTar } from './helpers/busybox.js';
import { snapshotRows, snapshotRowsAfterRestart, startService, type RunningService } from './helpers/service.js';
import { cleanupOnSignal } from '../helpers/signal-cleanup.js';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../fs/helpers/starling.ts', import.meta.url));
const MESSAGE = 'hello from layer 1\n';
const REMOTE = 'containerd.io/snapshot/remote';

let work: string;
let registry: RunningRegistry | undefined;
let containerd: RunningContainerd | undefined;
let service: RunningService | undefined;
let env: NodeJS.ProcessEnv;

const root = () => join(work, 'snapshotter');
const socket = () => join(work, 'snapshotter.sock');
const ref = (tag: string) => `${registry!.host}/test/app:${tag}`;
const snapshots = () => snapshotRows(containerd!);
const starling = (...args: string[]) => run(process.execPath, ['--import', 'tsx', CLI, ...args], { env, timeout: 120_000 });

async function start(): Promise<void> {
  service = await startService(socket(), root(), ['--config', join(work, 'snapshotter.json')], env);
}

/** Chain IDs of an image's layers, bottom first: the names its layers are committed under. */
async function chainOf(tag: string): Promise<Digest[]> {
  const { config } = await getImage(registry!, 'test/app', tag);
  const chain: Digest[] = [];
  for (const d of config.rootfs.diff_ids) chain.push(chain.length === 0 ? d : sha256(`${chain[chain.length - 1]} ${d}`));
  return chain;
}

const labelsOf = async (name: string) => (JSON.parse(await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'info', name)) as { Labels?: Record<string, string> }).Labels ?? {};

/** The image daemons' mount directories (ROOT/images/ * /mnt). */
const imageDirs = async () => (await readdir(join(root(), 'images')).catch(() => [] as string[])).map((d) => join(root(), 'images', d, 'mnt'));

/** `starling stats --snapshotter ROOT --json`: one report per image daemon. */
const daemonStats = async () => JSON.parse((await starling('stats', '--snapshotter', root(), '--json')).stdout) as StatsReport[];

/**
 * Pids of this test's unused spare mount daemons: `starling mount --spare` with this test's run
 * directory, less the image daemons (a used spare keeps its command line).
 */
async function spares(servingPids?: number[]): Promise<number[]> {
  const serving = new Set(servingPids ?? (await daemonStats()).map((s) => s.pid));
  const pids: number[] = [];
  for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmd.split('\0').includes('--spare')) continue;
    const environ = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
    if (environ.split('\0').includes(`STARLING_RUN_DIR=${env.STARLING_RUN_DIR}`) && !serving.has(Number(pid))) pids.push(Number(pid));
  }
  return pids;
}

const starlingMounts = async () => (await listMounts()).filter((m) => m.mountpoint.startsWith(`${work}/`) && m.fstype === 'fuse.starling');
/**
 * Waits (20 s at most) until the image daemon the service last started has mounted its layers and
 * the service has logged it: a layer's Prepare is answered once its TOC verified, before the mounts.
 */
async function imageMounted(): Promise<void> {
  const logged = () => service!.log().split('\n').filter((l) => /layers lazy, mounted by/.test(l)).length;
  const before = logged();
  for (const deadline = Date.now() + 20_000; logged() === before && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
}

/** Removes the image; afterwards no snapshot, no snapshot or image directory and no mount is left. */
async function removeImage(tag: string): Promise<void> {
  await containerd!.ctr('image', 'rm', '--sync', ref(tag));
  assert.deepEqual(await snapshots(), []);
  assert.deepEqual(await readdir(join(root(), 'snapshots')), []);
  assert.deepEqual(await readdir(join(root(), 'images')).catch(() => []), []);
  assert.deepEqual(await starlingMounts(), []);
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'starling-remote-'));
  cleanupOnSignal(work); // after() does not run on a signal
  env = { ...process.env, STARLING_RUN_DIR: join(work, 'run') };
  // busybox, a layer with one file, a layer of more files.
  const busybox = await busyboxTar(work);
  const data: Record<string, string> = {};
  for (let i = 0; i < 40; i++) data[`data/f${i}.txt`] = `file ${i} `.repeat(200 + i);
  const src = join(work, 'oci');
  // etc/gone of layer 1 is whited out by layer 2.
  await buildImage(src, { layers: [{ tar: busybox }, { files: { 'etc/msg': MESSAGE, 'etc/gone': 'x' } }, { files: { ...data, 'etc/.wh.gone': '' } }] }, 'v1');

  registry = await startRegistry();
  await starling('convert', `oci:${src}:v1`, `docker://${ref('esgz')}`, '--format', 'estargz');
  await starling('convert', `oci:${src}:v1`, `docker://${ref('zstd')}`, '--format', 'zstd:chunked');
  await pushMixed(registry, src, 'test/app', 'esgz');
  await pushBadToc(registry, 'test/app', 'esgz', 'badtoc', 1);
  await writeFile(join(work, 'snapshotter.json'), JSON.stringify({ mountOptions: ['--background-quiet', '600'] }));
  await start();
  await mkdir(join(work, 'containerd'));
  containerd = await startContainerd(join(work, 'containerd'), socket());
});

after(async () => {
  await containerd?.stop().catch((err: Error) => process.stderr.write(`containerd stop: ${err.message}\n`));
  await service?.stop('SIGTERM').catch(() => {});
  // Whatever image daemons a failed test left: stopped, their mounts detached.
  for (const mnt of await imageDirs().catch(() => [])) await starling('umount', '--force', mnt).catch(() => {});
  if (work) await rm(work, { recursive: true, force: true });
  await registry?.stop().catch(() => {});
});

test('ctr-remote rpull of an eStargz image: every layer mounted lazily, only manifest and config in the content store, only TOCs fetched', { timeout: 180_000 }, async () => {
  // A busy loop per core, as a container starting on the image would keep the machine busy.
  const busy = Array.from({ length: availableParallelism() }, () => spawn(process.execPath, ['-e', 'for (;;);'], { stdio: 'ignore' }));
  try {
    const mounted = imageMounted();
    await containerd!.ctrRemote('image', 'rpull', '--plain-http', '--snapshotter', 'starling', ref('esgz'));
    await mounted;
    await new Promise((r) => setTimeout(r, 3000));
    assert.deepEqual(await spares(), [], 'no new spare loads while the machine is busy');
  } finally {
    for (const b of busy) b.kill('SIGKILL');
  }
  const chain = await chainOf('esgz');
  assert.deepEqual((await snapshots()).map((r) => [r[0], r[2]]), chain.map((c) => [c, 'Committed']).sort((a, b) => a[0]!.localeCompare(b[0]!)));
  for (const c of chain) assert.equal((await labelsOf(c))[REMOTE], 'remote snapshot', `${c} is a remote snapshot`);

  const { m } = await getImage(registry!, 'test/app', 'esgz');
  const content = await containerd!.ctr('content', 'ls', '--quiet');
  assert.ok(content.includes(m.config.digest), 'the config is in the content store');
  for (const l of m.layers) assert.ok(!content.includes(l.digest), `layer ${l.digest} is not in the content store`);

  const stats = await daemonStats();
  assert.equal(stats.length, 1, 'one daemon for the image');
  const s = stats[0]!;
  assert.equal(s.mode, 'layers');
  assert.deepEqual(s.layers.map((l) => [l.digest, l.lazy]), m.layers.map((l) => [l.digest, true]));
  for (const l of s.layers) {
    assert.ok(l.requests <= 2, `layer ${l.digest}: footer and TOC only (${l.requests} requests)`);
    assert.equal(l.background.done, 0);
  }
  assert.equal(s.totals.servedBytes, 0, 'nothing read yet');
  assert.deepEqual((await starlingMounts()).map((m) => m.mountpoint).sort(), ['0', '1', '2', 'merged'].map((n) => join(s.mountpoint, n)), 'one FUSE mount per layer, and the three merged');
  assert.match(service!.log(), /3 of 3 layers lazy, mounted by a spare daemon/, 'the daemon was started ahead, with the service');
  // The spare waits at nice 10; put to work, every thread of it runs at 0 again.
  const nice = async (pid: number) => {
    const tids = await readdir(`/proc/${pid}/task`);
    return Promise.all(tids.map(async (t) => Number((await readFile(`/proc/${pid}/task/${t}/stat`, 'utf8')).replace(/^.*\) /s, '').split(' ')[16])));
  };
  assert.deepEqual(new Set(await nice(s.pid)), new Set([0]), 'the image daemon runs at normal priority');
  // Once the machine is idle (or after LOAD_AFTER_MS on one that stays busy).
  // Polled without `starling stats` (a Node process each time would keep the machine busy).
  const serving = [s.pid];
  for (const deadline = Date.now() + LOAD_AFTER_MS + 10_000; (await spares(serving)).length === 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 250));
  const [next] = await spares();
  assert.ok(next !== undefined, 'a new spare is started once the image is mounted and the machine idle');
  assert.deepEqual(new Set(await nice(next)), new Set([10]), 'the new spare waits at low priority');
});

test('ctr run on the lazy layers prints the right output; the container writes into its upper dir only', { timeout: 180_000 }, async () => {
  // The whiteout is checked first and decides the exit status (a file showing through fails the
  // run itself); END tells a cut output from a wrong one.
  const out = await containerd!.ctr('run', '--snapshotter', 'starling', '--rm', ref('esgz'), 'lazy-rm', '/bin/sh', '-c', 'if test -e /etc/gone; then echo "/etc/gone is there"; exit 3; fi; cat /etc/msg; cat /data/f7.txt | busybox wc -c; echo END');
  assert.equal(out, `${MESSAGE}${'file 7 '.length * 207}\nEND\n`, service!.log());

  await containerd!.ctr('run', '--snapshotter', 'starling', ref('esgz'), 'lazy-keep', '/bin/sh', '-c', 'echo written > /etc/new; echo changed > /etc/msg');
  const active = (await snapshots()).filter((r) => r[2] === 'Active');
  assert.equal(active.length, 1);
  const mountCmd = await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'mounts', '/mnt', active[0]![0]!);
  const upper = /upperdir=([^,\s]+)/.exec(mountCmd)?.[1] ?? '';
  const lowers = (/lowerdir=([^,\s]+)/.exec(mountCmd)?.[1] ?? '').split(':');
  const { mountpoint } = (await daemonStats())[0]!;
  assert.deepEqual(lowers, [join(mountpoint, 'merged')], "the lower dir is the image's layers merged, one mount");
  assert.equal(await readFile(join(upper, 'etc/new'), 'utf8'), 'written\n');
  assert.equal(await readFile(join(upper, 'etc/msg'), 'utf8'), 'changed\n');
  assert.equal(await readFile(join(mountpoint, '1', 'etc/msg'), 'utf8'), MESSAGE, 'the layer itself is unchanged');
  assert.equal(await readFile(join(lowers[0]!, 'etc/msg'), 'utf8'), MESSAGE, 'the merged layers too');
  for (const l of ['0', '1', '2', 'merged']) assert.ok(!existsSync(join(mountpoint, l, 'etc/new')));
  // A snapshot over part of the image stacks that part's own layer mounts.
  const chain = await chainOf('esgz');
  const partial = await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'prepare', '--mounts', 'partial', chain[1]!);
  assert.deepEqual((/lowerdir=([^,"\s]+)/.exec(partial)?.[1] ?? '').split(':'), [join(mountpoint, '1'), join(mountpoint, '0')]);
  await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'rm', 'partial').catch(() => {});
  // A view of the whole image is a read-only bind of its merged mount. (As the View answers it:
  // containerd's garbage collection may take the unleased view away before a later command.)
  const whole = JSON.parse(await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'view', '--mounts', 'whole', chain[2]!)) as unknown;
  assert.deepEqual(whole, [{ Type: 'bind', Source: join(mountpoint, 'merged'), Options: ['ro', 'rbind'] }]);
  await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'rm', 'whole').catch(() => {});
  // The removed container's directory goes at containerd's next Cleanup, which its garbage collection calls after `--rm` (asynchronously).
  let dirs = await readdir(join(root(), 'snapshots'));
  for (let i = 0; i < 200 && dirs.length > 1; i++) dirs = await new Promise((r) => setTimeout(r, 50)).then(() => readdir(join(root(), 'snapshots')));
  assert.equal(dirs.length, 1, 'the container snapshot is the only directory under snapshots/');
  await containerd!.ctr('container', 'rm', 'lazy-keep');
  const served = (await daemonStats())[0]!.totals.servedBytes;
  assert.ok(served > 0, 'the files came from the lazy mounts');
});

test('restarting the service, cleanly or after kill -9, while a container reads: it goes on, snapshots unchanged', { timeout: 180_000 }, async () => {
  const pidsBefore = (await daemonStats()).map((s) => s.pid);
  const before = await snapshots();
  // Reads a lazily served file for ~6 s, failing if any read fails.
  const reader = containerd!.ctr('run', '--snapshotter', 'starling', '--rm', ref('esgz'), 'lazy-reader', '/bin/sh', '-c', 'for i in $(busybox seq 1 60); do cat /data/f$((i % 40)).txt > /dev/null || exit 3; busybox usleep 100000; done; cat /etc/msg');
  await new Promise((r) => setTimeout(r, 1500));
  await service!.stop('SIGTERM');
  await start();
  const spareOfKilled = await spares();
  assert.equal(spareOfKilled.length, 1, 'the service keeps one spare daemon');
  await service!.stop('SIGKILL');
  await start();
  assert.equal(await reader, MESSAGE, 'the container ran to its end');
  // The killed service's unused spare went with it; the new service has its own.
  const serving = pidsBefore;
  for (const deadline = Date.now() + 10_000; (await spares(serving)).some((p) => spareOfKilled.includes(p)) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 100));
  const now = await spares();
  assert.equal(now.length, 1);
  assert.ok(!spareOfKilled.includes(now[0]!));
  assert.deepEqual(await snapshotRowsAfterRestart(containerd!), before);
  assert.deepEqual((await daemonStats()).map((s) => s.pid), pidsBefore, 'the image daemon was adopted, not started again');
});

test('a dead image daemon is started again, on the same paths, before the restarted service serves', { timeout: 180_000 }, async () => {
  const [s] = await daemonStats();
  await service!.stop('SIGTERM');
  process.kill(s!.pid, 'SIGKILL');
  await start();
  assert.match(service!.log(), /daemon gone, starting it again/);
  const [again] = await daemonStats();
  assert.notEqual(again!.pid, s!.pid);
  assert.equal(again!.manifest, s!.manifest, 'pinned to the manifest it served');
  assert.equal((await starlingMounts()).length, 4, 'every layer mounted again, and the merged one; no stale mount left');
  await snapshotRowsAfterRestart(containerd!); // containerd connected to the new service again
  const out = await containerd!.ctr('run', '--snapshotter', 'starling', '--rm', ref('esgz'), 'lazy-again', '/bin/sh', '-c', 'cat /etc/msg');
  assert.equal(out, MESSAGE);
});

test("an image daemon killed while the service runs is started again by the next container's Mounts, on the same paths; the container runs", { timeout: 180_000 }, async () => {
  const revived = () => service!.log().split('\n').filter((l) => /daemon gone, starting it again/.test(l)).length;
  const before = revived();
  const [s] = await daemonStats();
  process.kill(s!.pid, 'SIGKILL');
  for (let i = 0; i < 100 && existsSync(`/proc/${s!.pid}`); i++) await new Promise((r) => setTimeout(r, 50));
  // Killed outright, it leaves its FUSE mounts listed (and dead): the container must not get them.
  assert.equal((await starlingMounts()).length, 4);
  const out = await containerd!.ctr('run', '--snapshotter', 'starling', '--rm', ref('esgz'), 'lazy-revived', '/bin/sh', '-c', 'cat /etc/msg');
  assert.equal(out, MESSAGE);
  assert.equal(revived(), before + 1, service!.log());
  const [again] = await daemonStats();
  assert.notEqual(again!.pid, s!.pid);
  assert.equal(again!.manifest, s!.manifest, 'pinned to the manifest it served');
  assert.equal((await starlingMounts()).length, 4, 'every layer mounted again, and the merged one; no stale mount left');
});

test("an image daemon killed that cannot be started again (its image.json gone): the container's Prepare is UNAVAILABLE, never an overlay over the dead mounts, and leaves no snapshot", { timeout: 180_000 }, async () => {
  const [s] = await daemonStats();
  const listed = await snapshots();
  const dirs = await readdir(join(root(), 'snapshots'));
  process.kill(s!.pid, 'SIGKILL');
  for (let i = 0; i < 100 && existsSync(`/proc/${s!.pid}`); i++) await new Promise((r) => setTimeout(r, 50));
  await rm(join(dirname(s!.mountpoint), 'image.json'));
  assert.equal((await starlingMounts()).length, 4, 'the dead mounts are still listed');
  await assert.rejects(containerd!.ctr('run', '--snapshotter', 'starling', '--rm', ref('esgz'), 'lazy-dead', '/bin/sh', '-c', 'cat /etc/msg'), /remote layers are not mounted/);
  assert.match(service!.log(), /no image\.json, cannot start its daemon again/);
  await containerd!.ctr('containers', 'rm', 'lazy-dead').catch(() => {});
  assert.deepEqual(await snapshots(), listed);
  assert.deepEqual(await readdir(join(root(), 'snapshots')), dirs, 'the failed Prepare left no snapshot directory');
});

test('removing the image leaves no snapshot, no directory and no mount', { timeout: 180_000 }, async () => {
  await removeImage('esgz');
});

test('a zstd:chunked image runs from lazy layers', { timeout: 180_000 }, async () => {
  await containerd!.ctrRemote('image', 'rpull', '--plain-http', '--snapshotter', 'starling', ref('zstd'));
  for (const c of await chainOf('zstd')) assert.equal((await labelsOf(c))[REMOTE], 'remote snapshot');
  const out = await containerd!.ctr('run', '--snapshotter', 'starling', '--rm', ref('zstd'), 'zstd-run', '/bin/sh', '-c', 'cat /etc/msg; cat /data/f3.txt | busybox wc -c');
  assert.equal(out, `${MESSAGE}${'file 3 '.length * 203}\n`);
  assert.deepEqual((await daemonStats())[0]!.layers.map((l) => l.format), ['zstd:chunked', 'zstd:chunked', 'zstd:chunked']);
  // Its merged mount taken off by hand: a container stacks the layers' own mounts, and runs.
  const { mountpoint } = (await daemonStats())[0]!;
  await promisify(execFile)('umount', ['-l', join(mountpoint, 'merged')]);
  const mounts = await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'prepare', '--mounts', 'no-merged', (await chainOf('zstd'))[2]!);
  assert.deepEqual((/lowerdir=([^,"\s]+)/.exec(mounts)?.[1] ?? '').split(':'), ['2', '1', '0'].map((n) => join(mountpoint, n)));
  await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'rm', 'no-merged').catch(() => {});
  assert.equal(await containerd!.ctr('run', '--snapshotter', 'starling', '--rm', ref('zstd'), 'zstd-layers', '/bin/sh', '-c', 'cat /etc/msg'), MESSAGE);
  await removeImage('zstd');
});

test('a plain gzip layer is unpacked by containerd, the layers above are lazy; the container runs', { timeout: 180_000 }, async () => {
  await containerd!.ctrRemote('image', 'rpull', '--plain-http', '--snapshotter', 'starling', ref('mixed'));
  const chain = await chainOf('mixed');
  const kinds = [];
  for (const c of chain) kinds.push((await labelsOf(c))[REMOTE] ?? 'unpacked');
  assert.deepEqual(kinds, ['unpacked', 'remote snapshot', 'remote snapshot']);
  assert.match(service!.log(), /unpacked by containerd: not lazy/);
  const out = await containerd!.ctr('run', '--snapshotter', 'starling', '--rm', ref('mixed'), 'mixed-run', '/bin/sh', '-c', 'cat /etc/msg; test -e /etc/gone || echo gone');
  assert.equal(out, `${MESSAGE}gone\n`);
  // Not every layer lazy: no merged mount; a container stacks the unpacked layer and the two lazy ones.
  const { mountpoint } = (await daemonStats())[0]!;
  assert.deepEqual((await starlingMounts()).map((m) => m.mountpoint).sort(), [join(mountpoint, '1'), join(mountpoint, '2')]);
  await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'prepare', 'mixed-top', chain[2]!);
  const lowers = (/lowerdir=([^,\s]+)/.exec(await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'mounts', '/mnt', 'mixed-top'))?.[1] ?? '').split(':');
  assert.deepEqual(lowers.slice(0, 2), [join(mountpoint, '2'), join(mountpoint, '1')]);
  assert.ok(lowers[2]?.startsWith(join(root(), 'snapshots')), `${lowers[2]} is the unpacked layer's directory`);
  await containerd!.ctr('snapshots', '--snapshotter', 'starling', 'rm', 'mixed-top');
  await removeImage('mixed');
});

test('a layer whose TOC does not verify is not mounted lazily: containerd unpacks it and the container runs', { timeout: 180_000 }, async () => {
  await containerd!.ctrRemote('image', 'rpull', '--plain-http', '--snapshotter', 'starling', ref('badtoc'));
  const chain = await chainOf('badtoc');
  const kinds = [];
  for (const c of chain) kinds.push((await labelsOf(c))[REMOTE] ?? 'unpacked');
  assert.deepEqual(kinds, ['remote snapshot', 'unpacked', 'remote snapshot']);
  assert.match(service!.log(), /TOC was refused/);
  const out = await containerd!.ctr('run', '--snapshotter', 'starling', '--rm', ref('badtoc'), 'badtoc-run', '/bin/sh', '-c', 'cat /etc/msg');
  assert.equal(out, MESSAGE);
  await removeImage('badtoc');
});

test("CRI's labels (as the CRI plugin sends them, over gRPC) mount a layer lazily; Remove and Cleanup unmount it", { timeout: 180_000 }, async () => {
  const { m } = await getImage(registry!, 'test/app', 'esgz');
  const [c0] = await chainOf('esgz');
  const Client = snapshotsService();
  const client = new Client(`unix:${socket()}`, grpc.credentials.createInsecure());
  const call = <T>(method: string, req: object) =>
    new Promise<T>((resolve, reject) => (client as unknown as Record<string, (r: object, cb: (e: grpc.ServiceError | null, v: T) => void) => void>)[method]!(req, (e, v) => (e ? reject(e) : resolve(v))));
  try {
    const labels = {
      'containerd.io/snapshot.ref': c0!,
      'containerd.io/snapshot/cri.image-ref': ref('esgz'),
      'containerd.io/snapshot/cri.layer-digest': m.layers[0]!.digest,
      'containerd.io/snapshot/cri.image-layers': m.layers.map((l) => l.digest).join(','),
    };
    const mounted = imageMounted();
    await assert.rejects(call('Prepare', { key: `k8s.io/1/extract-1 ${c0}`, parent: '', labels }), (e: grpc.ServiceError) => e.code === grpc.status.ALREADY_EXISTS);
    await mounted;
    const { info } = await call<{ info: { kind: string; labels: Record<string, string> } }>('Stat', { key: c0 });
    assert.equal(info.kind, 'COMMITTED');
    assert.equal(info.labels[REMOTE], 'remote snapshot');
    assert.equal((await starlingMounts()).length, 4, "the image's daemon mounts its lazy layers, and all three merged");
    await call('Remove', { key: c0 });
    await call('Cleanup', {});
    assert.deepEqual(await starlingMounts(), []);
    assert.deepEqual(await readdir(join(root(), 'images')), []);
  } finally {
    client.close();
  }
});
