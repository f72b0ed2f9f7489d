// Filesystem errors carry the errno name the FUSE adapter returns to the kernel.
export type Errno = 'ENOENT' | 'ENOTDIR' | 'EIO' | 'ENODATA' | 'EINVAL' | 'ENAMETOOLONG';

export class FsError extends Error {
  constructor(
    readonly code: Errno,
    message: string = code,
  ) {
    super(message);
  }
}
