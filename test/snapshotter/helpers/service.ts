// `starling snapshotter` run as a child process by the containerd tests, and `ctr snapshots ls`
// read back as rows.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { RunningContainerd } from '../../helpers/containerd.js';

const CLI = fileURLToPath(new URL('../../fs/helpers/starling.ts', import.meta.url));

export interface RunningService {
  child: ChildProcess;
  /** What the service wrote to stderr so far (its log). */
  log(): string;
  /** Stops it with `signal` (SIGKILL after 10 s) and waits for it to exit. */
  stop(signal: NodeJS.Signals): Promise<void>;
}

/** Starts `starling snapshotter` and waits until it serves. */
export async function startService(socket: string, root: string, extraArgs: string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<RunningService> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'snapshotter', '--address', socket, '--root', root, ...extraArgs], { stdio: ['ignore', 'ignore', 'pipe'], env });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`snapshotter did not start: ${stderr}`)), 60_000);
    const onData = () => stderr.includes('serving on') && (clearTimeout(timer), child.stderr!.off('data', onData), resolve());
    child.stderr!.on('data', onData);
    child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`snapshotter exited (${code}): ${stderr}`))));
  });
  return {
    child,
    log: () => stderr,
    async stop(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      // The service lets calls under way finish for up to 5 s after SIGTERM.
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** `ctr snapshots ls` as rows of [key, parent, kind], sorted. */
export async function snapshotRows(containerd: RunningContainerd): Promise<string[][]> {
  const out = await containerd.ctr('snapshots', '--snapshotter', 'starling', 'ls');
  return out
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .map((cols) => (cols.length === 2 ? [cols[0]!, '', cols[1]!] : cols))
    .sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/**
 * `snapshotRows()` once containerd is connected again: after a failed dial its proxy client backs
 * off (up to 3 s) and fails calls fast with UNAVAILABLE meanwhile.
 */
export async function snapshotRowsAfterRestart(containerd: RunningContainerd): Promise<string[][]> {
  for (const deadline = Date.now() + 15_000; ; await new Promise((r) => setTimeout(r, 250))) {
    try {
      return await snapshotRows(containerd);
    } catch (err) {
      if (!/unavailable/.test((err as Error).message) || Date.now() > deadline) throw err;
    }
  }
}
