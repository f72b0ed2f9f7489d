// How each benchmark mode gets an image's root filesystem ready (the "pull" phase), and how it
// cleans up. Every sample starts cold: a new work directory, a new cache directory and a new
// process (so a new registry connection).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { WorkloadResult } from '../../src/cli/_workload.js';
import type { Mode } from './report.js';
import { stageContainerd } from './containerd.js';
import { isContainerdMode } from './containerd-modes.js';
import type { Workload } from './images.js';
import { exists, runTool } from './build.js';
import { mountPaths } from '../../src/mount/control.js';
import { lazyUnmount, listMounts } from '../../src/mount/stale.js';
import { starling, type Engine } from './engine.js';
import { PACKAGE_ROOT } from './root.js';

/** The image forms pushed to the registry, by tag. */
export type Form = 'gzip' | 'estargz' | 'estargz-opt' | 'zstdchunked';

export const MODE_FORM: Record<Mode, Form> = {
  full: 'gzip',
  skopeo: 'gzip',
  lazy: 'estargz',
  'lazy-first': 'estargz',
  'lazy-no-bg': 'estargz',
  'lazy-optimised': 'estargz-opt',
  'lazy-profile': 'estargz',
  'lazy-zstdchunked': 'zstdchunked',
  'lazy-gzip-index': 'gzip',
  stargz: 'estargz',
  'stargz-optimised': 'estargz-opt',
  'containerd-full': 'gzip',
  'containerd-starling': 'estargz',
  'containerd-stargz': 'estargz',
};

/**
 * The repository a mode's image is in, after `bench/IMAGE`: the profiled and the indexed copies have
 * one of their own, since referrers (the prefetch profile, the gzip index) belong to a repository
 * and every other mode must not see them.
 */
export const MODE_REPO_SUFFIX: Partial<Record<Mode, string>> = { 'lazy-profile': '-profiled', 'lazy-gzip-index': '-indexed' };

/** Options of `starling mount` beyond its defaults, per lazy mode (the others use the defaults). */
const MOUNT_ARGS: Partial<Record<Mode, string[]>> = { 'lazy-no-bg': ['--no-background-fetch'] };

/** stargz-snapshotter's filesystem as a program (bench/stargz, built by scripts/build-interop.sh). */
export const STARGZ_BIN = join(PACKAGE_ROOT, '.interop-bin/stargz');

/**
 * In a checkout, builds the stargz mode's program (again when its source changed). An installed
 * package has neither its source nor the script: the program must already be in place.
 */
export async function ensureStargzProgram(): Promise<void> {
  const script = join(PACKAGE_ROOT, 'scripts/build-interop.sh');
  if (await exists(script)) await runTool(script, []);
  else if (!(await exists(STARGZ_BIN))) {
    throw new Error(
      `the stargz mode needs stargz-snapshotter's filesystem as a program at ${STARGZ_BIN}, which an installed package does not include: ` +
        "build it in a checkout of Starling with scripts/build-interop.sh (needs Go and Debian's golang-github-containerd-stargz-snapshotter-dev) and copy its .interop-bin/stargz there, or leave stargz out of --modes",
    );
  }
}

export interface Prepared {
  /** The root filesystem to run the workload in (writable); '' when the mode runs it itself (`run`). */
  rootfs: string;
  /** Runs the workload, where the mode does not chroot into `rootfs` (containerd modes: `ctr run`). */
  run?(workload: Workload): Promise<WorkloadResult>;
  /** Untimed, after a successful run: throws if the mode did not pull the way it claims. */
  check?(): Promise<void>;
  cleanup(): Promise<void>;
}

/** A mode whose services are up (started untimed): the timed pull next. */
export interface Staged {
  pull(): Promise<Prepared>;
  cleanup(): Promise<void>;
}

export interface ModeContext {
  engine: Engine;
  /** `HOST:PORT/REPO:TAG` of the form through the emulated link (no transport prefix). */
  ref: string;
  /** An empty directory of this sample. */
  work: string;
  /** Where a mode keeps the sample's logs (the containerd modes: services, containerd, stats). */
  logDir?: string;
}

async function mountsUnder(dir: string): Promise<string[]> {
  return (await listMounts()).map((m) => m.mountpoint).filter((p) => p === dir || p.startsWith(`${dir}/`));
}

/** Waits up to 30 s for every mount under `work` to go, then removes it. Never removes a directory through a mount. */
async function removeWhenUnmounted(work: string, what: string): Promise<void> {
  for (let i = 0; i < 300 && (await mountsUnder(work)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  const left = await mountsUnder(work);
  if (left.length > 0) throw new Error(`still mounted 30 s after ${what}: ${left.join(', ')}`);
  await rm(work, { recursive: true, force: true });
}

/** `starling mount` returns once its daemon serves the mount; `starling umount` stops it. */
async function lazyMount(mode: Mode, ctx: ModeContext): Promise<Prepared> {
  const mnt = join(ctx.work, 'rootfs');
  await mkdir(mnt, { recursive: true });
  // The daemon's control socket and log live in the sample's directory, removed with it.
  const env = { STARLING_RUN_DIR: join(ctx.work, 'run') };
  await starling(ctx.engine, ['mount', `docker://${ctx.ref}`, mnt, '--upper', join(ctx.work, 'upper'), '--cache-dir', join(ctx.work, 'cache'), ...(MOUNT_ARGS[mode] ?? [])], env);
  return {
    rootfs: mnt,
    ...(mode === 'lazy-gzip-index' ? { check: () => checkIndexed(ctx, mnt, env) } : {}),
    async cleanup() {
      await keepDiagnostics(ctx, mnt, env).catch(() => {});
      await starling(ctx.engine, ['umount', mnt], env).catch(() => starling(ctx.engine, ['umount', '--force', mnt], env));
      // umount returns once the mount point is free; the daemon's own FUSE mounts (in its run dir,
      // inside the work dir) go a moment later.
      await removeWhenUnmounted(ctx.work, 'umount');
    },
  };
}

/** The daemon's log and `stats --json` of a lazy sample, kept in the run's logs/ to explain its figures. */
async function keepDiagnostics(ctx: ModeContext, mnt: string, env: Record<string, string>): Promise<void> {
  if (!ctx.logDir) return;
  await mkdir(ctx.logDir, { recursive: true });
  await writeFile(join(ctx.logDir, 'stats.json'), await starling(ctx.engine, ['stats', mnt, '--json'], env));
  await copyFile(mountPaths(mnt, env.STARLING_RUN_DIR).log, join(ctx.logDir, 'daemon.log'));
}

/** The gzip index mode measured what it claims: every layer was mounted through its index (`starling index` indexes all gzip layers). */
async function checkIndexed(ctx: ModeContext, mnt: string, env: Record<string, string>): Promise<void> {
  // `stats MOUNTPOINT --json` is one object (an array only with --snapshotter).
  const stats = JSON.parse(await starling(ctx.engine, ['stats', mnt, '--json'], env)) as { layers: Array<{ digest: string; size: number; format: string; lazy: boolean; reason: string | null }> };
  const whole = stats.layers.filter((l) => !(l.lazy && l.format === 'gzip-index'));
  if (whole.length > 0) throw new Error(`layers not mounted through their gzip index: ${whole.map((l) => `${l.digest} (${l.format}: ${l.reason})`).join(', ')}`);
}

/**
 * stargz-snapshotter as containerd uses it: the program mounts each layer on its own FUSE mount
 * (layers/0 is the bottom one) and says "ready N" once all are mounted and checked; the layers are
 * stacked with overlayfs under a writable upper dir, as containerd's overlay mount of the snapshots.
 */
async function stargzMount(ctx: ModeContext): Promise<Prepared> {
  const layers = join(ctx.work, 'layers');
  const rootfs = join(ctx.work, 'rootfs');
  const upper = join(ctx.work, 'upper');
  const overlayWork = join(ctx.work, 'overlay-work');
  for (const d of [rootfs, upper, overlayWork]) await mkdir(d, { recursive: true });
  const child = spawn(STARGZ_BIN, ['-root', join(ctx.work, 'cache'), ctx.ref, layers], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = once(child, 'exit');
  let overlay = false;
  const cleanup = async () => {
    try {
      if (overlay) await runTool('umount', [rootfs]);
      overlay = false;
    } finally {
      // SIGTERM: the program unmounts its layers and exits.
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(timer);
      }
      // What a program that died (or an overlay that would not unmount) left behind is detached.
      for (const m of (await mountsUnder(ctx.work)).reverse()) await lazyUnmount(m);
      await removeWhenUnmounted(ctx.work, 'stargz exited');
    }
  };
  try {
    const ready = await Promise.race([
      (async () => {
        for await (const line of createInterface({ input: child.stdout })) {
          const m = /^ready (\d+)$/.exec(line);
          if (m) return Number(m[1]);
        }
        throw new Error('stdout closed without a ready line');
      })(),
      exited.then(([code, sig]) => Promise.reject(new Error(`exited ${code ?? sig}`))),
    ]).catch((err: Error) => Promise.reject(new Error(`stargz: ${err.message}: ${stderr.trim()}`)));
    // overlayfs: lowerdir is listed top first.
    const lowers = Array.from({ length: ready }, (_, i) => join(layers, String(ready - 1 - i)));
    await runTool('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${overlayWork}`, rootfs]);
    overlay = true;
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { rootfs, cleanup };
}

async function fullPull(ctx: ModeContext): Promise<Prepared> {
  const rootfs = join(ctx.work, 'rootfs');
  await starling(ctx.engine, ['pull', `docker://${ctx.ref}`, rootfs]);
  return { rootfs, cleanup: () => rm(ctx.work, { recursive: true, force: true }) };
}

/** The outside reference: skopeo copies the image to an OCI layout, tar extracts its layers in order. */
async function skopeoPull(ctx: ModeContext): Promise<Prepared> {
  const layout = join(ctx.work, 'oci');
  const rootfs = join(ctx.work, 'rootfs');
  await runTool('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${ctx.ref}`, `oci:${layout}:img`]);
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const blob = (d: string) => join(layout, 'blobs', 'sha256', d.slice('sha256:'.length));
  const manifest = JSON.parse(await readFile(blob(index.manifests[0]!.digest), 'utf8')) as { layers: Array<{ digest: string }> };
  await mkdir(rootfs);
  // The benchmark images have no whiteouts, so plain extraction in layer order is the full rootfs.
  for (const layer of manifest.layers) await runTool('tar', ['-xzf', blob(layer.digest), '-C', rootfs, '--numeric-owner']);
  return { rootfs, cleanup: () => rm(ctx.work, { recursive: true, force: true }) };
}

/**
 * Starts what a mode needs running before its pull (containerd and its snapshotter), so that the
 * harness times the pull alone; nothing for the other modes.
 */
export async function stage(mode: Mode, ctx: ModeContext): Promise<Staged> {
  // Starling's lazy modes mount on a host that has mounted before: the spare daemon the previous
  // mount left is there (lazy-first: the first mount on a host, none).
  if (mode.startsWith('lazy') && mode !== 'lazy-first') await starling(ctx.engine, ['spare'], { STARLING_RUN_DIR: join(ctx.work, 'run') });
  if (!isContainerdMode(mode)) return { pull: () => prepare(mode, ctx), cleanup: () => rm(ctx.work, { recursive: true, force: true }) };
  const staged = await stageContainerd(mode, { ...ctx, id: basename(ctx.work) });
  return { cleanup: staged.cleanup, pull: async () => ({ rootfs: '', ...(await staged.pull()) }) };
}

export function prepare(mode: Mode, ctx: ModeContext): Promise<Prepared> {
  switch (mode) {
    case 'containerd-full':
    case 'containerd-starling':
    case 'containerd-stargz':
      return stage(mode, ctx).then((s) => s.pull());
    case 'full':
      return fullPull(ctx);
    case 'skopeo':
      return skopeoPull(ctx);
    case 'stargz':
    case 'stargz-optimised':
      return stargzMount(ctx);
    default:
      return lazyMount(mode, ctx);
  }
}
