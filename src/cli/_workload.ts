// Runs a command inside an image's root filesystem the way a container would start: chroot to the
// root, chdir to the image's WorkingDir, the image's Env as the whole environment. Used by
// `starling record` and by the start-up benchmark. (util-linux `unshare --root --wd` does the
// chroot + chdir without needing a shell in the image.)
import { spawn } from 'node:child_process';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { containerCommand } from '../oci/container-command.js';
import type { ImageConfig } from '../oci/types.js';

export interface WorkloadResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** ms from start until stdout first had a line containing `readyLine` (undefined: never). */
  readyMs?: number;
  /** ms from start until the process exited. */
  exitMs: number;
}

/** Runs `cmd` with `root` as its root directory. `root` must be writable (a /tmp is created). */
export async function runInRootfs(root: string, config: ImageConfig, cmd: string[], opts: { readyLine?: string; echo?: boolean } = {}): Promise<WorkloadResult> {
  if (cmd.length === 0) throw new Error('no command to run');
  // Programs expect a writable /tmp (gcc puts its intermediate files there).
  await mkdir(join(root, 'tmp'), { recursive: true });
  await chmod(join(root, 'tmp'), 0o1777);
  const { env, workingDir } = containerCommand(config);
  const t0 = performance.now();
  const child = spawn('unshare', [`--root=${root}`, `--wd=${workingDir}`, '--', ...cmd], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let readyMs: number | undefined;
  child.stdout.on('data', (d: Buffer) => {
    if (opts.echo) process.stdout.write(d);
    stdout += d.toString();
    if (readyMs === undefined && opts.readyLine !== undefined && stdout.split('\n').some((l) => l.includes(opts.readyLine!))) readyMs = performance.now() - t0;
  });
  child.stderr.on('data', (d: Buffer) => {
    if (opts.echo) process.stderr.write(d);
    stderr += d.toString();
  });
  const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, sig) => resolve([code, sig]));
  });
  return { exitCode, signal, stdout, stderr, readyMs, exitMs: performance.now() - t0 };
}
