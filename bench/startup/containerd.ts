// The start-up benchmark's containerd modes (issue 14): the image pulled and run by a real
// containerd (Debian's 1.6, its own root, state and sockets in the sample's directory) and runc,
// as a node would:
//   containerd-full      `ctr image pull` of the gzip image into containerd's overlayfs snapshotter,
//                        then `ctr run`;
//   containerd-starling  `ctr-remote image rpull --snapshotter starling` of the eStargz image, then
//                        `ctr run --snapshotter starling`: `starling snapshotter` with its defaults
//                        (no config) as containerd's proxy plugin;
//   containerd-stargz    the same with stargz-snapshotter's own snapshotter as the proxy plugin
//                        (bench/stargz-snapshotter, upstream's default config).
// Every sample starts containerd and its snapshotter afresh with empty roots and caches; that start
// is not timed (a node has them running): the pull is, then the run until the workload's ready line
// (`ctr run --rm IMAGE ID CMD…`: the image's Env and WorkingDir, the same command as the chroot
// modes). After the run, untimed, the sample is checked: the lazy modes' layers must not be in
// containerd's content store and every layer must have been mounted lazily (Starling: `starling
// stats --snapshotter`; stargz: its log), the full mode's must all be there. Then everything goes:
// the image (`ctr image rm --sync`: the snapshotters unmount their layers), tasks and shims,
// containerd, the snapshotter, Starling's mount daemons, the namespace's cgroups; a mount or a
// process still there after that is recorded in the sample's log directory, removed by force, and
// a mount that cannot be removed stops the run. The services' logs, Starling's stats and its mount
// daemons' logs are kept in the log directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { appendFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { WorkloadResult } from '../../src/cli/_workload.js';
import { lazyUnmount, listMounts } from '../../src/mount/stale.js';
import { imageMountpoints } from '../../src/snapshotter/image-daemons.js';
import { startContainerd, type RunningContainerd } from '../containerd/containerd.js';
import { exists, runTool } from './build.js';
import { isContainerdMode, type ContainerdMode } from './containerd-modes.js';
import { starling, type Engine } from './engine.js';
import type { Workload } from './images.js';
import { PACKAGE_ROOT } from './root.js';

/** stargz-snapshotter's snapshotter as a program (bench/stargz-snapshotter, built by scripts/build-interop.sh). */
export const STARGZ_SNAPSHOTTER_BIN = join(PACKAGE_ROOT, '.interop-bin/stargz-snapshotter');

/** The proxy plugin name each mode pulls and runs with (containerd's own overlayfs for full). */
const SNAPSHOTTER: Record<ContainerdMode, string> = { 'containerd-full': 'overlayfs', 'containerd-starling': 'starling', 'containerd-stargz': 'stargz' };

/** Kubernetes' CRI plugin is not loaded: nothing here uses it, and it only adds work to a loaded machine. */
const DISABLED_PLUGINS = ['io.containerd.grpc.v1.cri'];

const RUN_TIMEOUT_MS = 10 * 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Checks that what `modes` need is installed (containerd, runc, ctr-remote) and, in a checkout,
 * builds the stargz-snapshotter program; an installed package must have it in place already.
 */
export async function ensureContainerdTools(modes: readonly string[]): Promise<void> {
  const used = modes.filter(isContainerdMode);
  if (used.length === 0) return;
  const tools = ['containerd', 'containerd-shim-runc-v2', 'runc', 'ctr', ...(used.some((m) => m !== 'containerd-full') ? ['ctr-remote'] : [])];
  const missing: string[] = [];
  for (const t of tools) if (!(await runTool('sh', ['-c', `command -v ${t}`]).then(() => true, () => false))) missing.push(t);
  if (missing.length) throw new Error(`the containerd modes need ${missing.join(', ')} (Debian: containerd, runc, stargz-snapshotter; scripts/setup.sh installs them)`);
  if (!used.includes('containerd-stargz')) return;
  const script = join(PACKAGE_ROOT, 'scripts/build-interop.sh');
  if (await exists(script)) await runTool(script, []);
  else if (!(await exists(STARGZ_SNAPSHOTTER_BIN))) {
    throw new Error(
      `the containerd-stargz mode needs stargz-snapshotter's snapshotter as a program at ${STARGZ_SNAPSHOTTER_BIN}, which an installed package does not include: ` +
        'build it in a checkout of Starling with scripts/build-interop.sh and copy its .interop-bin/stargz-snapshotter there, or leave containerd-stargz out of --modes',
    );
  }
}

export interface ContainerdContext {
  engine: Engine;
  /** `HOST:PORT/REPO:TAG` through the emulated link. */
  ref: string;
  /** An empty directory of this sample (removed at cleanup). */
  work: string;
  /** Where the sample's logs are kept (services, containerd, Starling's stats, what cleanup found). */
  logDir?: string;
  /** A name for the container. */
  id: string;
}

/** A containerd mode with its services running: the timed pull, then the timed run. */
export interface StagedContainerd {
  pull(): Promise<PulledContainerd>;
  cleanup(): Promise<void>;
}

export interface PulledContainerd {
  /** `ctr run --rm` of the workload: readyMs from the start of `ctr run` to the ready line. */
  run(workload: Workload): Promise<WorkloadResult>;
  /** Untimed, after a run: throws if the mode did not pull the way it claims (lazily, or fully). */
  check(): Promise<void>;
  cleanup(): Promise<void>;
}

/** A snapshotter service run as a child process, with its log. */
interface ServiceProcess {
  child: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

function startProcess(argv: string[], env: NodeJS.ProcessEnv, ready: RegExp, stopSignal: NodeJS.Signals, what: string): Promise<ServiceProcess> {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env });
  let log = '';
  // The whole log is kept (a sample's is small); it goes to the log directory at cleanup.
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = once(child, 'exit');
  const service: ServiceProcess = {
    child,
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(stopSignal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => void service.stop().then(() => reject(new Error(`${what} did not start within 60 s: ${log.slice(-2000)}`))), 60_000);
    const onData = () => {
      if (!ready.test(log)) return;
      clearTimeout(timer);
      child.stderr!.off('data', onData);
      resolve(service);
    };
    child.stderr!.on('data', onData);
    void exited.then(([code, sig]) => (clearTimeout(timer), reject(new Error(`${what} exited (${code ?? sig}): ${log.slice(-2000)}`))));
  });
}

/** Pids of the processes whose environment has `STARLING_RUN_DIR=runDir` (Starling's mount daemons of this sample). */
async function daemonsOf(runDir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)) {
    const environ = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
    if (environ.split('\0').includes(`STARLING_RUN_DIR=${runDir}`)) pids.push(Number(pid));
  }
  return pids;
}

/** CPU ticks a process has used so far (undefined once gone). */
async function cpuTicks(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime
}

/**
 * Waits until the service's spare mount daemon has loaded and warmed up (its CPU time stops growing
 * for a second: at nice 10 it may get no CPU for a few hundred ms while the service starts): on a
 * node the service has been up long before a pull, so its first image does not wait for Node to start.
 */
async function spareSettled(runDir: string, serviceLog: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  let pids: number[] = [];
  while (pids.length === 0 && Date.now() < deadline) {
    pids = await daemonsOf(runDir);
    if (pids.length === 0) await sleep(50);
  }
  if (pids.length === 0) throw new Error(`starling snapshotter: no spare mount daemon within 20 s: ${serviceLog().slice(-2000)}`);
  let last: number | undefined;
  for (let still = 0; still < 10 && Date.now() < deadline; await sleep(100)) {
    const ticks = (await Promise.all(pids.map(cpuTicks))).reduce<number>((n, t) => n + (t ?? 0), 0);
    still = ticks === last ? still + 1 : 0;
    last = ticks;
  }
}

async function mountsUnder(dir: string): Promise<string[]> {
  return (await listMounts()).map((m) => m.mountpoint).filter((p) => p === dir || p.startsWith(`${dir}/`));
}

/** The layers of the image `ref` in containerd's content store: its manifest's layer digests. */
async function manifestLayers(containerd: RunningContainerd, ref: string): Promise<string[]> {
  const line = (await containerd.ctr('image', 'ls')).split('\n').find((l) => l.startsWith(`${ref} `));
  const digest = line?.split(/\s+/).find((f) => f.startsWith('sha256:'));
  if (!digest) throw new Error(`${ref} is not in containerd's image list`);
  const manifest = JSON.parse(await containerd.ctr('content', 'get', digest)) as { layers?: Array<{ digest: string }> };
  if (!manifest.layers) throw new Error(`${ref}: ${digest} is not an image manifest (an index?)`);
  return manifest.layers.map((l) => l.digest);
}

/** Runs `argv` (ctr run), timing to the ready line, as runInRootfs does for the chroot modes. */
function timedRun(argv: string[], readyLine: string, onChild: (c: ChildProcess) => void): Promise<WorkloadResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    onChild(child);
    let stdout = '';
    let stderr = '';
    let readyMs: number | undefined;
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (readyMs === undefined && stdout.split('\n').some((l) => l.includes(readyLine))) readyMs = performance.now() - t0;
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    child.once('close', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ exitCode, signal, stdout, stderr, readyMs, exitMs: performance.now() - t0 });
    });
  });
}

/**
 * Starts the mode's snapshotter (Starling's or stargz-snapshotter's; none for full) and a containerd
 * using it, untimed; the returned pull and run are what the harness times.
 */
export async function stageContainerd(mode: ContainerdMode, ctx: ContainerdContext): Promise<StagedContainerd> {
  const snapshotter = SNAPSHOTTER[mode];
  // Short names: containerd's ttrpc socket path must stay under 108 bytes.
  const cdir = join(ctx.work, 'c');
  const root = join(ctx.work, 'sn');
  const socket = join(ctx.work, 'sn.sock');
  const runDir = join(ctx.work, 'run');
  const env = { ...process.env, STARLING_RUN_DIR: runDir };
  const namespace = `starling-bench-${process.pid}`;
  let containerd: RunningContainerd | undefined;
  let service: ServiceProcess | undefined;
  let pulled = false;
  const note = async (file: string, text: string) => {
    if (!ctx.logDir) return;
    await mkdir(ctx.logDir, { recursive: true });
    await appendFile(join(ctx.logDir, file), text);
  };
  let cleaning: Promise<void> | undefined;
  const cleanup = () => (cleaning ??= (async () => {
    const found: string[] = [];
    try {
      // The image first: containerd's GC removes its snapshots and the snapshotter unmounts them.
      if (containerd && pulled) await containerd.ctr('image', 'rm', '--sync', ctx.ref).catch((err: Error) => found.push(`ctr image rm --sync: ${err.message.trim()}`));
      if (containerd) {
        await note('containerd.log', containerd.log());
        await containerd.stop();
      }
      if (service) {
        await service.stop();
        await note(`${snapshotter}.log`, service.log());
      }
      // What the snapshotters should have removed themselves: Starling's image daemons (they outlive
      // its service by design, until the image is removed), any mount below the sample's directory.
      if (mode === 'containerd-starling') {
        for (const mnt of await imageMountpoints(root).catch(() => [] as string[])) {
          found.push(`image daemon still serving ${mnt}`);
          await starling(ctx.engine, ['umount', '--force', mnt], { STARLING_RUN_DIR: runDir }).catch((err: Error) => found.push(`umount --force ${mnt}: ${err.message}`));
        }
        for (const pid of await daemonsOf(runDir)) {
          found.push(`mount daemon ${pid} still running: ${(await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ')}`);
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
      for (const m of (await mountsUnder(ctx.work)).reverse()) {
        found.push(`still mounted: ${m}`);
        await lazyUnmount(m).catch(() => {});
      }
    } finally {
      if (found.length) {
        process.stderr.write(`[containerd ${mode}] left after the sample, removed by force:\n  ${found.join('\n  ')}\n`);
        await note('leftovers.txt', `${found.join('\n')}\n`);
      }
    }
    for (let i = 0; i < 100 && (await mountsUnder(ctx.work)).length > 0; i++) await sleep(100);
    const left = await mountsUnder(ctx.work);
    if (left.length > 0) throw new Error(`still mounted after the sample: ${left.join(', ')}`);
    await rm(ctx.work, { recursive: true, force: true });
  })());

  try {
    if (ctx.logDir) await rm(ctx.logDir, { recursive: true, force: true });
    await mkdir(cdir, { recursive: true });
    if (mode === 'containerd-starling') {
      service = await startProcess([...ctx.engine.argv, 'snapshotter', '--address', socket, '--root', root], env, /serving on/, 'SIGTERM', 'starling snapshotter');
      await spareSettled(runDir, service.log);
    } else if (mode === 'containerd-stargz') {
      service = await startProcess([STARGZ_SNAPSHOTTER_BIN, '-address', socket, '-root', root], env, /"msg":"serving"/, 'SIGINT', 'stargz-snapshotter');
    }
    containerd = await startContainerd(cdir, { namespace, snapshotters: service ? { [snapshotter]: socket } : {}, disabledPlugins: DISABLED_PLUGINS, ctrTimeoutMs: RUN_TIMEOUT_MS });
    // containerd has dialled its snapshotter (a node's is connected long before a pull).
    await containerd.ctr('snapshots', '--snapshotter', snapshotter, 'ls');
  } catch (err) {
    await cleanup().catch(() => {});
    throw err;
  }
  const c = containerd;
  let runner: ChildProcess | undefined;

  const pulledImage: PulledContainerd = {
    run: (workload) => timedRun(['ctr', ...c.clientArgs, 'run', '--rm', '--snapshotter', snapshotter, ctx.ref, ctx.id, ...workload.cmd], workload.readyLine, (child) => (runner = child)),
    async check() {
      const layers = await manifestLayers(c, ctx.ref);
      const content = new Set((await c.ctr('content', 'ls', '--quiet')).split('\n').map((l) => l.trim()));
      const stored = layers.filter((l) => content.has(l));
      if (mode === 'containerd-full') {
        if (stored.length !== layers.length) throw new Error(`ctr image pull: ${layers.length - stored.length} of ${layers.length} layers are not in the content store`);
        return;
      }
      if (stored.length > 0) throw new Error(`${stored.length} of ${layers.length} layers were downloaded into containerd's content store: not a lazy pull`);
      if (mode === 'containerd-starling') {
        const stats = await starling(ctx.engine, ['stats', '--snapshotter', root, '--json'], { STARLING_RUN_DIR: runDir });
        await note('starling-stats.json', stats);
        // The mount daemons' logs (per layer: when its TOC came, how long indexing took) go with
        // their run directories when the image is removed.
        for (const d of await readdir(runDir).catch(() => [] as string[])) {
          const log = await readFile(join(runDir, d, 'daemon.log'), 'utf8').catch(() => undefined);
          if (log !== undefined) await note(`daemon-${d}.log`, log);
        }
        const reports = JSON.parse(stats) as Array<{ layers: Array<{ digest: string; lazy: boolean; reason?: string }> }>;
        const lazy = new Set(reports.flatMap((r) => r.layers.filter((l) => l.lazy).map((l) => l.digest)));
        const notLazy = layers.filter((l) => !lazy.has(l));
        if (notLazy.length) throw new Error(`starling snapshotter: ${notLazy.length} of ${layers.length} layers not mounted lazily (${reports.length} image daemons): ${service!.log().slice(-1000)}`);
      } else {
        const mounted = service!.log().split('\n').filter((l) => l.includes('preparing filesystem mount at mountpoint=')).length;
        if (mounted !== layers.length) throw new Error(`stargz-snapshotter mounted ${mounted} of ${layers.length} layers lazily: ${service!.log().slice(-1000)}`);
      }
    },
    async cleanup() {
      if (runner && runner.exitCode === null && runner.signalCode === null) runner.kill('SIGKILL');
      await cleanup();
    },
  };
  return {
    cleanup,
    async pull() {
      pulled = true;
      try {
        if (mode === 'containerd-full') await c.ctr('image', 'pull', '--plain-http', '--snapshotter', snapshotter, ctx.ref);
        else await c.ctrRemote('image', 'rpull', '--plain-http', '--snapshotter', snapshotter, ctx.ref);
      } catch (err) {
        await cleanup();
        throw err;
      }
      return pulledImage;
    },
  };
}
