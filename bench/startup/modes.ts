// How each benchmark mode gets an image's root filesystem ready (the "pull" phase), and how it
// cleans up. Every sample starts cold: a new work directory, a new cache directory and a new
// process (so a new registry connection).
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Mode } from './report.js';
import { runTool } from './build.js';
import { listMounts } from '../../src/fs/stale.js';
import { starling, type Engine } from './engine.js';

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
  /** Extra options of `starling mount` (e.g. --no-background-fetch). */
  mountArgs: string[];
}

async function mountsUnder(dir: string): Promise<string[]> {
  return (await listMounts()).map((m) => m.mountpoint).filter((p) => p === dir || p.startsWith(`${dir}/`));
}

/** `starling mount` returns once its daemon serves the mount; `starling umount` stops it. */
async function lazyMount(ctx: ModeContext): Promise<Prepared> {
  const mnt = join(ctx.work, 'rootfs');
  await mkdir(mnt, { recursive: true });
  // The daemon's control socket and log live in the sample's directory, removed with it.
  const env = { STARLING_RUN_DIR: join(ctx.work, 'run') };
  await starling(ctx.engine, ['mount', `docker://${ctx.ref}`, mnt, '--upper', join(ctx.work, 'upper'), '--cache-dir', join(ctx.work, 'cache'), ...ctx.mountArgs], env);
  return {
    rootfs: mnt,
    async cleanup() {
      await starling(ctx.engine, ['umount', mnt], env).catch(() => starling(ctx.engine, ['umount', '--force', mnt], env));
      // umount returns once the mount point is free; the daemon's own FUSE mounts (in its run dir,
      // inside the work dir) go a moment later. Never remove the work directory through a mount.
      for (let i = 0; i < 300 && (await mountsUnder(ctx.work)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
      const left = await mountsUnder(ctx.work);
      if (left.length > 0) throw new Error(`still mounted 30 s after umount: ${left.join(', ')}`);
      await rm(ctx.work, { recursive: true, force: true });
    },
  };
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
