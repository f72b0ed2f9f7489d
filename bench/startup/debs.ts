// Debian packages a benchmark layer holds that this machine does not have installed (nor may:
// the sandbox rewrites /usr/lib/python3/dist-packages): resolved to the apt mirror's candidate
// versions, downloaded once into a cache folder, checked against the mirror's SHA-256 and unpacked
// with `dpkg-deb -x` into the layer's staging directory. No maintainer script runs: what one would
// set up (an alternatives link) is the recipe's `symlinks`.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One .deb of the mirror: its file name (which carries the version) and digest. */
export interface DebFile {
  file: string;
  sha256: string;
}

/** The mirror's candidate .deb of each package (`apt-get download --print-uris`: nothing is downloaded). */
export async function resolveDebs(packages: string[]): Promise<DebFile[]> {
  const { stdout } = await run('apt-get', ['download', '--print-uris', ...packages]);
  const debs = [...stdout.matchAll(/^'\S+' (\S+\.deb) \d+ SHA256:([0-9a-f]{64})$/gm)].map((m) => ({ file: m[1]!, sha256: m[2]! }));
  if (debs.length !== packages.length) throw new Error(`benchmark image: apt resolved ${debs.length} .deb files for ${packages.length} packages (${packages.join(', ')}): ${stdout.trim()}`);
  return debs;
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** Paths of `debs` in `dir`, downloaded first if missing; every file is checked against its digest. */
export async function fetchDebs(debs: DebFile[], dir: string): Promise<string[]> {
  const have = new Set(await readdir(dir).catch(() => []));
  const missing = debs.filter((d) => !have.has(d.file));
  if (missing.length > 0) {
    // Into a directory of its own first, so an interrupted download never looks cached.
    const tmp = join(dir, `.download-${process.pid}`);
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    try {
      await run('apt-get', ['download', ...missing.map((d) => d.file.slice(0, d.file.indexOf('_')))], { cwd: tmp });
      for (const d of missing) await rename(join(tmp, d.file), join(dir, d.file));
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  const paths: string[] = [];
  for (const d of debs) {
    const path = join(dir, d.file);
    if ((await sha256(path)) !== d.sha256) throw new Error(`benchmark image: ${path} does not match the mirror's SHA-256 ${d.sha256} (remove it to download it again)`);
    paths.push(path);
  }
  return paths;
}

/** Bytes of the regular files in a .deb (its `dpkg-deb --contents` listing). */
export async function debFileBytes(path: string): Promise<number> {
  const { stdout } = await run('dpkg-deb', ['--contents', path], { maxBuffer: 64 << 20 });
  return [...stdout.matchAll(/^-\S+\s+\S+\s+(\d+)\s/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

export async function unpackDebs(paths: string[], stage: string): Promise<void> {
  for (const p of paths) await run('dpkg-deb', ['-x', p, stage]);
}
