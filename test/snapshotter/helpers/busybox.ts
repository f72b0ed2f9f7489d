// The bottom layer of the containerd tests' images: busybox (Debian's static binary) with sh a link
// to it, as a tar file.
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Writes DIR/busybox.tar (its tree in DIR/rootfs) and returns its path. */
export async function busyboxTar(dir: string): Promise<string> {
  const rootfs = join(dir, 'rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await copyFile('/bin/busybox', join(rootfs, 'bin/busybox'));
  await chmod(join(rootfs, 'bin/busybox'), 0o755);
  await symlink('busybox', join(rootfs, 'bin/sh'));
  const tar = join(dir, 'busybox.tar');
  await run('tar', ['-C', rootfs, '-cf', tar, '.']);
  return tar;
}
