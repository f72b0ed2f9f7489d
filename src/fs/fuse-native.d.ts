// The part of fuse-native 2.2's API that src/fs/fuse.ts uses (the package ships no types).
declare module 'fuse-native' {
  type Cb<T extends unknown[] = []> = (err: number, ...rest: T) => void;
  interface FuseStat {
    mode: number;
    uid: number;
    gid: number;
    size: number;
    dev?: number;
    nlink: number;
    ino: number;
    rdev: number;
    blksize: number;
    blocks: number;
    atime: number;
    mtime: number;
    ctime: number;
  }
  interface FuseOps {
    init?(cb: Cb): void;
    getattr?(path: string, cb: Cb<[FuseStat?]>): void;
    fgetattr?(path: string, fd: number, cb: Cb<[FuseStat?]>): void;
    readdir?(path: string, cb: Cb<[string[]?, FuseStat[]?]>): void;
    readlink?(path: string, cb: Cb<[string?]>): void;
    getxattr?(path: string, name: string, position: number, cb: Cb<[Buffer?]>): void;
    listxattr?(path: string, cb: Cb<[string[]?]>): void;
    open?(path: string, flags: number, cb: Cb<[number?]>): void;
    release?(path: string, fd: number, cb: Cb): void;
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
    statfs?(path: string, cb: Cb<[Record<string, number>?]>): void;
  }
  interface FuseOptions {
    timeout?: number | false;
    force?: boolean;
    mkdir?: boolean;
    allowOther?: boolean;
    defaultPermissions?: boolean;
    kernelCache?: boolean;
    entryTimeout?: number;
    attrTimeout?: number;
    fsname?: string;
    subtype?: string;
    debug?: boolean;
  }
  class Fuse {
    constructor(mnt: string, ops: FuseOps, opts?: FuseOptions);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    protected _fuseOptions(): string;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    static [errno: string]: unknown;
  }
  export default Fuse;
}
