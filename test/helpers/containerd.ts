// Starts a real containerd (Debian's) for a test with its own config: root, state and gRPC/ttrpc
// sockets under `dir`, Starling's snapshotter socket as the proxy plugin "starling". `ctr` runs
// against it in one namespace. `stop()` kills what the test left running (tasks, their shims),
// stops containerd, detaches every mount below `dir` and removes the namespace's (empty) cgroups,
// even after a failed test.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { lazyUnmount, listMounts } from '../../src/mount/stale.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RunningContainerd {
  address: string;
  namespace: string;
  /** Runs `ctr` against this containerd; rejects with its stderr on failure. */
  ctr(...args: string[]): Promise<string>;
  /** The same with stargz-snapshotter's `ctr-remote` (ctr plus `image rpull`). */
  ctrRemote(...args: string[]): Promise<string>;
  /** Where containerd keeps a task's bundle (its rootfs is mounted there). */
  stateDir: string;
  stop(): Promise<void>;
}

export async function startContainerd(dir: string, snapshotterSocket: string, namespace = `starling-test-${process.pid}`): Promise<RunningContainerd> {
  const address = join(dir, 'containerd.sock');
  const stateDir = join(dir, 'state');
  const config = [
    'version = 2',
    `root = "${join(dir, 'root')}"`,
    `state = "${stateDir}"`,
    '[grpc]',
    `  address = "${address}"`,
    '[ttrpc]',
    `  address = "${address}.ttrpc"`,
    '[proxy_plugins.starling]',
    '  type = "snapshot"',
    `  address = "${snapshotterSocket}"`,
    '',
  ].join('\n');
  await writeFile(join(dir, 'config.toml'), config);
  const child: ChildProcess = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
  const client = (binary: string) => async (...args: string[]) => {
    try {
      return (await run(binary, ['--address', address, '--namespace', namespace, ...args], { timeout: 120_000, maxBuffer: 16 << 20 })).stdout;
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
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      if (!(await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]))) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    const below = `${dir}/`;
    for (const m of (await listMounts()).reverse()) if (m.mountpoint.startsWith(below)) await lazyUnmount(m.mountpoint).catch(() => {});
    // runc removes each container's cgroup, not the namespace's parent one (cgroups v1: one per controller).
    for (const controller of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) await rmdir(join('/sys/fs/cgroup', controller, namespace)).catch(() => {});
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
  return { address, namespace, ctr, ctrRemote: client('ctr-remote'), stateDir, stop };
}
