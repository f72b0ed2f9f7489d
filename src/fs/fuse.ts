// The FUSE adapter: the only file that touches fuse-native. It translates path-based callbacks to
// LazyFs calls and errors to errnos, nothing more. All callbacks answer asynchronously on the JS main
// thread; nothing here blocks it.
import Fuse from 'fuse-native';
import { unmountSyscall } from '../format/native.js';
import { FsError } from './errors.js';
import type { DirEntry, LazyFs, Stat } from './lazyfs.js';

/** A day: image content never changes, so the kernel may keep entries, attributes and pages. */
const CACHE_SECONDS = 86_400;

class StarlingFuse extends Fuse {
  // use_ino: report our inode numbers (hardlinks share one); ro: image content is immutable.
  // fuse-native has no options for these, and libfuse takes them from the same -o string.
  protected override _fuseOptions(): string {
    const base = super._fuseOptions();
    const extra = `use_ino,ro,negative_timeout=${CACHE_SECONDS}`;
    return base ? `${base},${extra}` : `-o${extra}`;
  }
}

// fuse-native unmounts by running `fusermount -uz ${JSON.stringify(mountpoint)}` through a shell:
// a tab or newline in the path reaches fusermount as `\t` (the mount stays, the daemon waits for
// it), and `$(…)` in the path would run as a command. umount2(MNT_DETACH) is what -uz does, as root
// (which mounting with allow_other needs anyway), without a shell or a process.
Fuse.unmount = (mnt, cb) => void unmountSyscall(mnt, true).then(() => cb(null), cb);

// fuse-native exposes errnos as negative numbers on the class (Fuse.ENOENT = -2, …).
const ERRNOS = Fuse as unknown as Record<string, number>;

function errno(err: unknown): number {
  return ERRNOS[err instanceof FsError ? err.code : 'EIO'] ?? ERRNOS.EIO!;
}

// Fixed-shape literals, not spreads: find over a 100k-file image makes ~200k of these, and the
// spread copies showed as 5 % of the daemon's CPU in a profile.
function fuseStat(st: Stat) {
  const t = st.mtimeMs;
  return { ino: st.ino, mode: st.mode, nlink: st.nlink, uid: st.uid, gid: st.gid, size: st.size, rdev: st.rdev, blksize: st.blksize, blocks: st.blocks, atime: t, mtime: t, ctime: t };
}

/** libfuse 2 takes only st_ino and the type bits of st_mode from a readdir stat; times are given so fuse-native does not call Date.now() for each. */
function direntStat(d: DirEntry) {
  return { ino: d.ino, mode: d.mode, nlink: 1, uid: 0, gid: 0, size: 0, rdev: 0, blksize: 0, blocks: 0, atime: 0, mtime: 0, ctime: 0 };
}

export interface FuseMount {
  readonly mountpoint: string;
  unmount(): Promise<void>;
}

export interface FuseMountOptions {
  /** Per-operation timeout in ms before the kernel gets an error (size it for slow networks). */
  timeoutMs: number;
  /** Name shown in /proc/mounts. */
  fsname: string;
  /** Called when a read fails with something other than a plain FsError. */
  log(message: string): void;
}

/**
 * Mounts the filesystem `makeFs` returns at `mountpoint`. `makeFs` is called at the first request,
 * not before: a layer's own mount beside the image's merged one (containerd's per-layer lower dirs)
 * may never be asked, and its tree is then never built.
 */
export async function mountFuse(mountpoint: string, makeFs: () => LazyFs, opts: FuseMountOptions): Promise<FuseMount> {
  let made: LazyFs | undefined;
  const fsOf = () => (made ??= makeFs());
  const sync = <T>(fn: () => T, cb: (err: number, value?: T) => void) => {
    let value: T;
    try {
      value = fn();
    } catch (err) {
      return cb(errno(err));
    }
    cb(0, value);
  };
  const fuse = new StarlingFuse(
    mountpoint,
    {
      getattr: (path, cb) => sync(() => fuseStat(fsOf().getattr(path)), cb),
      readdir: (path, cb) =>
        sync(() => fsOf().readdir(path), (err, v) => (err ? cb(err) : cb(0, v!.names, v!.entries.map(direntStat)))),
      readlink: (path, cb) => sync(() => fsOf().readlink(path), cb),
      getxattr: (path, name, _pos, cb) => sync(() => fsOf().getxattr(path, name), cb),
      listxattr: (path, cb) => sync(() => fsOf().listxattr(path), cb),
      statfs: (_path, cb) => sync(() => ({ ...fsOf().statfs() }), cb),
      // The first OPEN answers ENOSYS, so the kernel sends no OPEN or RELEASE for files again and keeps
      // their pages across opens (its default without open; see LazyFs).
      open: (_path, _flags, cb) => cb(ERRNOS.ENOSYS!),
      read: (path, _fd, buf, len, pos, cb) => {
        fsOf().read(path, pos, len).then(
          (data) => cb(data.copy(buf, 0, 0, Math.min(len, data.length))),
          (err) => {
            if (!(err instanceof FsError)) opts.log(`read ${path}: ${(err as Error).stack ?? err}`);
            cb(errno(err));
          },
        );
      },
    },
    {
      timeout: opts.timeoutMs,
      allowOther: true,
      defaultPermissions: true,
      kernelCache: true,
      entryTimeout: CACHE_SECONDS,
      attrTimeout: CACHE_SECONDS,
      fsname: opts.fsname,
      subtype: 'starling',
    },
  );
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  return {
    mountpoint,
    unmount: () => new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve()))),
  };
}
