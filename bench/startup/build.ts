// Builds a benchmark image (gzip layers, OCI layout) from its recipe, cached on disk under
// <cacheDir>/<name>-<key>/gzip. The key hashes the recipe and every selected file's path, size,
// mtime and mode, so a changed machine file or recipe builds a new image; content is not re-read.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { access, mkdir, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { buildImage } from '../../test/fixtures/image.js';
import { debFileBytes, fetchDebs, resolveDebs, unpackDebs } from './debs.js';
import type { ImageRecipe, GeneratedLayer } from './images.js';
import { selectLayer, Selection, type SelectedEntry } from './rootfs.js';

export interface BuiltBenchImage {
  recipe: ImageRecipe;
  /** `<cacheDir>/<name>-<key>`: holds the layouts of every form of this image. */
  dir: string;
  key: string;
  /** OCI layout of the original gzip image (tag `latest`). */
  gzipLayout: string;
  /** Uncompressed bytes of regular files per layer, for the report. */
  layerBytes: number[];
}

export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

const runningTools = new Set<ChildProcess>();

/** Stops every tool runTool started that is still running (the harness is being interrupted). */
export function killRunningTools(): void {
  for (const child of runningTools) child.kill('SIGTERM');
}

/** Runs a command, rejecting with its stderr when it fails. */
export function runTool(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    runningTools.add(child);
    child.once('close', () => runningTools.delete(child));
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${err.trim()}`))));
  });
}

/** Regular files under `roots` in name order until `bytes` (the sources of a concatenated file). */
async function concatenationSources(roots: string[], bytes: number): Promise<SelectedEntry[]> {
  const sel = new Selection();
  const walk = async (dir: string): Promise<void> => {
    for (const ent of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (sel.bytes >= bytes) return;
      const p = join(dir, ent.name);
      if (ent.isDirectory()) await walk(p);
      else if (ent.isFile()) await sel.add(p, false);
    }
  };
  for (const root of roots) if (sel.bytes < bytes) await walk(root);
  if (sel.bytes < bytes) throw new Error(`benchmark image: only ${sel.bytes} bytes of files under ${roots.join(', ')}, need ${bytes}`);
  return [...sel.entries.values()].filter((e) => e.type === 'file');
}

async function writeConcatenated(out: string, sources: SelectedEntry[], bytes: number): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  const sink = createWriteStream(out);
  let left = bytes;
  for (const src of sources) {
    if (left === 0) break;
    const take = Math.min(left, src.size);
    if (take === 0) continue;
    for await (const chunk of createReadStream(`/${src.path}`, { start: 0, end: take - 1 })) {
      if (!sink.write(chunk)) await once(sink, 'drain');
    }
    left -= take;
  }
  await new Promise<void>((resolve, reject) => sink.end((err?: Error | null) => (err ? reject(err) : resolve())));
  const size = (await stat(out)).size;
  if (size !== bytes) throw new Error(`benchmark image: ${out} has ${size} bytes, want ${bytes}`);
}

/** What a generated layer is made from besides its recipe: found (and downloaded) before the cache key. */
interface GeneratedInputs {
  concatSources?: SelectedEntry[];
  /** Paths of the layer's downloaded .deb files. */
  debs: string[];
}

/** Relative paths of everything under `root`, sorted (a parent before its children). */
async function treePaths(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const ent of await readdir(join(root, rel), { withFileTypes: true })) {
    const p = rel === '' ? ent.name : `${rel}/${ent.name}`;
    out.push(p);
    if (ent.isDirectory()) out.push(...(await treePaths(root, p)));
  }
  return rel === '' ? out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)) : out;
}

/** Writes the staging directory of a generated layer; returns its relative paths, parents first. */
async function stageGenerated(gen: GeneratedLayer, stage: string, inputs: GeneratedInputs): Promise<string[]> {
  await mkdir(stage, { recursive: true });
  await unpackDebs(inputs.debs, stage);
  for (const [rel, content] of Object.entries(gen.files ?? {})) {
    await mkdir(dirname(join(stage, rel)), { recursive: true });
    await writeFile(join(stage, rel), content);
  }
  for (const [rel, target] of Object.entries(gen.symlinks ?? {})) {
    await mkdir(dirname(join(stage, rel)), { recursive: true });
    await symlink(target, join(stage, rel));
  }
  if (gen.concatenated) await writeConcatenated(join(stage, gen.concatenated.path), inputs.concatSources!, gen.concatenated.bytes);
  return treePaths(stage);
}

/** A GNU-format tar of `paths` (relative to `root`, no recursion: the list is complete). */
async function writeTar(root: string, paths: string[], out: string, fixedMtime: boolean): Promise<void> {
  const list = `${out}.list`;
  await writeFile(list, paths.join('\0') + '\0');
  const args = ['--create', '--file', out, '--directory', root, '--no-recursion', '--numeric-owner', '--format=gnu', '--null', '--files-from', list];
  if (fixedMtime) args.push('--mtime=2024-01-02 03:04:05Z');
  await runTool('tar', args);
  await rm(list);
}

/** Builds (or finds in the cache) the gzip form of `recipe`. */
export async function buildBenchImage(recipe: ImageRecipe, cacheDir: string, log: (msg: string) => void): Promise<BuiltBenchImage> {
  const selections: (Selection | undefined)[] = [];
  const generated: (GeneratedInputs | undefined)[] = [];
  // The report's targets are not image content.
  const { lazyTargets: _targets, ...content } = recipe;
  const hash = createHash('sha256').update(JSON.stringify(content));
  for (const layer of recipe.layers) {
    if ('host' in layer) {
      const sel = await selectLayer(layer.host, selections.filter((s): s is Selection => s !== undefined));
      selections.push(sel);
      generated.push(undefined);
      for (const p of sel.paths()) {
        const e = sel.entries.get(p)!;
        // A directory's mtime changes whenever something is added anywhere in it: not content.
        hash.update(`${e.path}\0${e.type}\0${e.size}\0${e.type === 'dir' ? 0 : e.mtimeMs}\0${e.mode}\n`);
      }
    } else {
      selections.push(undefined);
      const c = layer.generated.concatenated;
      const sources = c ? await concatenationSources(c.roots, c.bytes) : undefined;
      for (const e of sources ?? []) hash.update(`${e.path}\0${e.size}\0${e.mtimeMs}\n`);
      const debs = layer.generated.debs ? await resolveDebs(layer.generated.debs) : [];
      for (const d of debs) hash.update(`${d.file}\0${d.sha256}\n`);
      generated.push({ concatSources: sources, debs: await fetchDebs(debs, join(cacheDir, 'debs')) });
    }
  }
  const key = hash.digest('hex').slice(0, 16);
  const dir = join(cacheDir, `${recipe.name}-${key}`);
  const gzipLayout = join(dir, 'gzip');
  const layerBytes: number[] = [];
  for (const [i, l] of recipe.layers.entries()) {
    if ('host' in l) {
      layerBytes.push(selections[i]!.bytes);
      continue;
    }
    let bytes = Object.values(l.generated.files ?? {}).reduce((n, c) => n + Buffer.byteLength(c), 0) + (l.generated.concatenated?.bytes ?? 0);
    for (const deb of generated[i]!.debs) bytes += await debFileBytes(deb);
    layerBytes.push(bytes);
  }
  const result = { recipe, dir, key, gzipLayout, layerBytes };
  if (await exists(join(gzipLayout, 'index.json'))) return result;

  log(`building image ${recipe.name} (${(layerBytes.reduce((a, b) => a + b, 0) / 1e6).toFixed(0)} MB in ${recipe.layers.length} layers) into ${dir}`);
  const work = join(dir, `.build-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  try {
    const tars: string[] = [];
    for (const [i, layer] of recipe.layers.entries()) {
      const tar = join(work, `${i}-${layer.name}.tar`);
      if ('host' in layer) await writeTar('/', selections[i]!.paths(), tar, false);
      else {
        const stage = join(work, `${i}-${layer.name}.stage`);
        await writeTar(stage, await stageGenerated(layer.generated, stage, generated[i]!), tar, true);
        await rm(stage, { recursive: true, force: true });
      }
      tars.push(tar);
    }
    const layout = join(work, 'gzip');
    await buildImage(
      layout,
      {
        layers: tars.map((tar) => ({ tar })),
        config: { config: { Env: recipe.env, WorkingDir: recipe.workingDir, Cmd: recipe.workload.cmd, Labels: { 'org.starling.bench.image': recipe.name } } },
      },
      'latest',
    );
    await rename(layout, gzipLayout);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return result;
}
