// bench/fs: reading through a lazy mount, side by side in one run with what it is measured against.
// - cold (empty cache): the large file read through the mount against downloading its layer whole,
//   both over the same emulated link (bench/net) and both straight over loopback;
// - warm (a new daemon over the filled disk cache): large file, small files and find/stat against the
//   same files from a full local extraction (`starling pull`), with the page cache hot, and with it
//   dropped before each side (both then read the local disk);
// - the floor: the same workloads, commands and directory layout on a fuse-native filesystem that
//   answers from constants (null-fuse.ts), i.e. the cost of the FUSE round trips alone;
// - the daemon's RSS right after mount and its peak (VmHWM).
// usage: node --import tsx bench/fs/run.ts [--files N] [--small N] [--large-mib N] [--rtt MS] [--rate MBIT]
// Reads of a mount run in child processes. The daemon is the compiled CLI, built from this tree first.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { buildImage, writeFilesTar } from '../../test/fixtures/image.js';
import { checkLink, startEmulatedRegistry } from '../net/link.js';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '100000' },
    small: { type: 'string', default: '2000' },
    'large-mib': { type: 'string', default: '1024' },
    rtt: { type: 'string', default: '20' },
    rate: { type: 'string', default: '1000' },
  },
});
const FILES = Number(values.files);
const SMALL = Number(values.small);
const LARGE = Number(values['large-mib']) << 20;
const MEMORY_CACHE_MIB = 128;
const profile = { rttMs: Number(values.rtt), rateMbit: Number(values.rate) };
const root = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(root, 'bin/starling.js');

async function timed(cmd: string): Promise<number> {
  const t0 = performance.now();
  await run('sh', ['-c', cmd], { maxBuffer: 256 << 20 });
  return (performance.now() - t0) / 1000;
}
const dropCaches = () => run('sh', ['-c', 'sync && echo 3 > /proc/sys/vm/drop_caches']);
const memStatus = async (pid: number, key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(await readFile(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

await run('npx', ['tsc', '-p', join(root, 'tsconfig.json')], { cwd: root });
const work = await mkdtemp(join(tmpdir(), 'starling-bench-fs-'));
const env = { ...process.env, STARLING_RUN_DIR: join(work, 'run') };
const starling = (...args: string[]) => run(process.execPath, [cli, ...args], { env, maxBuffer: 64 << 20 });
const reg = await startEmulatedRegistry(profile);
const mnt = join(work, 'mnt');
let mounted = false;
let server: ReturnType<typeof spawn> | undefined;
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
  let t0 = performance.now();
  await starling('convert', `oci:${join(work, 'src')}:v1`, `docker://${reg.directHost}/bench/fs:v1`, '--format', 'estargz');
  console.error(`converted + pushed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const link = await checkLink(reg);
  console.error(`link: ${link.rttMs.toFixed(2)} ms RTT, ${link.throughputMbit.toFixed(0)} Mbit/s`);

  // Baselines: whole downloads of the large layer, and a full local extraction.
  const manifest = (await (await fetch(`http://${reg.directHost}/v2/bench/fs/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as { layers: Array<{ digest: string; size: number }> };
  const largeLayer = manifest.layers[1]!;
  const download = async (host: string) => timed(`curl -fs -o /dev/null http://${host}/v2/bench/fs/blobs/${largeLayer.digest}`);
  const downloadLoopback = await download(reg.directHost);
  const downloadLink = await download(reg.host);
  const local = join(work, 'local');
  await starling('pull', `docker://${reg.directHost}/bench/fs:v1`, local);

  const reads = {
    large: (dir: string) => `cat ${dir}/large/file.bin > /dev/null`,
    small: (dir: string) => `find ${dir}/small -type f -exec cat {} + > /dev/null`,
    stat: (dir: string) => `find ${dir}/many -printf '%s\\n' | wc -l`,
  };
  type Row = { large?: number; small?: number; stat?: number; mount?: number; fetchedMiB?: number; rssMount?: number; rssPeak?: number };
  const results: Record<string, Row> = {};
  const readAll = async (dir: string, row: Row, which = Object.keys(reads) as Array<keyof typeof reads>, drop = false) => {
    for (const k of which) {
      if (drop) await dropCaches();
      row[k] = await timed(reads[k](dir));
    }
  };
  await run('sync'); // the extraction's writeback would otherwise slow the first local reads (seen: 1.5 against 5-7 GB/s)
  await readAll(local, {}); // a first pass, so that "hot" means every page is in the page cache (seen without it: 1.7 against 4-8 GB/s)
  results['local, page cache hot'] = {};
  await readAll(local, results['local, page cache hot']!);
  results['local, page cache dropped'] = {};
  await readAll(local, results['local, page cache dropped']!, undefined, true);

  // A FUSE server run as a child process, mounted at `at` until `fn` is done, then stopped (SIGTERM
  // makes each of them unmount). Ready once the mount shows in /proc/mounts.
  const withFuseServer = async (cmd: string, args: string[], at: string, fn: () => Promise<void>) => {
    server = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    const exited = new Promise((r) => server!.once('exit', r));
    try {
      for (let i = 0; !(await readFile('/proc/mounts', 'utf8')).includes(` ${at} `); i++) {
        if (server.exitCode !== null || i > 600) throw new Error(`${cmd} did not mount ${at}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await fn();
    } finally {
      server.kill('SIGTERM');
      await exited;
      server = undefined;
    }
  };

  // The floor: the same small-file and find/stat workloads on the null filesystem, one fresh mount
  // each so that no lookup is cached from the phase before.
  const refMnt = join(work, 'ref');
  await mkdir(refMnt);
  const floor: Row = {};
  for (const [k, cmd, files, size, dirs] of [
    ['large', `cat ${refMnt}/f0 > /dev/null`, 1, LARGE, 0],
    ['small', `find ${refMnt} -type f -exec cat {} + > /dev/null`, SMALL, 4096, 50],
    ['stat', `find ${refMnt} -printf '%s\\n' | wc -l`, FILES, 4096, 1000],
  ] as const) {
    const args = ['--import', 'tsx', fileURLToPath(new URL('./null-fuse.ts', import.meta.url)), refMnt, String(files), String(size), String(dirs)];
    await withFuseServer(process.execPath, args, refMnt, async () => {
      floor[k] = await timed(cmd);
    });
  }
  results['null FUSE (floor)'] = floor;

  // References: other FUSE stacks serving the local extraction with the same cache timeouts, read
  // on a fresh mount and again on the same mount (kernel caches hot).
  const day = 86_400;
  const references = [
    ['bindfs (C, libfuse 2)', 'bindfs', ['-f', '--multithreaded', '-o', `ro,use_ino,kernel_cache,entry_timeout=${day},attr_timeout=${day},negative_timeout=${day}`, local, refMnt]],
    ['go-fuse loopback (stargz-snapshotter\'s FUSE library)', join(root, '.interop-bin/loopback'), [local, refMnt]],
  ] as const;
  for (const [name, cmd, args] of references) {
    await withFuseServer(cmd, [...args], refMnt, async () => {
      results[`${name}, fresh mount`] = {};
      await readAll(refMnt, results[`${name}, fresh mount`]!);
      results[`${name}, same mount again`] = {};
      await readAll(refMnt, results[`${name}, same mount again`]!);
    });
  }

  await mkdir(mnt);
  const mountPhase = async (name: string, host: string, cache: string, which?: Array<keyof typeof reads>, drop = false, again?: string) => {
    const row: Row = {};
    results[name] = row;
    if (drop) await dropCaches();
    t0 = performance.now();
    await starling('mount', `docker://${host}/bench/fs:v1`, mnt, '--cache-dir', cache, '--no-prefetch', '--no-background-fetch', '--memory-cache', `${MEMORY_CACHE_MIB}MiB`);
    mounted = true;
    row.mount = (performance.now() - t0) / 1000;
    const { pid } = JSON.parse((await starling('stats', mnt, '--json')).stdout) as { pid: number };
    row.rssMount = await memStatus(pid, 'VmRSS');
    await readAll(mnt, row, which, drop);
    if (again) {
      results[again] = {};
      await readAll(mnt, results[again]!, which);
    }
    const stats = JSON.parse((await starling('stats', mnt, '--json')).stdout) as { totals: { fetchedBytes: number } };
    row.fetchedMiB = stats.totals.fetchedBytes / 2 ** 20;
    row.rssPeak = await memStatus(pid, 'VmHWM');
    await starling('umount', mnt);
    mounted = false;
  };
  await mountPhase(`mount, cold, over the link`, reg.host, join(work, 'cache-link'), ['large']);
  await mountPhase('mount, cold, loopback', reg.directHost, join(work, 'cache'));
  await mountPhase('mount, warm, fresh mount', reg.directHost, join(work, 'cache'), undefined, false, 'mount, warm, same mount again');
  await mountPhase('mount, warm, page cache dropped', reg.directHost, join(work, 'cache'), undefined, true);

  const mib = (n: number) => n / 2 ** 20;
  const smallBytes = SMALL * 4096;
  const cell = (v: number | undefined, f: (v: number) => string) => (v === undefined ? '–' : f(v));
  const row = (name: string, r: Row) =>
    `| ${name} | ${cell(r.large, (v) => `${(mib(LARGE) / v).toFixed(0)} MiB/s`)} | ${cell(r.small, (v) => `${(SMALL / v).toFixed(0)} files/s (${(mib(smallBytes) / v).toFixed(1)} MiB/s)`)} | ${cell(r.stat, (v) => `${v.toFixed(2)} s`)} | ${cell(r.mount, (v) => `${v.toFixed(2)} s`)} | ${cell(r.fetchedMiB, (v) => v.toFixed(1))} | ${cell(r.rssMount, (v) => v.toFixed(0))} / ${cell(r.rssPeak, (v) => v.toFixed(0))} |`;
  const pct = (a: number, b: number) => `${((100 * a) / b).toFixed(0)} %`;
  const r = results as Record<string, Required<Row>>;
  const hot = r['local, page cache hot']!;
  const dropped = r['local, page cache dropped']!;
  const warmFresh = r['mount, warm, fresh mount']!;
  const warmAgain = r['mount, warm, same mount again']!;
  const warmDropped = r['mount, warm, page cache dropped']!;
  const [bindfs, gofuse] = references.map(([name]) => ({ fresh: r[`${name}, fresh mount`]!, again: r[`${name}, same mount again`]! }));
  // Shares of a baseline's rate (the times are of the same work, so rate a / rate b = time b / time a).
  const shares = (x: Row, base: Row) => `large ${pct(base.large!, x.large!)}, small ${pct(base.small!, x.small!)}, find+stat ${pct(base.stat!, x.stat!)}`;
  const cold = r['mount, cold, loopback']!;
  const coldLink = r['mount, cold, over the link']!;
  const rssBound = 200e6 / 2 ** 20 + MEMORY_CACHE_MIB; // 200 MB is 190.7 MiB
  const peak = Math.max(...Object.values(r).map((x) => x.rssPeak ?? 0));
  const afterMount = Math.max(...Object.values(r).map((x) => x.rssMount ?? 0));
  const report = [
    `bench/fs — ${new Date().toISOString()} — ${SMALL} × 4 KiB files, one ${mib(LARGE)} MiB file, find/stat over ${FILES} files; eStargz, Distribution on 127.0.0.1; ` +
      `link ${profile.rttMs} ms / ${profile.rateMbit} Mbit/s (checked: ${link.rttMs.toFixed(2)} ms, ${link.throughputMbit.toFixed(0)} Mbit/s); memory cache ${MEMORY_CACHE_MIB} MiB; daemon built from this tree`,
    '',
    '| source | large file read | small files read | find+stat | mount | fetched MiB | daemon RSS MiB after mount / peak |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...Object.entries(results).map(([name, x]) => row(name, x)),
    '',
    `- cold sequential read over the link: ${coldLink.large.toFixed(2)} s against a whole download of the layer (${mib(largeLayer.size).toFixed(0)} MiB) over the same link ${downloadLink.toFixed(2)} s = ${(coldLink.large / downloadLink).toFixed(2)} × (target ≤ 1.2)`,
    `- cold sequential read over loopback: ${cold.large.toFixed(2)} s against a loopback download ${downloadLoopback.toFixed(2)} s = ${(cold.large / downloadLoopback).toFixed(2)} ×`,
    `- warm, fresh mount, against local with the page cache hot (target ≥ 70 %): Starling ${shares(warmFresh, hot)}; bindfs ${shares(bindfs!.fresh, hot)}; go-fuse ${shares(gofuse!.fresh, hot)}; null FUSE ${shares(floor, hot)}`,
    `- warm, the same mount read again (kernel caches hot), against local with the page cache hot: Starling ${shares(warmAgain, hot)}; bindfs ${shares(bindfs!.again, hot)}; go-fuse ${shares(gofuse!.again, hot)}`,
    `- warm against local, page cache dropped before each read on both sides: Starling ${shares(warmDropped, dropped)}`,
    `- Starling against the other FUSE stacks, fresh mount: ${shares(warmFresh, bindfs!.fresh)} of bindfs; ${shares(warmFresh, gofuse!.fresh)} of go-fuse; ${shares(warmFresh, floor)} of the null FUSE floor (same directory layout and commands)`,
    `- daemon RSS: ${afterMount.toFixed(0)} MiB right after mount at most, ${peak.toFixed(0)} MiB peak (target ≤ 200 MB + the ${MEMORY_CACHE_MIB} MiB memory cache = ${rssBound.toFixed(0)} MiB)`,
    `- load average at the end: ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')} (2 cores, shared)`,
  ].join('\n');
  console.log(report);
  await mkdir(join(root, 'bench/out'), { recursive: true });
  await writeFile(join(root, 'bench/out', `fs-${Date.now()}.md`), `${report}\n`);
} finally {
  server?.kill('SIGTERM');
  if (mounted) await starling('umount', '--force', mnt).catch(() => {});
  await reg.stop();
  await rm(work, { recursive: true, force: true });
}
