// The Starling the benchmark measures. In a checkout: the committed src/ (git HEAD, not whatever is
// being edited in the working tree) compiled once into a snapshot directory, so nothing changes
// during a run and no TypeScript is compiled inside a timed phase; started as users start it, by
// its `bin/starling`. In an installed package (no sources): the package's own command.
import { createHash, type Hash } from 'node:crypto';
import { cp, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exists, runTool } from './build.js';

export interface Engine {
  /** argv prefix that runs the snapshot's CLI. */
  argv: string[];
  /** What is measured: `commit <12 hex digits>` of a snapshot, or `package starling@<version>`. */
  version: string;
  /**
   * Hash of the compiled code conversion depends on (format/, convert/, oci/): converted images
   * are cached under it, so a change to the writers converts again instead of measuring old blobs.
   */
  convertKey: string;
}

async function hashTree(dir: string, hash: Hash): Promise<void> {
  for (const ent of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) await hashTree(p, hash);
    else if (ent.name.endsWith('.js')) hash.update(`${ent.name}\0`).update(await readFile(p));
  }
}

async function convertKey(root: string): Promise<string> {
  const hash = createHash('sha256');
  for (const sub of ['format', 'convert', 'oci']) await hashTree(join(root, 'dist', sub), hash);
  return hash.digest('hex').slice(0, 12);
}

/**
 * In a checkout (`packageRoot` has src/), the snapshot in `dir`: compiled there first unless
 * `reuse` and it is already there. In an installed package, the package itself (`dir` is unused).
 */
export async function buildEngine(packageRoot: string, dir: string, reuse = false): Promise<Engine> {
  if (!(await exists(join(packageRoot, 'src/cli/main.ts')))) {
    const { name, version } = JSON.parse(await readFile(join(packageRoot, 'package.json'), 'utf8')) as { name: string; version: string };
    return { argv: [join(packageRoot, 'bin/starling')], version: `package ${name}@${version}`, convertKey: await convertKey(packageRoot) };
  }
  const launcher = join(dir, 'bin/starling');
  if (!(reuse && (await exists(launcher)))) await compile(packageRoot, dir);
  // The native addon (native/build/, made by `npm ci`, not versioned) beside dist/ as in the
  // package: dist/format/native.js loads ../../native/build/Release/. A snapshot
  // reused from before this link existed gets it now.
  if (!(await exists(join(dir, 'native')))) {
    await rm(join(dir, 'native'), { force: true }); // a dangling link
    await symlink(join(packageRoot, 'native'), join(dir, 'native'));
  }
  const commit = (await readFile(join(dir, 'COMMIT'), 'utf8')).trim();
  return { argv: [launcher], version: `commit ${commit.slice(0, 12)}`, convertKey: await convertKey(dir) };
}

async function compile(repoRoot: string, dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  const source = join(dir, 'source');
  await mkdir(source, { recursive: true });
  const commit = (await runTool('git', ['-C', repoRoot, 'rev-parse', 'HEAD'])).trim();
  const archive = join(dir, 'source.tar');
  await runTool('git', ['-C', repoRoot, 'archive', '--format=tar', '-o', archive, commit, 'src', 'tsconfig.json', 'bin']);
  await runTool('tar', ['-xf', archive, '-C', source]);
  await rm(archive);
  // The commands as committed, beside dist/ as in the package (bin/starling.js imports ../dist/):
  // copied, not linked, since Node resolves a script's imports from its real path.
  await cp(join(source, 'bin'), join(dir, 'bin'), { recursive: true });
  // Files the compiled code reads from the package at run time, next to dist/ as in the package
  // (the snapshotter's .proto files, src/snapshotter/ seen from dist/snapshotter/).
  await symlink(join(source, 'src'), join(dir, 'src'));
  // Packages resolve from the repository's node_modules, and `"type": "module"` makes tsc emit ESM;
  // both must be in place before compiling, or a snapshot outside the repository (--out /tmp/…)
  // compiles to CommonJS without Node's types.
  await symlink(join(repoRoot, 'node_modules'), join(dir, 'node_modules'));
  await writeFile(join(dir, 'package.json'), '{"type":"module"}\n');
  // tsc emits even when some file has type errors; the run's commands fail loudly if it matters.
  const tscErrors = await runTool(join(repoRoot, 'node_modules/.bin/tsc'), ['-p', join(source, 'tsconfig.json'), '--outDir', join(dir, 'dist')]).then(
    () => '',
    (err: Error) => err.message,
  );
  if (!(await exists(join(dir, 'dist/cli/main.js')))) throw new Error(`could not compile Starling for the benchmark: ${tscErrors}`);
  await writeFile(join(dir, 'COMMIT'), `${commit}\n`);
}

/** Runs a Starling command to completion; rejects with its stderr on failure. */
export function starling(engine: Engine, args: string[], env?: Record<string, string>): Promise<string> {
  return runTool(engine.argv[0]!, [...engine.argv.slice(1), ...args], { env });
}
