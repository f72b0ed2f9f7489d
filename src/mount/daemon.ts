// The life of a mount daemon: recover a stale mount left by a crashed daemon on the same path, mount
// the image, answer control requests, and unmount on `umount`, SIGINT, SIGTERM or a fatal error.
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import type { Server } from 'node:net';
import { control, ControlUnreachable, mountPaths, serveControl } from './control.js';
import { collectGarbage, ImageMount, type ImageMountOptions } from './image-mount.js';
import { detachAll } from './stale.js';

export class MountError extends Error {}

/** How long stopping may wait for the mount to close before what is left is detached. */
const CLOSE_BOUND_MS = 15_000;
/** The garbage of mounting is collected once reads have not had to fetch for this long (collectGarbage)... */
const GC_QUIET_MS = 1000;
/**
 * ...unless the layers hold more entries than this: then at once, as the mount is reported ready.
 * A 100k-file image leaves ~100 MB of it, which a read straight after mounting would add to the
 * daemon's peak RSS (bench/fs: 252-303 MiB against a bound of 319); an image of a few thousand
 * files leaves little, and its collection (~50 ms) would fall on the container's start.
 */
const GC_DEFER_MAX_ENTRIES = 20_000;

/**
 * Mounts and serves until stopped. `onReady` is called once the mount is usable; once stopped (and
 * everything unmounted) the process exits. The returned promise rejects if the mount never got up.
 */
export async function runMountDaemon(opts: Omit<ImageMountOptions, 'workDir'>, onReady: () => void): Promise<void> {
  const paths = mountPaths(opts.mountpoint);
  try {
    await checkMountpoint(opts, paths);
  } catch (err) {
    // An image already on its way (its registry connection) is not left open by a mount that never starts.
    void opts.image?.then(({ source }) => source.close()).catch(() => {});
    throw err;
  }
  const mount = await ImageMount.open({ ...opts, workDir: paths.dir });
  // From here on every way out unmounts: the handlers are in place before the next await, so a
  // signal or an error while the control socket is set up cannot leave the mount behind.
  let server: Server | undefined;
  let stopping: Promise<void> | undefined;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const stop = (why: string) => {
    stopping ??= (async () => {
      opts.log(`stopping (${why})`);
      server?.close();
      const closed = mount.close().then(
        () => true,
        (err: Error) => (opts.log(err.message), true),
      );
      if (!(await Promise.race([closed, new Promise<boolean>((r) => setTimeout(() => r(false), CLOSE_BOUND_MS).unref())]))) {
        // Seen once in ~10 runs under load when unmounting went through fuse-native's `fusermount
        // -uz` shell (now umount2: src/fs/fuse.ts), whose exit never reached its callback (a zombie),
        // so close() never returned and the daemon outlived its mount. Whatever is still mounted is
        // detached here instead.
        const left = await detachAll([opts.mountpoint], [paths.dir, opts.mountpoint]).catch(() => []);
        opts.log(`close did not finish within ${CLOSE_BOUND_MS / 1000} s; detached: ${left.join(', ') || 'nothing was left mounted'}`);
      }
      await rm(paths.socket, { force: true });
      await rm(paths.info, { force: true });
      resolveDone();
    })();
    return stopping;
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => void stop(sig));
  process.on('uncaughtException', (err) => {
    opts.log(`fatal: ${err.stack ?? err}`);
    void stop('fatal error').finally(() => process.exit(1));
  });
  // The info file is written while the control socket is set up. If either fails, the mount is
  // taken down (with both files) before the error is reported.
  const info = writeFile(paths.info, JSON.stringify({ pid: process.pid, ref: opts.ref, mountpoint: opts.mountpoint }));
  info.catch(() => {}); // awaited below
  try {
    server = await serveControl(paths.socket, async (req) => {
      if (req.op === 'stats') return mount.stats();
      if (req.op === 'stop') {
        setImmediate(() => void stop('umount'));
        return { ok: true };
      }
      throw new Error(`unknown request ${JSON.stringify(req)}`);
    });
    await info;
  } catch (err) {
    await info.catch(() => {});
    await stop(`cannot serve the control socket: ${(err as Error).message}`);
    throw err;
  }
  onReady();
  const entries = mount.layers.reduce((n, l) => n + l.contents.entries.length, 0);
  void (entries > GC_DEFER_MAX_ENTRIES ? new Promise((r) => setImmediate(r)) : mount.quiet(GC_QUIET_MS)).then(collectGarbage);
  await done;
  // Stopped: exit even if a stray handle (such as that shell's child process) would keep the loop alive.
  process.exit(0);
}

/** The mountpoint can be mounted: no live daemon on it (a dead one's leftovers are recovered), an existing directory, empty unless something is stacked on it. */
async function checkMountpoint(opts: Omit<ImageMountOptions, 'workDir'>, paths: ReturnType<typeof mountPaths>): Promise<void> {
  await mkdir(paths.dir, { recursive: true });
  await recoverStale(opts.mountpoint, paths, opts.log);
  const st = await stat(opts.mountpoint).catch(() => undefined);
  if (!st) throw new MountError(`mountpoint ${opts.mountpoint} does not exist`);
  if (!st.isDirectory()) throw new MountError(`mountpoint ${opts.mountpoint} is not a directory`);
  // libfuse refuses a non-empty mountpoint with nothing better than "fuse failed".
  if (opts.mode === 'merged' && !opts.upper && (await readdir(opts.mountpoint)).length > 0) throw new MountError(`mountpoint ${opts.mountpoint} is not empty`);
}

/** A live daemon on the path is an error; a dead one's mounts are detached and its files removed. */
async function recoverStale(mountpoint: string, paths: ReturnType<typeof mountPaths>, log: (m: string) => void): Promise<void> {
  try {
    const s = (await control(paths.socket, { op: 'stats' }, 5_000)) as { pid: number; ref: string };
    throw new MountError(`${mountpoint} is already mounted (${s.ref}, daemon pid ${s.pid}); run starling umount first`);
  } catch (err) {
    if (!(err instanceof ControlUnreachable)) throw err;
  }
  const detached = await detachAll([mountpoint], [paths.dir, mountpoint]);
  if (detached.length) log(`recovered stale mounts of a previous daemon: ${detached.join(', ')}`);
  await rm(paths.socket, { force: true });
}
