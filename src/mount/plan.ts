// The mount planner: what to mount where, as descriptions, for `starling mount` (an image's layers
// as one merged FUSE mount, or one per layer under overlayfs), for the containerd snapshotter (one
// FUSE mount per lazy layer, which containerd stacks itself, and the layers merged when all are
// lazy) and for the snapshotter's answers to containerd (overlayfs options over snapshot
// directories). Nothing here mounts: ImageMount and overlay.ts carry the plans out.
import { join } from 'node:path';

export type MountMode = 'merged' | 'overlay' | 'layers';

export interface FuseMountPlan {
  target: string;
  /** 'merged': every layer in one tree; a number: that layer alone, as overlayfs wants a lower dir. */
  layer: 'merged' | number;
}

export interface UpperDirs {
  upperdir: string;
  workdir: string;
}

export interface OverlayPlan {
  target: string;
  /** Top first. */
  lowers: string[];
  upper?: UpperDirs;
}

export interface MountPlan {
  /** Directories to create before mounting (FUSE targets, overlay's upper and work dirs, an empty lower). */
  dirs: string[];
  fuse: FuseMountPlan[];
  overlay?: OverlayPlan;
}

export interface PlanInput {
  mode: MountMode;
  mountpoint: string;
  /** The mount's private directory (FUSE targets below an overlay). */
  workDir: string;
  /** Per layer, bottom first: whether it is served (in 'layers' mode only lazy layers are). */
  layers: Array<{ lazy: boolean }>;
  /** A writable overlay on top: DIR/upper and DIR/work. */
  upper?: string;
}

/** The FUSE target of layer `i` in 'layers' mode: what the snapshotter names as a lower dir. */
export const layerTarget = (mountpoint: string, i: number) => join(mountpoint, String(i));

/** The FUSE target, in 'layers' mode, of every layer merged into one tree (see `servesMerged`). */
export const mergedTarget = (mountpoint: string) => join(mountpoint, 'merged');

/**
 * Whether 'layers' mode also mounts the image's layers merged (at `mergedTarget`): when every layer
 * is served and there are several. A container's lower dir is then that one mount instead of a
 * stack of per-layer mounts: overlayfs looks a name up once instead of once per layer (Python's
 * imports miss in most directories they try), and the read-ahead heuristics see the whole image
 * (a module in one layer importing modules in another).
 */
export const servesMerged = (layers: ReadonlyArray<{ lazy: boolean }>) => layers.length > 1 && layers.every((l) => l.lazy);

export function planImageMount(p: PlanInput): MountPlan {
  const upper = p.upper ? { upperdir: join(p.upper, 'upper'), workdir: join(p.upper, 'work') } : undefined;
  const upperDirs = upper ? [upper.upperdir, upper.workdir] : [];
  if (p.mode === 'layers') {
    // Layers without a TOC are containerd's to unpack: nothing is mounted for them.
    const fuse: FuseMountPlan[] = p.layers.flatMap((l, i) => (l.lazy ? [{ target: layerTarget(p.mountpoint, i), layer: i }] : []));
    if (servesMerged(p.layers)) fuse.push({ target: mergedTarget(p.mountpoint), layer: 'merged' });
    return { dirs: fuse.map((f) => f.target), fuse };
  }
  if (p.mode === 'merged') {
    const target = upper ? join(p.workDir, 'lower') : p.mountpoint;
    return { dirs: [target, ...upperDirs], fuse: [{ target, layer: 'merged' }], ...(upper ? { overlay: { target: p.mountpoint, lowers: [target], upper } } : {}) };
  }
  const fuse = p.layers.map((_, i) => ({ target: join(p.workDir, 'layers', String(i)), layer: i }));
  const lowers = fuse.map((f) => f.target).reverse();
  const dirs = [...lowers, ...upperDirs];
  if (!upper && lowers.length < 2) {
    // overlayfs without an upper layer needs two lower layers.
    const empty = join(p.workDir, 'empty');
    lowers.push(empty);
    dirs.push(empty);
  }
  return { dirs, fuse, overlay: { target: p.mountpoint, lowers, ...(upper ? { upper } : {}) } };
}

/**
 * overlayfs mount options, in the order containerd's overlay snapshotter writes them; shared by
 * `starling mount` and the snapshotter's answers. Paths with ',' ':' or '\' cannot be carried.
 */
export function overlayOptions(lowers: string[], upper: UpperDirs | undefined, extra: string[] = []): string[] {
  for (const p of [...lowers, upper?.upperdir ?? '', upper?.workdir ?? '']) {
    if (/[,:\\]/.test(p)) throw new Error(`overlay: path ${JSON.stringify(p)} contains ',' ':' or '\\', which overlayfs options cannot carry`);
  }
  return [...extra, ...(upper ? [`workdir=${upper.workdir}`, `upperdir=${upper.upperdir}`] : []), `lowerdir=${lowers.join(':')}`];
}
