// The executor of mount plans (plan.ts): creates the directories, mounts each FUSE mount with the
// filesystem the caller makes for its layer(s), then the overlay; `unmount()` undoes what was done,
// in reverse order, also after a plan failed half-way, down to the directories it created (so that
// a mountpoint `--mode layers` filled with MOUNTPOINT/N is empty again for the next mount).
import { mkdir, rmdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { mountSyscall, unmountSyscall } from '../format/native.js';
import type { FuseMount } from '../fs/fuse.js';
import type { LazyFs } from '../fs/lazyfs.js';
import { overlayOptions, type FuseMountPlan, type MountPlan } from './plan.js';

/** The source name that marks an overlay as Starling's (stale-mount recovery looks for it). */
export const OVERLAY_SOURCE = 'starling-overlay';

export interface ExecuteOptions {
  /** The filesystem a FUSE mount of the plan serves; asked for at that mount's first request (see mountFuse). */
  fsFor(layer: FuseMountPlan['layer']): LazyFs;
  fsname: string;
  timeoutMs: number;
  log(message: string): void;
}

export class PlanMounts {
  private readonly fuse: FuseMount[] = [];
  private overlay?: string;
  /** Directories this executor created, parents before children. */
  private readonly made: string[] = [];

  /** Carries `plan` out; on failure what got mounted stays recorded for `unmount()`. */
  async apply(plan: MountPlan, opts: ExecuteOptions): Promise<void> {
    for (const dir of plan.dirs) {
      // mkdir names the first directory it had to create; the ones from there down to `dir` are ours.
      const first = await mkdir(dir, { recursive: true });
      if (first === undefined) continue;
      const chain = [];
      for (let d = dir; d !== first && d !== dirname(d); d = dirname(d)) chain.unshift(d);
      this.made.push(first, ...chain);
    }
    // Loaded by the caller ahead of time (while the TOCs were on their way): a cached import here.
    const { mountFuse } = await import('../fs/fuse.js');
    // All at once: each waits for its stat calls and the kernel's INIT round trip, which overlap
    // (a containerd image's 5-7 mounts took 30-140 ms one after the other).
    const mounts = await Promise.allSettled(
      plan.fuse.map((f) => mountFuse(f.target, () => opts.fsFor(f.layer), { timeoutMs: opts.timeoutMs, fsname: f.layer === 'merged' ? opts.fsname : `${opts.fsname}#${f.layer}`, log: opts.log })),
    );
    for (const m of mounts) if (m.status === 'fulfilled') this.fuse.push(m.value);
    const failed = mounts.find((m) => m.status === 'rejected');
    if (failed) throw failed.reason;
    if (plan.overlay) {
      await mountSyscall(OVERLAY_SOURCE, plan.overlay.target, 'overlay', overlayOptions(plan.overlay.lowers, plan.overlay.upper).join(','));
      this.overlay = plan.overlay.target;
    }
  }

  /** Unmounts the overlay, then the FUSE mounts, last first; returns what could not be unmounted. */
  async unmount(): Promise<string[]> {
    const errors: string[] = [];
    if (this.overlay) {
      const target = this.overlay;
      await unmountSyscall(target, false).catch(() => unmountSyscall(target, true).catch((e: Error) => errors.push(e.message)));
      this.overlay = undefined;
    }
    for (const f of this.fuse.splice(0).reverse()) await f.unmount().catch((e: Error) => errors.push(`${f.mountpoint}: ${e.message}`));
    // Only when everything came off: rmdir of an empty directory, never a recursive removal.
    if (errors.length === 0) for (const dir of this.made.splice(0).reverse()) await rmdir(dir).catch(() => {});
    return errors;
  }
}
