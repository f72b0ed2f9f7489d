// How each benchmark mode gets an image's root filesystem ready (the "pull" phase), and how it
// cleans up. Every sample starts cold: a new work directory, a new cache directory and a new
// process (so a new registry connection).
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Mode } from './report.js';
import { runTool } from './build.js';
import { spawnStarling, starling, type Engine } from './engine.js';

/** The image forms pushed to the registry, by tag. */
export type Form = 'gzip' | 'estargz' | 'estargz-opt' | 'zstdchunked';

export const MODE_FORM: Record<Mode, Form> = {
  full: 'gzip',
  skopeo: 'gzip',
  lazy: 'estargz',
  'lazy-optimised': 'estargz-opt',
  'lazy-zstdchunked': 'zstdchunked',
};

export interface Prepared {
  /** The root filesystem to run the workload in (writable). */
  rootfs: string;
  cleanup(): Promise<void>;
}

export interface ModeContext {
  engine: Engine;
  /** `HOST:PORT/REPO:TAG` of the form through the emulated link (no transport prefix). */
  ref: string;
  /** An empty directory of this sample. */
  work: string;
}

/** Mounts and stops a lazy mount daemon: `starling mount` stays in the foreground until unmounted. */
async function lazyMount(ctx: ModeContext): Promise<Prepared> {
  const mnt = join(ctx.work, 'rootfs');
  const upper = join(ctx.work, 'upper');
  const cache = join(ctx.work, 'cache');
  await mkdir(mnt, { recursive: true });
  const daemon = spawnStarling(ctx.engine, ['mount', `docker://${ctx.ref}`, mnt, '--upper', upper, '--cache-dir', cache]);
  let stderr = '';
  daemon.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  daemon.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)));
  // Ready when the mount point is a mount (the daemon mounts FUSE and the overlay before that).
  for (;;) {
    if (daemon.exitCode !== null) throw new Error(`starling mount exited (${daemon.exitCode}): ${stderr.trim()}`);
    if (await isMountPoint(mnt)) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  return {
    rootfs: mnt,
    async cleanup() {
      try {
        if (daemon.exitCode === null) await starling(ctx.engine, ['umount', mnt]);
      } finally {
        const timer = setTimeout(() => daemon.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(timer);
        if (await isMountPoint(mnt)) await runTool('umount', ['-l', mnt]);
        await rm(ctx.work, { recursive: true, force: true });
      }
    },
  };
}

/** True when `path` is the mount point of a mount (listed in /proc/self/mountinfo). */
export async function isMountPoint(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((line) => line.split(' ')[4] === path);
}

async function fullPull(ctx: ModeContext): Promise<Prepared> {
  const rootfs = join(ctx.work, 'rootfs');
  await starling(ctx.engine, ['pull', `docker://${ctx.ref}`, rootfs, '--cache-dir', join(ctx.work, 'cache')]);
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

export function prepare(mode: Mode, ctx: ModeContext): Promise<Prepared> {
  switch (mode) {
    case 'full':
      return fullPull(ctx);
    case 'skopeo':
      return skopeoPull(ctx);
    default:
      return lazyMount(ctx);
  }
}
