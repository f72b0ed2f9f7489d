// Starts a mount daemon: this same program run again as `mount ARGS --foreground`, detached, with
// its output in the mount's log, and waits until it reports the mount usable (or why not). Used by
// `starling mount` and by the containerd snapshotter, whose lazy layers live in such daemons so that
// restarting the service never touches a running container's mounts.
import type { Socket } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import { setPriority } from 'node:os';
import { mountPaths } from './control.js';
import type { MountProgress } from './image-mount.js';

/**
 * What a daemon sends its parent over IPC: progress while it mounts, then ready or the error that
 * stopped it (with the exit code `starling mount` is to give, when not 1).
 */
export type DaemonReport = { ready: true } | { error: string; exitCode?: number } | { progress: MountProgress };

/** A mount that failed as its daemon (or the host's spare) reported it, with the exit code `starling mount` is to give. */
export class MountFailed extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** How a daemon tells whoever started it how the mount goes: IPC for a child, a socket for the host's spare (host-spare.ts). */
export interface DaemonChannel {
  send(report: DaemonReport): void;
  /** After the last report: lets the starter go. */
  close(): void;
}

/** The IPC channel of a daemon started by daemonProcess, when this process is one. */
export function ipcChannel(): DaemonChannel | undefined {
  if (typeof process.send !== 'function') return undefined;
  return {
    send: (report) => void (process.connected && process.send!(report)),
    close: () => void (process.connected && process.disconnect()),
  };
}

/** The message that hands a spare daemon its mount: `starling mount`'s arguments. */
export interface SpareAssignment {
  args: string[];
}

// --max-semi-space-size=4 (MiB; V8 grows it to 16 here): the young generation stays ~24 MiB smaller
// for a daemon whose short-lived objects are small (measured with a 100k-file image: RSS after
// mount 236 → 213 MiB, peak 387–411 → 369–370 MiB, read times unchanged).
const DAEMON_NODE_FLAGS = ['--max-semi-space-size=4'];

/**
 * The Node flags a daemon runs with besides DAEMON_NODE_FLAGS: this process's loader flags (tsx in
 * tests), not the test runner's; the daemon moves to '/', so a bare `--import NAME` is resolved here first.
 */
export function daemonExecArgv(): string[] {
  return process.execArgv
    .filter((a) => !a.startsWith('--test') && !DAEMON_NODE_FLAGS.includes(a))
    .map((a, i, all) => (all[i - 1] === '--import' && !/^[./]|^file:/.test(a) ? import.meta.resolve(a) : a));
}

/**
 * Runs this program again, detached, as `ARGV`, its output appended to `log`; with an IPC channel
 * unless `ipc` is false (a daemon that outlives the process starting it); under `nice` when
 * `niceness` is given. With `gated`, the process is made now but Node starts in it only once the
 * child's stdin is ended here, or this process has exited (a shell waits for the end of a pipe only
 * this process holds).
 */
export async function daemonProcess(argv: string[], log: string, opts: { niceness?: number; ipc?: boolean; gated?: boolean } = {}): Promise<ChildProcess> {
  const logFile = await open(log, 'a');
  const { niceness, ipc = true, gated = false } = opts;
  const execArgv = daemonExecArgv();
  const node = [process.execPath, ...execArgv, ...DAEMON_NODE_FLAGS, process.argv[1]!, ...argv];
  // nice(1) execs node in the same process, so every thread node starts inherits the niceness.
  const niced = niceness === undefined ? node : ['nice', '-n', String(niceness), ...node];
  const command = gated ? ['/bin/sh', '-c', 'read line; exec "$@"', 'sh', ...niced] : niced;
  const child = spawn(command[0]!, command.slice(1), {
    // glibc: allocations above 8 MiB (decompressed TOCs, coalesced fetches) are mapped and go back
    // to the system when freed; chunk buffers (4 MiB) stay on the heap, where freed ones are reused.
    // A fixed threshold also stops glibc raising it to 32 MiB, and its trim threshold to 64 MiB,
    // after the first large free, which kept ~100 MB of freed chunk memory resident after a 1 GiB
    // read (measured with a 100k-file image: peak RSS 331-350 -> 315-324 MiB).
    env: { MALLOC_MMAP_THRESHOLD_: String(8 << 20), ...process.env },
    detached: true,
    stdio: [gated ? 'pipe' : 'ignore', logFile.fd, logFile.fd, ...(ipc ? (['ipc'] as const) : [])],
  });
  await logFile.close();
  // The pipe's end here closes with this process at the latest; until then it must not keep it alive.
  if (gated) (child.stdin as Socket).unref();
  return child;
}

/** Calls `onProgress` with what a mount daemon reports before it is ready (the snapshotter answers a layer's Prepare from it). */
export type ProgressListener = (progress: MountProgress) => void;

/** Waits for a daemon's report; once ready it is let go (no IPC, not keeping this process alive). */
async function awaitReady(child: ChildProcess, log: string, onProgress?: ProgressListener): Promise<{ pid: number; log: string }> {
  const outcome = await new Promise<{ ready?: true; error?: string; exitCode?: number }>((resolvePromise) => {
    child.on('message', (m: DaemonReport) => ('progress' in m ? onProgress?.(m.progress) : resolvePromise(m)));
    // 'close' comes after the IPC channel is drained, so an error message sent just before exiting wins.
    child.on('close', (code, signal) => resolvePromise({ error: `mount daemon exited (${signal ?? code}) before the mount was ready; see ${log}` }));
    child.on('error', (err) => resolvePromise({ error: `cannot start the mount daemon: ${err.message}` }));
  });
  child.removeAllListeners();
  if (child.connected) child.disconnect();
  child.unref();
  if (!outcome.ready) throw new MountFailed(outcome.error ?? 'mount failed', outcome.exitCode);
  return { pid: child.pid!, log };
}

/** `args` are `starling mount`'s (REF, MOUNTPOINT, options) without --foreground. */
export async function spawnMountDaemon(args: string[], mountpoint: string, onProgress?: ProgressListener): Promise<{ pid: number; log: string }> {
  const paths = mountPaths(mountpoint);
  await mkdir(paths.dir, { recursive: true });
  return awaitReady(await daemonProcess(['mount', ...args, '--foreground'], paths.log), paths.log, onProgress);
}

/** A spare daemon loads at this niceness, so that it does not take a core from a container starting meanwhile. */
export const SPARE_NICENESS = 10;

/** Back to niceness 0, every thread (setpriority takes a thread id on Linux); needs root, as mounting does. */
export async function normalPriority(pid: number): Promise<void> {
  const threads = await readdir(`/proc/${pid}/task`).catch(() => [String(pid)]);
  for (const tid of threads) {
    try {
      setPriority(Number(tid), 0);
    } catch {
      // Not permitted (not root) or gone: the mount runs at low priority, or fails on its own.
    }
  }
}

/**
 * A daemon started ahead of need for a mount at `mountpoint` (so its log is that mount's): Node
 * started and the mount code loaded, it waits for its arguments. A service that mounts now and then
 * (the snapshotter) keeps one, so a mount does not wait for a process to start. It exits when the
 * process that started it goes away unused.
 */
export class SpareDaemon {
  private constructor(
    readonly mountpoint: string,
    private readonly child: ChildProcess,
    private readonly log: string,
  ) {}

  static async start(mountpoint: string): Promise<SpareDaemon> {
    const paths = mountPaths(mountpoint);
    await mkdir(paths.dir, { recursive: true });
    // At low priority: the snapshotter starts it when the machine is idle, but a container may start meanwhile.
    return new SpareDaemon(mountpoint, await daemonProcess(['mount', '--spare', mountpoint], paths.log, { niceness: SPARE_NICENESS }), paths.log);
  }

  /** Hands it `starling mount`'s arguments (REF, this MOUNTPOINT, options) and waits until it is mounted. */
  async use(args: string[], onProgress?: ProgressListener): Promise<{ pid: number; log: string }> {
    if (!this.child.connected) throw new Error(`the spare mount daemon is gone (${this.child.exitCode ?? this.child.signalCode}); see ${this.log}`);
    await normalPriority(this.child.pid!);
    const ready = awaitReady(this.child, this.log, onProgress);
    this.child.send({ args: [...args, '--foreground'] } satisfies SpareAssignment);
    return ready;
  }

  /** Kills it and removes its run directory (only its log: it never mounted). */
  async discard(): Promise<void> {
    this.child.kill('SIGKILL');
    this.child.unref();
    await rm(mountPaths(this.mountpoint).dir, { recursive: true, force: true });
  }
}
