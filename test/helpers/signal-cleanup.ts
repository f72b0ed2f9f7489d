// after() hooks do not run when a test process is stopped by a signal (^C, a runner that is itself
// stopped), and what a mount test started would live on: detached mount daemons (spares too) with
// their FUSE mounts, registries. Files register what to undo here; on SIGINT, SIGTERM or SIGHUP this
// takes the signal from the test runner (whose handler exits at once), kills the mount daemons of
// each registered work directory, detaches every Starling mount below it, removes it, runs the other
// undo steps (a registry's kill), and exits as the signal would have.
import { readdir, rm } from 'node:fs/promises';
import { constants } from 'node:os';
import { join } from 'node:path';
import { detachAll, listMounts } from '../../src/mount/stale.js';
import { daemonInfo } from '../../src/mount/stop.js';

const workDirs = new Set<string>();
const undos = new Set<() => void>();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let installed = false;

/** Cleans up `work` (its run directory at `work/run`) if a signal stops this process (nothing if it is gone by then). */
export function cleanupOnSignal(work: string): void {
  workDirs.add(work);
  install();
}

/** Runs `undo` if a signal stops this process. */
export function undoOnSignal(undo: () => void): { forget(): void } {
  undos.add(undo);
  install();
  return { forget: () => undos.delete(undo) };
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const sig of SIGNALS) process.prependOnceListener(sig, () => void onSignal(sig));
}

async function onSignal(sig: (typeof SIGNALS)[number]): Promise<void> {
  // The runner's handler is not to exit meanwhile, nor a second signal (the runner passes its own on).
  for (const s of SIGNALS) process.removeAllListeners(s).on(s, () => {});
  for (const work of workDirs) {
    const run = join(work, 'run');
    for (const id of await readdir(run).catch(() => [])) {
      const { pid } = await daemonInfo(join(run, id, 'daemon.json'));
      if (pid !== undefined) killQuietly(pid);
    }
    await detachAll([], [work]).catch(() => []);
    // Never through a mount still inside it. The spare's socket goes with the directory, and the spare with its socket.
    if (!(await listMounts()).some((m) => m.mountpoint.startsWith(`${work}/`))) await rm(work, { recursive: true, force: true }).catch(() => {});
  }
  for (const undo of undos) undo();
  process.exit(128 + constants.signals[sig]);
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone already.
  }
}
