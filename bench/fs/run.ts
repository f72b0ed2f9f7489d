// bench/fs: read throughput through a lazy mount (cold: empty cache; warm: remount over the filled
// disk cache) against the same files from a full local extraction (`starling pull`), for many small
// files and one large file; find/stat over a many-file layer; the daemon's peak RSS. One run, side by
// side. The whole-layer download time of the large file's layer is measured as the cold baseline.
// usage: node --import tsx bench/fs/run.ts [--files N] [--small N] [--large-mib N]
// Reads of the mount run in child processes (the benchmark never reads a mount it serves itself;
// the daemon is a separate process anyway). Local-disk numbers are page-cache warm, as the
// extraction has just been written: a strict baseline.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { buildImage, writeFilesTar } from '../../test/fixtures/image.js';
import { startRegistry } from '../../test/helpers/registry.js';

const run = promisify(execFile);
const { values } = parseArgs({ options: { files: { type: 'string', default: '100000' }, small: { type: 'string', default: '2000' }, 'large-mib': { type: 'string', default: '256' } } });
const FILES = Number(values.files);
const SMALL = Number(values.small);
const LARGE = Number(values['large-mib']) << 20;
const cli = fileURLToPath(new URL('../../test/fs/helpers/starling.ts', import.meta.url));

async function timed(cmd: string): Promise<number> {
  const t0 = performance.now();
  await run('sh', ['-c', cmd], { maxBuffer: 256 << 20 });
  return (performance.now() - t0) / 1000;
}

const work = await mkdtemp(join(tmpdir(), 'starling-bench-fs-'));
const env = { ...process.env, STARLING_RUN_DIR: join(work, 'run') };
const starling = (...args: string[]) => run(process.execPath, ['--import', 'tsx', cli, ...args], { env, maxBuffer: 64 << 20 });
const registry = await startRegistry();
const mnt = join(work, 'mnt');
let mounted = false;
try {
  console.error(`building: ${SMALL} small files (4 KiB), one ${LARGE >> 20} MiB file, ${FILES} tiny files`);
  const smallFiles: Record<string, string> = {};
  for (let i = 0; i < SMALL; i++) smallFiles[`small/d${i % 50}/f${i}`] = randomBytes(2048).toString('hex');
  const manyFiles: Record<string, string> = {};
  for (let i = 0; i < FILES; i++) manyFiles[`many/d${i % 1000}/f${i}`] = `${i}\n`;
  await writeFilesTar(smallFiles, join(work, 'small.tar'));
  await writeFilesTar(manyFiles, join(work, 'many.tar'));
  await writeFilesTar({ 'large/file.bin': randomBytes(LARGE) }, join(work, 'large.tar'));
  await buildImage(join(work, 'src'), { layers: [{ tar: join(work, 'small.tar') }, { tar: join(work, 'large.tar') }, { tar: join(work, 'many.tar') }] }, 'v1');
  const ref = `docker://${registry.host}/bench/fs:v1`;
  let t0 = performance.now();
  await starling('convert', `oci:${join(work, 'src')}:v1`, ref, '--format', 'estargz');
  console.error(`converted + pushed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  // Baselines: whole download of the large layer, and a full local extraction.
  const manifest = (await (await fetch(`${registry.url}/v2/bench/fs/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as { layers: Array<{ digest: string; size: number }> };
  const largeLayer = manifest.layers[1]!;
  const download = await timed(`curl -fs -o /dev/null ${registry.url}/v2/bench/fs/blobs/${largeLayer.digest}`);
  const local = join(work, 'local');
  await starling('pull', ref, local);

  const reads = {
    large: (root: string) => `cat ${root}/large/file.bin > /dev/null`,
    small: (root: string) => `find ${root}/small -type f -exec cat {} + > /dev/null`,
    stat: (root: string) => `find ${root}/many -printf '%s\\n' | wc -l`,
  };
  const results: Record<string, Record<string, number>> = { local: {}, cold: {}, warm: {} };
  for (const [k, cmd] of Object.entries(reads)) results.local![k] = await timed(cmd(local));

  const cache = join(work, 'cache');
  await mkdir(mnt);
  let rss = 0;
  let rssAfterMount = 0;
  const status = async (pid: number, key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(await readFile(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
  for (const phase of ['cold', 'warm'] as const) {
    t0 = performance.now();
    await starling('mount', ref, mnt, '--cache-dir', cache, '--no-prefetch', '--no-background-fetch', '--memory-cache', '128MiB');
    mounted = true;
    results[phase]!.mount = (performance.now() - t0) / 1000;
    const { pid } = JSON.parse((await starling('stats', mnt, '--json')).stdout) as { pid: number };
    rssAfterMount = Math.max(rssAfterMount, await status(pid, 'VmRSS'));
    for (const [k, cmd] of Object.entries(reads)) results[phase]![k] = await timed(cmd(mnt));
    const stats = JSON.parse((await starling('stats', mnt, '--json')).stdout) as { pid: number; totals: { fetchedBytes: number } };
    results[phase]!.fetchedMiB = stats.totals.fetchedBytes / 2 ** 20;
    rss = Math.max(rss, await status(stats.pid, 'VmHWM'));
    await starling('umount', mnt);
    mounted = false;
  }
  const mib = (n: number) => n / 2 ** 20;
  const smallBytes = SMALL * 4096;
  const row = (name: string, r: Record<string, number>) =>
    `| ${name} | ${(mib(LARGE) / r.large!).toFixed(0)} MiB/s | ${(mib(smallBytes) / r.small!).toFixed(1)} MiB/s (${(SMALL / r.small!).toFixed(0)} files/s) | ${r.stat!.toFixed(2)} s | ${r.mount !== undefined ? `${r.mount.toFixed(2)} s` : '–'} | ${r.fetchedMiB !== undefined ? r.fetchedMiB.toFixed(1) : '–'} |`;
  const report = [
    `bench/fs — ${new Date().toISOString()} — ${SMALL} × 4 KiB files, one ${mib(LARGE)} MiB file, find/stat over ${FILES} files; eStargz, local Distribution`,
    '',
    '| source | large file read | small files read | find+stat | mount | fetched MiB |',
    '| --- | --- | --- | --- | --- | --- |',
    row('local extraction', results.local!),
    row('mount, cold cache', results.cold!),
    row('mount, warm disk cache', results.warm!),
    '',
    `large layer (${mib(largeLayer.size).toFixed(0)} MiB compressed) whole download: ${download.toFixed(2)} s; cold sequential read through the mount: ${results.cold!.large!.toFixed(2)} s = ${(results.cold!.large! / download).toFixed(2)} × download`,
    `warm / local throughput: large ${((100 * results.local!.large!) / results.warm!.large!).toFixed(0)} %, small ${((100 * results.local!.small!) / results.warm!.small!).toFixed(0)} %`,
    `daemon RSS right after mount: ${rssAfterMount.toFixed(0)} MiB; peak over the run (VmHWM): ${rss.toFixed(0)} MiB (memory cache bound 128 MiB)`,
    `load average at the end: ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')} (2 cores, shared)`,
  ].join('\n');
  console.log(report);
  await mkdir(join(process.cwd(), 'bench/out'), { recursive: true });
  await writeFile(join(process.cwd(), 'bench/out', `fs-${Date.now()}.md`), `${report}\n`);
} finally {
  if (mounted) await starling('umount', '--force', mnt).catch(() => {});
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}
