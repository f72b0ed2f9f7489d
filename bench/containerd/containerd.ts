// A real containerd (Debian's) of our own, for the containerd tests (test/helpers/containerd.ts)
// and the start-up benchmark's containerd modes (bench/startup/containerd.ts): its own config, root,
// state and gRPC/ttrpc sockets under `dir`, proxy snapshotter plugins by name, `ctr` and
// `ctr-remote` run against it in one namespace. `stop()` kills what was left running (tasks, their
// shims), stops containerd, detaches every mount below `dir` and removes the namespace's cgroups,
// even after a failure.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { lazyUnmount, listMounts } from '../../src/mount/stale.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ContainerdOptions {
  /** Proxy plugins of type "snapshot": name → the unix socket its service listens on. */
  snapshotters?: Record<string, string>;
  namespace: string;
  /** Plugins not to load (e.g. `io.containerd.grpc.v1.cri`: nothing here uses Kubernetes' CRI). */
  disabledPlugins?: string[];
  /** How long a `ctr` command may take (default 120 s). */
  ctrTimeoutMs?: number;
}

export interface RunningContainerd {
  address: string;
  namespace: string;
  /** Runs `ctr` against this containerd; rejects with its stderr on failure. */
  ctr(...args: string[]): Promise<string>;
  /** The same with stargz-snapshotter's `ctr-remote` (ctr plus `image rpull`). */
  ctrRemote(...args: string[]): Promise<string>;
  /** The arguments that point `ctr` or `ctr-remote` at this containerd, for callers that spawn it themselves. */
  clientArgs: string[];
  /** Where containerd keeps a task's bundle (its rootfs is mounted there). */
  stateDir: string;
  /** containerd's root (content store, its own snapshotters' directories). */
  rootDir: string;
  /** What containerd wrote to stderr lately (its log, the last 20 kB). */
  log(): string;
  stop(): Promise<void>;
}

function config(dir: string, address: string, opts: ContainerdOptions): string {
  const lines = ['version = 2', `root = "${join(dir, 'root')}"`, `state = "${join(dir, 'state')}"`];
  if (opts.disabledPlugins?.length) lines.push(`disabled_plugins = [${opts.disabledPlugins.map((p) => JSON.stringify(p)).join(', ')}]`);
  lines.push('[grpc]', `  address = "${address}"`, '[ttrpc]', `  address = "${address}.ttrpc"`);
  for (const [name, socket] of Object.entries(opts.snapshotters ?? {})) lines.push(`[proxy_plugins.${name}]`, '  type = "snapshot"', `  address = "${socket}"`);
  return `${lines.join('\n')}\n`;
}

/** Removes the namespace's cgroups (runc removes each container's, not the namespace's; v1: one per controller). */
async function removeCgroups(namespace: string): Promise<void> {
  const bases = ['/sys/fs/cgroup', ...(await readdir('/sys/fs/cgroup').catch(() => [] as string[])).map((c) => join('/sys/fs/cgroup', c))];
  for (const base of bases) {
    const dir = join(base, namespace);
    const children = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const c of children) if (c.isDirectory()) await rmdir(join(dir, c.name)).catch(() => {});
    await rmdir(dir).catch(() => {});
  }
}

/** Starts containerd with its config in `dir` (which must exist) and waits until it answers. */
export async function startContainerd(dir: string, opts: ContainerdOptions): Promise<RunningContainerd> {
  const address = join(dir, 'containerd.sock');
  // A unix socket path has at most 107 bytes; the ttrpc one is the longest.
  if (Buffer.byteLength(`${address}.ttrpc`) > 107) throw new Error(`containerd's socket path would be too long: ${address}.ttrpc`);
  const stateDir = join(dir, 'state');
  const { namespace } = opts;
  await writeFile(join(dir, 'config.toml'), config(dir, address, opts));
  const child: ChildProcess = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
  const clientArgs = ['--address', address, '--namespace', namespace];
  const client = (binary: string) => async (...args: string[]) => {
    try {
      return (await run(binary, [...clientArgs, ...args], { timeout: opts.ctrTimeoutMs ?? 120_000, maxBuffer: 16 << 20 })).stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`${binary} ${args.join(' ')}: ${e.stderr || e.message}`);
    }
  };
  const ctr = client('ctr');
  const stop = async () => {
    // Tasks first (their shims outlive containerd otherwise), then containerd, then mounts.
    const taskDir = join(stateDir, 'io.containerd.runtime.v2.task', namespace);
    for (const id of await readdir(taskDir).catch(() => [] as string[])) {
      await ctr('task', 'kill', '--signal', 'SIGKILL', id).catch(() => {});
      await ctr('task', 'rm', '--force', id).catch(() => {});
      const shim = Number(await readFile(join(taskDir, id, 'shim.pid'), 'utf8').catch(() => ''));
      if (shim > 0) {
        try {
          process.kill(shim, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      if (!(await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]))) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    const below = `${dir}/`;
    for (const m of (await listMounts()).reverse()) if (m.mountpoint.startsWith(below)) await lazyUnmount(m.mountpoint).catch(() => {});
    await removeCgroups(namespace);
  };
  for (const deadline = Date.now() + 20_000; ; ) {
    if (child.exitCode !== null) throw new Error(`containerd exited (${child.exitCode}): ${log}`);
    if (await ctr('version').then(() => true, () => false)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`containerd did not start: ${log}`);
    }
    await sleep(200);
  }
  return { address, namespace, ctr, ctrRemote: client('ctr-remote'), clientArgs, stateDir, rootDir: join(dir, 'root'), log: () => log, stop };
}
