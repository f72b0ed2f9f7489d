// The floor under every FUSE number in bench/fs: a fuse-native filesystem that answers from constants
// (no tree, no cache, no fetch) with the same options as Starling's mount. What `find` and small-file
// reads cost here is the kernel ↔ libfuse ↔ JS round trip alone; Starling cannot go below it without
// leaving fuse-native. Run as a child process: `node --import tsx bench/fs/null-fuse.ts MOUNTPOINT
// FILES SIZE [DIRS]` prints "ready" once mounted and unmounts on SIGINT/SIGTERM.
// (src/fs/fuse.ts is the only module of Starling that touches fuse-native; this is a measurement of
// the dependency itself, not part of Starling.) With DIRS, the FILES files are spread over DIRS
// directories under the root (d0/f0, d1/f1, …), the shape of bench/fs's many-file layer.
import Fuse from 'fuse-native';

const [mountpoint, filesArg, sizeArg, dirsArg = '0'] = process.argv.slice(2);
const files = Number(filesArg);
const size = Number(sizeArg);
const dirs = Number(dirsArg);
if (!mountpoint || !(files > 0) || !(size > 0) || !(dirs >= 0)) throw new Error('usage: null-fuse.ts MOUNTPOINT FILES SIZE [DIRS]');

const DAY = 86_400;
const names = (from: number, step: number) => {
  const out: string[] = [];
  for (let i = from; i < files; i += step) out.push(`f${i}`);
  return out;
};
const listing = (path: string): string[] => {
  if (dirs === 0) return names(0, 1);
  if (path === '/') return Array.from({ length: dirs }, (_, i) => `d${i}`);
  return names(Number(path.slice(2)), dirs);
};
const isDir = (path: string) => path === '/' || (dirs > 0 && /^\/d\d+$/.test(path));
const stat = (dir: boolean) => ({ mtime: 0, atime: 0, ctime: 0, size: dir ? 4096 : size, mode: dir ? 0o40755 : 0o100644, uid: 0, gid: 0, nlink: dir ? 2 : 1, ino: 0, rdev: 0, blksize: 4096, blocks: 0, dev: 0 });
// Starling's mount options (src/fs/fuse.ts) but use_ino (these constant stats have no inode numbers):
// without `ro` the kernel drops the cached atime after every read and asks for the attributes again.
class NullFuse extends Fuse {
  protected override _fuseOptions(): string {
    const base = super._fuseOptions();
    const extra = `ro,negative_timeout=${DAY}`;
    return base ? `${base},${extra}` : `-o${extra}`;
  }
}
const fuse = new NullFuse(
  mountpoint,
  {
    getattr: (path, cb) => cb(0, stat(isDir(path))),
    readdir: (path, cb) => cb(0, listing(path)),
    open: (_path, _flags, cb) => cb((Fuse as unknown as Record<string, number>).ENOSYS!), // as Starling: no OPEN or RELEASE after the first
    read: (_path, _fd, buf, len, pos, cb) => {
      const n = Math.max(0, Math.min(len, size - pos));
      buf.fill(0x61, 0, n);
      cb(n);
    },
  },
  { timeout: 120_000, allowOther: true, defaultPermissions: true, kernelCache: true, entryTimeout: DAY, attrTimeout: DAY },
);
fuse.mount((err) => {
  if (err) throw err;
  console.log('ready');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => fuse.unmount(() => process.exit(0)));
