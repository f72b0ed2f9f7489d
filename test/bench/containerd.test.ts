// The start-up benchmark's containerd modes (bench/startup/containerd.ts), on a small busybox image
// pushed to a real Distribution behind the relay: stargz-snapshotter's snapshotter program
// (bench/stargz-snapshotter, built by scripts/build-interop.sh) serves containerd's snapshots API
// and mounts a layer lazily on a Prepare with ctr-remote's labels; each containerd mode starts its
// containerd (and snapshotter), pulls, runs the workload with `ctr run`, passes its check (lazy
// layers not in the content store and mounted lazily; all layers there for the full pull), and
// leaves no mount, process, cgroup or directory behind; a lazy mode's check refuses an image that
// was unpacked instead. Counts and structure only, never timings.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { startEmulatedRegistry, type EmulatedRegistry } from '../../bench/net/link.js';
import { runTool } from '../../bench/startup/build.js';
import { ensureContainerdTools, STARGZ_SNAPSHOTTER_BIN, stageContainerd } from '../../bench/startup/containerd.js';
import type { ContainerdMode } from '../../bench/startup/containerd-modes.js';
import type { Engine } from '../../bench/startup/engine.js';
import { convertImage } from '../../src/convert/image.js';
import { lazyUnmount, listMounts } from '../../src/mount/stale.js';
import { sha256 } from '../../src/oci/digest.js';
import { OciLayoutDestination, OciLayoutSource } from '../../src/oci/layout.js';
import { snapshotsService } from '../../src/snapshotter/service.js';
import { buildImage } from '../fixtures/image.js';
import { getImage } from '../helpers/mixed-image.js';
import { busyboxTar } from '../snapshotter/helpers/busybox.js';

const MESSAGE = 'hello from the top layer';
const WORKLOAD = { cmd: ['/bin/sh', '-c', 'cat /etc/msg; cat /data/f3.txt | busybox wc -c; echo ready'], readyLine: 'ready' };
const CLI = fileURLToPath(new URL('../fs/helpers/starling.ts', import.meta.url));
/** Starling from src/ under tsx, as the benchmark runs its compiled snapshot. */
const engine: Engine = { argv: [process.execPath, '--import', 'tsx', CLI], version: 'test', convertKey: '' };

let reg: EmulatedRegistry;
let work: string;
/** Blob bytes of the eStargz image's layers. */
let esgzBytes: number;

const ref = (tag: string) => `${reg.host}/t/app:${tag}`;
const mountsUnder = async (dir: string) => (await listMounts()).map((m) => m.mountpoint).filter((p) => p.startsWith(`${dir}/`));

/** Pids of processes whose command line or environment names `dir` (containerd, shims, snapshotters, mount daemons). */
async function processesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)) {
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ');
    const env = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
    if (cmd.includes(dir) || env.includes(`=${dir}`)) found.push(`${pid} ${cmd}`);
  }
  return found;
}

before(async () => {
  await access(STARGZ_SNAPSHOTTER_BIN).catch(() => assert.fail(`${STARGZ_SNAPSHOTTER_BIN} is missing: run scripts/build-interop.sh`));
  await ensureContainerdTools(['containerd-full', 'containerd-starling', 'containerd-stargz']);
  work = await mkdtemp(join(tmpdir(), 'starling-ctrd-bench-'));
  const data: Record<string, string> = {};
  for (let i = 0; i < 20; i++) data[`data/f${i}.txt`] = `file ${i} `.repeat(2000 + i);
  await buildImage(join(work, 'gzip'), { layers: [{ tar: await busyboxTar(work) }, { files: { 'etc/msg': `${MESSAGE}\n` } }, { files: data }] }, 'v1');
  const summary = await convertImage(await OciLayoutSource.open(join(work, 'gzip'), 'v1'), await OciLayoutDestination.open(join(work, 'esgz'), 'v1'), { format: 'estargz', platforms: 'all' });
  esgzBytes = summary.bytesOut;
  reg = await startEmulatedRegistry({ rttMs: 2, rateMbit: 1000 });
  for (const [layout, tag] of [['gzip', 'gzip'], ['esgz', 'estargz']] as const) {
    await runTool('skopeo', ['copy', '-q', '--preserve-digests', '--dest-tls-verify=false', `oci:${join(work, layout)}:v1`, `docker://${reg.directHost}/t/app:${tag}`]);
  }
});

after(async () => {
  for (const m of (await mountsUnder(work)).reverse()) await lazyUnmount(m).catch(() => {});
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

test('the stargz-snapshotter program serves the snapshots API: a Prepare with ctr-remote labels mounts the layer lazily and answers ALREADY_EXISTS', { timeout: 120_000 }, async () => {
  const dir = join(work, 'plugin');
  await mkdir(dir);
  const socket = join(dir, 'sn.sock');
  const root = join(dir, 'root');
  const child = spawn(STARGZ_SNAPSHOTTER_BIN, ['-address', socket, '-root', root], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = once(child, 'exit');
  const Client = snapshotsService();
  let client: grpc.Client | undefined;
  try {
    for (const deadline = Date.now() + 30_000; !log.includes('"msg":"serving"'); await new Promise((r) => setTimeout(r, 50))) {
      assert.ok(Date.now() < deadline && child.exitCode === null, `the program did not serve: ${log}`);
    }
    client = new Client(`unix:${socket}`, grpc.credentials.createInsecure());
    const call = <T>(method: string, req: object) =>
      new Promise<T>((resolve, reject) => (client as unknown as Record<string, (r: object, cb: (e: grpc.ServiceError | null, v: T) => void) => void>)[method]!(req, (e, v) => (e ? reject(e) : resolve(v))));

    const { m, config } = await getImage(reg.registry, 't/app', 'estargz');
    const diffIDs = config.rootfs.diff_ids;
    const chain = [diffIDs[0]!, sha256(`${diffIDs[0]} ${diffIDs[1]}`)];
    const before = await reg.relay.counters();
    // Layers 0 and 1 as `ctr-remote image rpull` prepares them (shared/spec/containerd-snapshotter.md).
    for (const i of [0, 1]) {
      const labels = {
        'containerd.io/snapshot.ref': chain[i]!,
        'containerd.io/snapshot/remote/stargz.reference': ref('estargz'),
        'containerd.io/snapshot/remote/stargz.digest': m.layers[i]!.digest,
        'containerd.io/snapshot/remote/stargz.layers': m.layers.slice(i).map((l) => l.digest).join(','),
        'containerd.io/snapshot/remote/stargz.prefetch': '10485760',
        'containerd.io/snapshot/stargz/toc.digest': m.layers[i]!.annotations!['containerd.io/snapshot/stargz/toc.digest']!,
      };
      await assert.rejects(call('Prepare', { key: `default/${i + 1}/extract-${i} ${chain[i]}`, parent: i === 0 ? '' : chain[0], labels }), (e: grpc.ServiceError) => e.code === grpc.status.ALREADY_EXISTS);
      const { info } = await call<{ info: { kind: string; parent: string; labels: Record<string, string> } }>('Stat', { key: chain[i] });
      assert.equal(info.kind, 'COMMITTED');
      assert.equal(info.parent, i === 0 ? '' : chain[0]);
      assert.ok('containerd.io/snapshot/remote' in info.labels, 'committed as a remote snapshot');
    }
    assert.equal(log.split('\n').filter((l) => l.includes('preparing filesystem mount at mountpoint=')).length, 2, log);
    const fuse = (await listMounts()).filter((mt) => mt.mountpoint.startsWith(`${root}/`));
    assert.deepEqual(fuse.map((mt) => mt.fstype), ['fuse.rawBridge', 'fuse.rawBridge']);
    // The layer's files are served from the mount, fetched lazily.
    const msgs = await Promise.all(fuse.map((mt) => readFile(join(mt.mountpoint, 'etc/msg'), 'utf8').catch(() => undefined)));
    assert.deepEqual(msgs.filter(Boolean), [`${MESSAGE}\n`]);
    const fetched = (await reg.relay.counters()).bytesDown - before.bytesDown;
    assert.ok(fetched < esgzBytes, `fetched ${fetched} bytes of the image's ${esgzBytes}`);
    // A container's Prepare above them: an overlay of both layers.
    const { mounts } = await call<{ mounts: Array<{ type: string; options: string[] }> }>('Prepare', { key: 'default/3/c1', parent: chain[1], labels: {} });
    assert.equal(mounts[0]!.type, 'overlay');
    assert.equal(mounts[0]!.options.find((o) => o.startsWith('lowerdir='))!.split(':').length, 2);

    client.close();
    client = undefined;
    child.kill('SIGINT');
    const [code] = await exited;
    assert.equal(code, 0, log);
    assert.deepEqual(await mountsUnder(root), [], 'SIGINT closes the snapshotter: every layer unmounted');
  } finally {
    client?.close();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

for (const mode of ['containerd-full', 'containerd-starling', 'containerd-stargz'] as const satisfies readonly ContainerdMode[]) {
  test(`${mode}: containerd and its snapshotter started apart, pull, ctr run to the ready line, the check passes, nothing left`, { timeout: 240_000 }, async () => {
    const sample = join(work, mode);
    const logDir = join(work, 'logs', mode);
    await mkdir(sample);
    const tag = mode === 'containerd-full' ? 'gzip' : 'estargz';
    const staged = await stageContainerd(mode, { engine, ref: ref(tag), work: sample, logDir, id: `c-${mode}` });
    let cleaned = false;
    try {
      const c0 = await reg.relay.counters();
      const pulled = await staged.pull();
      const c1 = await reg.relay.counters();
      const res = await pulled.run(WORKLOAD);
      assert.equal(res.exitCode, 0, res.stderr);
      assert.equal(res.stdout, `${MESSAGE}\n${'file 3 '.length * 2003}\nready\n`);
      assert.ok(res.readyMs !== undefined);
      const c2 = await reg.relay.counters();
      await pulled.check();
      const pullBytes = c1.bytesDown - c0.bytesDown;
      assert.ok(c1.getRequests > c0.getRequests, 'the pull went through the relay');
      if (mode === 'containerd-full') assert.equal(c2.getRequests, c1.getRequests, 'the run of a full pull fetches nothing');
      else {
        assert.ok(pullBytes < esgzBytes / 2, `${mode}: the pull fetched ${pullBytes} bytes of ${esgzBytes}`);
        assert.ok(c2.getRequests > c1.getRequests, `${mode}: the run fetched the files it read`);
      }
      await pulled.cleanup();
      cleaned = true;
    } finally {
      if (!cleaned) await staged.cleanup();
    }
    assert.deepEqual(await mountsUnder(sample), []);
    await assert.rejects(access(sample), 'the sample directory is removed');
    assert.deepEqual(await processesUnder(sample), []);
    for (const ctl of await readdir('/sys/fs/cgroup')) await assert.rejects(access(join('/sys/fs/cgroup', ctl, `starling-bench-${process.pid}`)), `cgroup ${ctl} of the namespace removed`);
    const logs = await readdir(logDir);
    assert.ok(logs.includes('containerd.log'));
    assert.ok(!logs.includes('leftovers.txt'), `cleanup had to remove: ${await readFile(join(logDir, 'leftovers.txt'), 'utf8').catch(() => '')}`);
    if (mode === 'containerd-starling') {
      assert.ok(logs.includes('starling.log') && logs.includes('starling-stats.json'));
      const stats = JSON.parse(await readFile(join(logDir, 'starling-stats.json'), 'utf8')) as Array<{ layers: Array<{ lazy: boolean }> }>;
      assert.deepEqual(stats.flatMap((s) => s.layers.map((l) => l.lazy)), [true, true, true]);
      const daemonLogs = await Promise.all(logs.filter((f) => f.startsWith('daemon-')).map((f) => readFile(join(logDir, f), 'utf8')));
      assert.equal(daemonLogs.filter((l) => /layer \d: TOC at/.test(l)).length, 1, "the image daemon's log is kept");
    }
    if (mode === 'containerd-stargz') assert.match(await readFile(join(logDir, 'stargz.log'), 'utf8'), /preparing filesystem mount at mountpoint=/);
  });
}

test("a lazy mode's check refuses an image whose layers were unpacked: containerd-starling on the gzip image", { timeout: 240_000 }, async () => {
  const sample = join(work, 'unpacked');
  await mkdir(sample);
  const staged = await stageContainerd('containerd-starling', { engine, ref: ref('gzip'), work: sample, id: 'c-unpacked' });
  const pulled = await staged.pull().catch(async (err: Error) => (await staged.cleanup(), assert.fail(err)));
  try {
    assert.equal((await pulled.run(WORKLOAD)).exitCode, 0);
    await assert.rejects(pulled.check(), /3 of 3 layers were downloaded into containerd's content store: not a lazy pull/);
  } finally {
    await pulled.cleanup();
  }
  assert.deepEqual(await mountsUnder(sample), []);
  assert.deepEqual(await processesUnder(sample), []);
});
