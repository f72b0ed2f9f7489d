// The start-up benchmark (HelloBench-style): builds the images, pushes every form to a real
// registry behind the emulated link, checks the link, then times pull/mount and run for every
// image × mode sample in shuffled order, and writes results.json, results.md and chart.svg.
import { open, mkdir, mkdtemp, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import { cpus, totalmem, release } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { runInRootfs } from '../../src/cli/_workload.js';
import { parseFooter } from '../../src/format/estargz/footer.js';
import { parseManifestPosition } from '../../src/format/zstdchunked/footer.js';
import { machineIdle } from '../../src/mount/machine-idle.js';
import { Annotation } from '../../src/oci/mediatypes.js';
import type { ImageConfig, ImageManifest } from '../../src/oci/types.js';
import { assertLinkMatches, checkLink, startEmulatedRegistry, type EmulatedRegistry } from '../net/link.js';
import type { LinkProfile } from '../net/relay.js';
import { buildBenchImage, exists, killRunningTools, runTool, type BuiltBenchImage } from './build.js';
import { buildEngine, starling, type Engine } from './engine.js';
import { imageRecipe } from './images.js';
import { ensureStargzProgram, MODE_FORM, MODE_REPO_SUFFIX, stage, type Form, type Prepared, type Staged } from './modes.js';
import { ensureContainerdTools } from './containerd.js';
import { CONTAINERD_NOTE, isContainerdMode } from './containerd-modes.js';
import { acceptanceNotes, markdownReport, summarise, svgChart, type ImageInfo, type Mode, type Results, type Sample } from './report.js';
import { PACKAGE_ROOT } from './root.js';

export interface BenchOptions {
  images: string[];
  modes: Mode[];
  profile: LinkProfile;
  samples: number;
  out: string;
  cacheDir: string;
  /** Seed of the shuffle of (image, mode) samples, recorded in the results. */
  seed: number;
  /** Size of the link check's timed download. */
  probeBytes: number;
  /** Measure even when the link check is off the profile (the results then carry a warning). */
  allowBadLink: boolean;
  /** Only build, convert, record and push the images (fills the cache), measure nothing. */
  prepareOnly?: boolean;
  /** A compiled snapshot of Starling to use (compiled there if missing), instead of a fresh one per run. */
  engineDir?: string;
  log(msg: string): void;
}

/** A small seeded PRNG (mulberry32): the run order is reproducible from the recorded seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  const next = rng(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

interface LayoutImage {
  manifest: ImageManifest;
  config: ImageConfig;
  blobPath(digest: string): string;
}

async function readLayout(dir: string): Promise<LayoutImage> {
  const blobPath = (d: string) => join(dir, 'blobs', 'sha256', d.slice('sha256:'.length));
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(await readFile(blobPath(index.manifests[0]!.digest), 'utf8')) as ImageManifest;
  const config = JSON.parse(await readFile(blobPath(manifest.config.digest), 'utf8')) as ImageConfig;
  return { manifest, config, blobPath };
}

/** Bytes of the layers' TOCs (what a lazy mount must fetch before serving anything). */
async function tocBytes(img: LayoutImage): Promise<number> {
  let total = 0;
  for (const layer of img.manifest.layers) {
    const pos = layer.annotations?.[Annotation.zstdChunkedManifestPosition];
    if (pos) {
      total += parseManifestPosition(pos, Annotation.zstdChunkedManifestPosition).length;
      continue;
    }
    const fh = await open(img.blobPath(layer.digest), 'r');
    try {
      const tail = Buffer.alloc(Math.min(51, layer.size));
      await fh.read(tail, 0, tail.length, layer.size - tail.length);
      total += layer.size - parseFooter(tail).tocOffset;
    } finally {
      await fh.close();
    }
  }
  return total;
}

const layersSize = (img: LayoutImage) => img.manifest.layers.reduce((n, l) => n + l.size, 0);

async function convert(engine: Engine, from: string, to: string, format: 'estargz' | 'zstd:chunked', extra: string[] = []): Promise<void> {
  await rm(to, { recursive: true, force: true });
  await starling(engine, ['convert', `oci:${from}:latest`, `oci:${to}:latest`, '--format', format, '--json', ...extra]);
}

async function push(layout: string, directHost: string, repo: string, tag: string): Promise<void> {
  await runTool('skopeo', ['copy', '-q', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout}:latest`, `docker://${directHost}/${repo}:${tag}`]);
}

interface PreparedImage {
  built: BuiltBenchImage;
  config: ImageConfig;
  info: ImageInfo;
}

/** Converts (cached), records the trace for the optimised form (cached) and pushes every form the modes need. */
async function prepareImage(name: string, forms: Set<Form>, modes: readonly Mode[], engine: Engine, reg: EmulatedRegistry, opts: BenchOptions): Promise<PreparedImage> {
  const recipe = imageRecipe(name);
  const built = await buildBenchImage(recipe, opts.cacheDir, opts.log);
  // Converted forms (and the trace recorded on one) are kept per version of the conversion code.
  const layout = (f: Form) => join(built.dir, f === 'gzip' ? f : `${f}-${engine.convertKey}`);
  const traceFile = join(built.dir, `trace-${engine.convertKey}.txt`);
  const repo = `bench/${name}`;
  const info: ImageInfo = { name, description: recipe.description, workload: recipe.workload.cmd, layerBytes: built.layerBytes, formBytes: {}, tocBytes: {}, lazyTargets: recipe.lazyTargets };
  const need = new Set(forms);
  if (need.has('estargz-opt')) need.add('estargz');
  for (const form of ['gzip', 'estargz', 'zstdchunked', 'estargz-opt'] as const) {
    if (!need.has(form)) continue;
    if (!(await exists(join(layout(form), 'index.json')))) {
      opts.log(`${name}: converting to ${form}`);
      if (form === 'estargz') await convert(engine, layout('gzip'), layout(form), 'estargz');
      if (form === 'zstdchunked') await convert(engine, layout('gzip'), layout(form), 'zstd:chunked');
      if (form === 'estargz-opt') await convert(engine, layout('gzip'), layout(form), 'estargz', ['--prioritize-file', traceFile]);
    }
    await push(layout(form), reg.directHost, repo, form);
    const img = await readLayout(layout(form));
    info.formBytes[form] = layersSize(img);
    if (form !== 'gzip') info.tocBytes[form] = await tocBytes(img);
    // The workload's trace, recorded on a lazy mount of the plain eStargz: the files it reads (the
    // lazy modes' bytes are stated against them) and the order of the optimised form.
    if (form === 'estargz') {
      const summaryFile = `${traceFile}.json`;
      if (!(await exists(summaryFile))) {
        opts.log(`${name}: recording the workload's file accesses`);
        const out = await starling(engine, ['record', `docker://${reg.directHost}/${repo}:estargz`, '--out', traceFile, '--json', '--', ...recipe.workload.cmd]);
        await writeFile(summaryFile, out.trim().split('\n').pop()!);
      }
      info.readBytes = (JSON.parse(await readFile(summaryFile, 'utf8')) as { bytes: number }).bytes;
    }
  }
  if (modes.includes('lazy-gzip-index')) {
    // The unconverted gzip image in a repository of its own, indexed by `starling index` (each run:
    // an index is a pass over every layer, seconds even for gcc) with the index pushed as its referrer.
    const indexed = `${repo}${MODE_REPO_SUFFIX['lazy-gzip-index']}`;
    await push(layout('gzip'), reg.directHost, indexed, 'gzip');
    opts.log(`${name}: indexing the gzip image`);
    await starling(engine, ['index', `docker://${reg.directHost}/${indexed}:gzip`, '--push', '--plain-http']);
  }
  if (modes.includes('lazy-profile')) {
    // The unchanged eStargz image in a repository of its own, with a prefetch profile of the
    // workload pushed next to it (recorded once per conversion code, pushed again into each run's registry).
    const ref = `docker://${reg.directHost}/${repo}${MODE_REPO_SUFFIX['lazy-profile']}:estargz`;
    const profileFile = join(built.dir, `profile-${engine.convertKey}.json`);
    await push(layout('estargz'), reg.directHost, `${repo}${MODE_REPO_SUFFIX['lazy-profile']}`, 'estargz');
    if (await exists(profileFile)) await starling(engine, ['profile', 'push', profileFile, ref, '--name', 'bench']);
    else {
      opts.log(`${name}: recording the workload's prefetch profile`);
      await starling(engine, ['record', ref, '--push', '--name', 'bench', '--profile-out', profileFile, '--', ...recipe.workload.cmd]);
    }
  }
  return { built, config: (await readLayout(layout('gzip'))).config, info };
}

let active: Pick<Prepared, 'cleanup'> | undefined;

/**
 * On SIGINT/SIGTERM: stop the tools running for us (a conversion, a pull), unmount the sample in
 * progress, stop the registry and relay, remove the work directory — then exit.
 */
function cleanupOnSignal(cleanup: () => Promise<void>): () => void {
  const handler = (sig: NodeJS.Signals) => {
    killRunningTools();
    void (async () => {
      await active?.cleanup().catch(() => undefined);
      await cleanup().catch(() => undefined);
    })().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/** The longest a sample waits for the machine to settle (see `settle`). */
const SETTLE_MS = 15_000;

/**
 * Lets the machine settle before a sample, untimed: the dirty pages the last one left written (a
 * stargz sample of the data image leaves ~400 MB of cache files) and the CPUs idle for a second, so
 * that a sample does not pay for the one before it.
 */
async function settle(): Promise<void> {
  await runTool('sync', []);
  await machineIdle(() => false, SETTLE_MS);
}

async function runSample(image: PreparedImage, mode: Mode, index: number, engine: Engine, reg: EmulatedRegistry, workRoot: string): Promise<Sample & { stdout: string }> {
  const recipe = image.built.recipe;
  const work = await mkdtemp(join(workRoot, `${recipe.name}-${mode}-`));
  const link = async () => {
    const c = await reg.relay.counters();
    return { bytes: c.bytesUp + c.bytesDown, requests: c.getRequests };
  };
  const sample = { image: recipe.name, mode, index, pullMs: NaN, runMs: NaN, pullBytes: NaN, runBytes: NaN, pullRequests: NaN, runRequests: NaN, stdout: '' };
  let staged: Staged | undefined;
  let prepared: Prepared | undefined;
  try {
    // What the mode needs running first (containerd and its snapshotter) starts before the clock.
    const logDir = join(dirname(workRoot), 'logs', `${recipe.name}-${mode}-${index}`);
    staged = active = await stage(mode, { engine, ref: `${reg.host}/bench/${recipe.name}${MODE_REPO_SUFFIX[mode] ?? ''}:${MODE_FORM[mode]}`, work, logDir });
    const c0 = await link();
    const t0 = performance.now();
    prepared = active = await staged.pull();
    sample.pullMs = performance.now() - t0;
    const c1 = await link();
    sample.pullBytes = c1.bytes - c0.bytes;
    sample.pullRequests = c1.requests - c0.requests;
    const res = prepared.run ? await prepared.run(recipe.workload) : await runInRootfs(prepared.rootfs, image.config, recipe.workload.cmd, { readyLine: recipe.workload.readyLine });
    const c2 = await link();
    sample.runBytes = c2.bytes - c1.bytes;
    sample.runRequests = c2.requests - c1.requests;
    sample.runMs = res.readyMs ?? res.exitMs;
    sample.stdout = res.stdout;
    if (res.exitCode !== 0 || res.readyMs === undefined) {
      throw new Error(`workload exited ${res.exitCode ?? res.signal}${res.readyMs === undefined ? ' without its ready line' : ''}: ${res.stderr.trim().slice(-500)}`);
    }
    await prepared.check?.();
    return sample;
  } catch (err) {
    return { ...sample, error: (err as Error).message };
  } finally {
    active = undefined;
    // A failed cleanup (still mounted) stops the run: never remove a directory through a mount.
    if (prepared) await prepared.cleanup();
    else if (staged) await staged.cleanup();
    else await rm(work, { recursive: true, force: true });
  }
}

function machine(): Results['machine'] {
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
  };
}

export async function runBench(opts: BenchOptions): Promise<Results> {
  const startedAt = new Date().toISOString();
  if (opts.modes.some((m) => m.startsWith('stargz'))) await ensureStargzProgram();
  await ensureContainerdTools(opts.modes);
  await mkdir(opts.out, { recursive: true });
  const workRoot = await mkdtemp(join(opts.out, 'work-'));
  const reg = await startEmulatedRegistry(opts.profile);
  const stopSignals = cleanupOnSignal(async () => {
    await reg.stop();
    await rm(workRoot, { recursive: true, force: true });
  });
  try {
    opts.log(opts.engineDir ? `Starling snapshot: ${opts.engineDir}` : 'preparing the Starling to measure (in a checkout, a snapshot of git HEAD)');
    const engine = await buildEngine(PACKAGE_ROOT, opts.engineDir ?? join(workRoot, 'engine'), opts.engineDir !== undefined);
    opts.log(`Starling at ${engine.version}`);
    opts.log(`checking the link (${opts.profile.rttMs} ms RTT, ${opts.profile.rateMbit} Mbit/s)`);
    const check = await checkLink(reg, opts.probeBytes);
    opts.log(`link: ${check.rttMs} ms RTT, ${check.throughputMbit} Mbit/s`);
    let linkWarning: string | undefined;
    try {
      assertLinkMatches(opts.profile, check);
    } catch (err) {
      if (!opts.allowBadLink) throw err;
      linkWarning = `WARNING: ${(err as Error).message} (measured anyway: --allow-bad-link)`;
      opts.log(linkWarning);
    }

    const forms = new Set(opts.modes.map((m) => MODE_FORM[m]));
    const images = new Map<string, PreparedImage>();
    for (const name of opts.images) images.set(name, await prepareImage(name, forms, opts.modes, engine, reg, opts));
    if (opts.prepareOnly) opts.log('images prepared; --prepare-only: nothing measured');

    const plan = shuffled(
      opts.prepareOnly ? [] : opts.images.flatMap((image) => opts.modes.flatMap((mode) => Array.from({ length: opts.samples }, (_, index) => ({ image, mode, index })))),
      opts.seed,
    );
    const samples: Sample[] = [];
    const results = (): Results => {
      const r: Results = {
        startedAt,
        finishedAt: new Date().toISOString(),
        machine: machine(),
        link: { profile: opts.profile, check },
        samplesPerCell: opts.samples,
        images: [...images.values()].map((i) => i.info),
        samples,
        summary: summarise(samples),
        notes: [
          `Starling at ${engine.version}.`,
          ...(linkWarning ? [linkWarning] : []),
          ...(samples.length < plan.length ? [`PARTIAL: ${samples.length} of ${plan.length} samples so far.`] : []),
          "Starling's lazy modes mount with its default options (background fetch on, after a quiet period) on a host that has mounted before: the spare daemon a mount leaves is there, started untimed (`starling spare`); lazy-first is the first mount on a host (no spare); lazy-no-bg adds --no-background-fetch.",
          ...(opts.modes.some((m) => m.startsWith('stargz')) ? ["stargz: stargz-snapshotter 0.12 (Debian)'s fs package with its default config (prefetch and background fetch on), on the same estargz blobs as lazy (stargz-optimised: as lazy-optimised): one FUSE mount per layer under overlayfs, as containerd does after `ctr-remote image rpull`."] : []),
          ...(opts.modes.some(isContainerdMode) ? [CONTAINERD_NOTE] : []),
          `Run order shuffled with seed ${opts.seed}; the registry's own disk cache stays warm between samples (server side, the same for every mode); before each sample, untimed, the machine settles (sync, then CPUs idle for a second, at most ${SETTLE_MS / 1000} s).`,
        ],
      };
      r.notes.push(...acceptanceNotes(r));
      return r;
    };
    const reference = new Map<string, string>();
    for (const [i, step] of plan.entries()) {
      await settle();
      const s = await runSample(images.get(step.image)!, step.mode, step.index, engine, reg, workRoot);
      // Every start of an image must print the same thing: a lazy read of wrong bytes shows here.
      if (s.error === undefined) {
        const ref = reference.get(s.image);
        if (ref === undefined) reference.set(s.image, s.stdout);
        else if (ref !== s.stdout) s.error = `output differs from the image's other runs: ${JSON.stringify(s.stdout.slice(0, 200))}`;
      }
      const { stdout: _stdout, ...sample } = s;
      samples.push(sample);
      opts.log(
        `[${i + 1}/${plan.length}] ${s.image} ${s.mode} #${s.index}: ` +
          (s.error ? `FAILED: ${s.error}` : `pull ${(s.pullMs / 1000).toFixed(2)} s, run ${(s.runMs / 1000).toFixed(2)} s, ${((s.pullBytes + s.runBytes) / 1e6).toFixed(1)} MB, ${s.pullRequests + s.runRequests} GETs`),
      );
      // The report so far, so an interrupted run still leaves its figures.
      await writeReport(results(), opts.out);
    }
    const final = results();
    await writeReport(final, opts.out);
    return final;
  } finally {
    stopSignals();
    await reg.stop();
    await rm(workRoot, { recursive: true, force: true });
  }
}

export async function writeReport(results: Results, out: string): Promise<void> {
  const title = `Start-up time, ${results.link.profile.rttMs} ms RTT / ${results.link.profile.rateMbit} Mbit/s (median of ${results.samplesPerCell})`;
  await writeFile(join(out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  await writeFile(join(out, 'chart.svg'), svgChart(results.summary, title));
  await writeFile(join(out, 'results.md'), markdownReport(results, 'chart.svg'));
}

const README_MARK = '## Start-up benchmark';

/** Copies the report to bench/startup/latest/ and replaces the README's benchmark section with it. */
export async function publishToReadme(out: string, root = PACKAGE_ROOT): Promise<void> {
  const latest = join(root, 'bench/startup/latest');
  await mkdir(latest, { recursive: true });
  for (const f of ['results.json', 'results.md', 'chart.svg']) await copyFile(join(out, f), join(latest, f));
  const md = (await readFile(join(out, 'results.md'), 'utf8')).replace('](chart.svg)', '](bench/startup/latest/chart.svg)');
  const readmePath = join(root, 'README.md');
  const readme = await readFile(readmePath, 'utf8');
  // Replace this section only: from its heading to the next level-2 heading (or the end).
  const at = readme.indexOf(`\n${README_MARK}\n`);
  const head = (at >= 0 ? readme.slice(0, at) : readme).trimEnd();
  const next = at >= 0 ? readme.indexOf('\n## ', at + 1) : -1;
  const tail = next >= 0 ? readme.slice(next) : '';
  const section: string[] = [
    '',
    README_MARK,
    '',
    'Cold start of a container from a registry behind an emulated link (`npm run bench`; `starling bench --help`):',
    'pull (or mount) then run until the workload prints its ready line. Latest run:',
    '',
    md.trimEnd(),
    '',
  ];
  const micro = await readFile(join(root, 'bench/micro/latest.md'), 'utf8').catch(() => undefined);
  if (micro) section.push('### Micro-benchmarks of the lazy-read hot paths', '', micro.trimEnd(), '');
  const text = section.join('\n');
  await writeFile(readmePath, `${head}\n${text}${tail}`);
}
