// Mount table helpers for recovering what a crashed daemon left behind: its mountpoint (an overlay or
// a FUSE mount whose server is gone, ENOTCONN) and its private FUSE mounts in the run directory.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { OVERLAY_SOURCE } from './executor.js';

const run = promisify(execFile);

export interface MountInfo {
  mountpoint: string;
  fstype: string;
  source: string;
}

/** A mount made by a Starling daemon (its FUSE mounts, or the overlay it stacks). */
export function isStarlingMount(m: MountInfo): boolean {
  return m.fstype === 'fuse.starling' || (m.fstype === 'overlay' && m.source === OVERLAY_SOURCE);
}

/** Current mounts, from /proc/self/mountinfo (octal escapes decoded). */
export async function listMounts(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const fields = line.split(' ');
      const sep = fields.indexOf('-');
      return { mountpoint: unescape(fields[4]!), fstype: fields[sep + 1] ?? '', source: unescape(fields[sep + 2] ?? '') };
    });
}

export async function isMountpoint(path: string): Promise<boolean> {
  const want = resolve(path);
  return (await listMounts()).some((m) => m.mountpoint === want);
}

/** Whether anything is mounted at `path` or below it (a 'layers' mount has its mounts below). */
export async function mountedAtOrBelow(path: string): Promise<boolean> {
  const at = resolve(path);
  return (await listMounts()).some((m) => m.mountpoint === at || m.mountpoint.startsWith(`${at}/`));
}

/** Detaches a mount even if busy or its FUSE server is dead (fusermount -uz, else umount -l). */
export async function lazyUnmount(path: string): Promise<void> {
  try {
    await run('fusermount', ['-uz', path]);
  } catch {
    await run('umount', ['-l', path]);
  }
}

/** Lazily unmounts Starling's mounts at `paths` and below each of `dirs` (never someone else's mount). */
export async function detachAll(paths: string[], dirs: string[]): Promise<string[]> {
  const prefixes = dirs.map((d) => resolve(d) + '/');
  const targets = new Set(paths.map((p) => resolve(p)));
  const mounts = (await listMounts()).filter((m) => isStarlingMount(m) && (targets.has(m.mountpoint) || prefixes.some((p) => m.mountpoint.startsWith(p))));
  // Unmount in reverse mount order, so upper mounts go before what they stack on.
  const detached: string[] = [];
  for (const m of mounts.reverse()) {
    await lazyUnmount(m.mountpoint);
    detached.push(m.mountpoint);
  }
  return detached;
}
