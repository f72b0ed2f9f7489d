// The floor under every FUSE number in bench/fs: a fuse-native filesystem that answers from constants
// (no tree, no cache, no fetch) with the same options as Starling's mount. What `find` and small-file
// reads cost here is the kernel ↔ libfuse ↔ JS round trip alone; Starling cannot go below it without
// leaving fuse-native. Run as a child process: `node --import tsx bench/fs/null-fuse.ts MOUNTPOINT
// FILES SIZE` prints "ready" once mounted and unmounts on SIGINT/SIGTERM.
// (src/fs/fuse.ts is the only module of Starling that touches fuse-native; this is a measurement of
// the dependency itself, not part of Starling.)
import Fuse from 'fuse-native';

const [mountpoint, filesArg, sizeArg] = process.argv.slice(2);
const files = Number(filesArg);
const size = Number(sizeArg);
if (!mountpoint || !(files > 0) || !(size > 0)) throw new Error('usage: null-fuse.ts MOUNTPOINT FILES SIZE');

const DAY = 86_400;
const names = Array.from({ length: files }, (_, i) => `f${i}`);
const stat = (dir: boolean) => ({ mtime: 0, atime: 0, ctime: 0, size: dir ? 4096 : size, mode: dir ? 0o40755 : 0o100644, uid: 0, gid: 0, nlink: dir ? 2 : 1, ino: 0, rdev: 0, blksize: 4096, blocks: 0, dev: 0 });
const fuse = new Fuse(
  mountpoint,
  {
    getattr: (path, cb) => cb(0, stat(path === '/')),
    readdir: (_path, cb) => cb(0, names),
    open: (_path, _flags, cb) => cb(0, 1),
    release: (_path, _fd, cb) => cb(0),
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
