// Stops a mount daemon: asks it to unmount and exit, waits until nothing of it is mounted; with
// `force`, also a daemon that is dead, stuck or does not answer (its mounts are detached lazily and
// it is killed). Used by `starling umount` and by the snapshotter when an image's layers go.
import { readFile, rm } from 'node:fs/promises';
import { control, ControlUnreachable, mountPaths } from './control.js';
import { detachAll, mountedAtOrBelow } from './stale.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class StopError extends Error {}

/** Resolves once the daemon is gone; `detached` lists what had to be detached by force. */
export async function stopMountDaemon(mountpoint: string, opts: { force: boolean; waitMs?: number }): Promise<{ detached: string[] }> {
  const paths = mountPaths(mountpoint);
  try {
    const { pid } = await daemonInfo(paths.info);
    await control(paths.socket, { op: 'stop' });
    // The daemon answers first, then unmounts and removes the directories it made (layers mode's
    // MOUNTPOINT/N): wait until the mountpoint is released and the daemon has exited.
    const busy = async () => (await mountedAtOrBelow(mountpoint)) || (pid !== undefined && running(pid));
    for (const end = Date.now() + (opts.waitMs ?? 60_000); Date.now() < end && (await busy()); ) await sleep(100);
    if (!(await mountedAtOrBelow(mountpoint))) return { detached: [] };
    if (!opts.force) throw new StopError(`${mountpoint}: the daemon did not unmount within ${(opts.waitMs ?? 60_000) / 1000} s (try --force)`);
  } catch (err) {
    if (!(err instanceof ControlUnreachable)) throw err;
    if (!opts.force) throw new StopError(`${mountpoint}: no running starling daemon (${err.message}); use --force to clean up a stale mount`);
  }
  const info = await daemonInfo(paths.info);
  const detached = await detachAll([mountpoint], [paths.dir, mountpoint]);
  if (info.pid) {
    try {
      process.kill(info.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  await rm(paths.socket, { force: true });
  await rm(paths.info, { force: true });
  if (detached.length === 0 && !info.pid) throw new StopError(`${mountpoint}: nothing of starling is mounted there`);
  return { detached };
}

/** The daemon's daemon.json; empty when missing, or cut short by a daemon that died while writing it (then there is no pid). */
export async function daemonInfo(file: string): Promise<{ pid?: number }> {
  return (await readFile(file, 'utf8').then((t) => JSON.parse(t) as unknown).catch(() => ({}))) as { pid?: number };
}

/** Whether a process with this pid exists (one of ours: signal 0 is allowed). */
export function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
