// The benchmark layer: an uncompressed tar of real directories of this machine (binaries, Python and
// Perl sources, docs: large and small files mixed), always the same list in name order, cached.
import { execFile } from 'node:child_process';
import { access, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Directories (relative to /) that make up the layer; about 300 MB on the project's machines. */
export const LAYER_DIRS = ['usr/lib/gcc', 'usr/lib/python3.11', 'usr/share/doc', 'usr/share/perl'];
export const MIN_LAYER_BYTES = 200 * 1024 * 1024;

/** Path of the benchmark layer tar under `cacheDir`, built on first use. */
export async function benchLayer(cacheDir: string): Promise<{ path: string; size: number }> {
  const path = join(cacheDir, 'convert-layer.tar');
  try {
    await access(path);
  } catch {
    const tmp = `${path}.tmp-${process.pid}`;
    await run('tar', ['-C', '/', '--sort=name', '--format=pax', '-cf', tmp, ...LAYER_DIRS], { maxBuffer: 1 << 20 });
    await rename(tmp, path);
  }
  const { size } = await stat(path);
  if (size < MIN_LAYER_BYTES) throw new Error(`benchmark layer ${path} is ${size} bytes, below ${MIN_LAYER_BYTES}: ${LAYER_DIRS.join(' ')} too small here`);
  return { path, size };
}
