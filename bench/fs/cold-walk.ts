// bench/fs cold walk: the first read of a whole layer of real files through a fresh mount (empty
// cache, new process), and a cold read of a few hundred small files, for Starling with its default
// options and stargz-snapshotter's filesystem with its defaults (bench/stargz, one FUSE mount per
// layer), side by side in one run, over loopback and over the emulated link. Medians of --samples.
// Both paths go through a relay process (loopback: one that adds no delay), whose counters give the
// bytes and GET requests of every cell.
// usage: node --import tsx bench/fs/cold-walk.ts [--files N] [--mb N] [--samples N] [--rtt MS] [--rate MBIT]
// Needs root; the stargz program is built by scripts/setup.sh (scripts/build-interop.sh).
import { execFile, spawn } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { buildImage } from '../../test/fixtures/image.js';
import { checkLink, startEmulatedRegistry } from '../net/link.js';
import { RelayProcess } from '../net/relay-process.js';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '10000' },
    mb: { type: 'string', default: '250' },
    samples: { type: 'string', default: '3' },
    rtt: { type: 'string', default: '20' },
    rate: { type: 'string', default: '100' },
  },
});
const FILES = Number(values.files);
const BYTES = Number(values.mb) * 1e6;
const SAMPLES = Number(values.samples);
const profile = { rttMs: Number(values.rtt), rateMbit: Number(values.rate) };
const root = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(root, 'bin/starling.js');
const stargzBin = join(root, '.interop-bin/stargz');
/** Files of the host the layer is made of (real content: binaries, libraries, text). */
const SOURCES = ['/usr/lib/x86_64-linux-gnu', '/usr/share', '/usr/lib/python3.11', '/usr/include'];
const SMALL_READ = 300;

/** Up to FILES regular files of at most 1 MB from SOURCES, in directory order, until BYTES; and their sizes. */
async function pickFiles(): Promise<{ paths: string[]; sizes: number[]; bytes: number }> {
  const paths: string[] = [];
  const sizes: number[] = [];
  let bytes = 0;
  const walk = async (dir: string): Promise<void> => {
    const ents = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of ents.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (paths.length >= FILES || bytes >= BYTES) return;
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const st = await lstat(p);
        if (st.size > 1e6) continue;
        paths.push(p.slice(1));
        sizes.push(st.size);
        bytes += st.size;
      }
    }
  };
  for (const s of SOURCES) await walk(s);
  return { paths, sizes, bytes };
}

async function timed(cmd: string): Promise<number> {
  const t0 = performance.now();
  await run('sh', ['-c', cmd], { maxBuffer: 16 << 20 });
  return (performance.now() - t0) / 1000;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Mounted {
  /** Where the layer's files are. */
  dir: string;
  mountSeconds: number;
  stop(): Promise<void>;
}

await run('npx', ['tsc', '-p', join(root, 'tsconfig.json')], { cwd: root }); // the CLI runs from dist/
const work = await mkdtemp(join(tmpdir(), 'starling-cold-walk-'));
const env = { ...process.env, STARLING_RUN_DIR: join(work, 'run') };
const starling = (...args: string[]) => run(process.execPath, [cli, ...args], { env, maxBuffer: 64 << 20 });
let active: Mounted | undefined;

async function mountStarling(host: string, at: string): Promise<Mounted> {
  const t0 = performance.now();
  await starling('mount', `docker://${host}/bench/walk:v1`, at, '--cache-dir', join(at, '..', 'cache'));
  return { dir: at, mountSeconds: (performance.now() - t0) / 1000, stop: () => starling('umount', at).then(() => undefined) };
}

async function mountStargz(host: string, at: string): Promise<Mounted> {
  const t0 = performance.now();
  const child = spawn(stargzBin, ['-root', join(at, '..', 'cache'), `${host}/bench/walk:v1`, at], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((r) => child.once('exit', r));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (/^ready \d+$/m.test(out)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`stargz exited ${code} before it was ready`)));
  });
  return {
    dir: join(at, '0'),
    mountSeconds: (performance.now() - t0) / 1000,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

const systems = { Starling: mountStarling, 'stargz-snapshotter': mountStargz } as const;
type Row = { mount: number[]; walk: number[]; small: number[]; mb: { walk: number[]; small: number[] }; gets: { walk: number[]; small: number[] } };
const results = new Map<string, Row>();
const reg = await startEmulatedRegistry(profile);
const [regHost, regPort] = reg.directHost.split(':');
const loopback = await RelayProcess.start({ host: regHost!, port: Number(regPort) }, { rttMs: 0, rateMbit: 100_000 });
try {
  const { paths, sizes, bytes } = await pickFiles();
  console.error(`layer: ${paths.length} files, ${(bytes / 1e6).toFixed(0)} MB of host files`);
  await writeFile(join(work, 'list'), `${paths.join('\n')}\n`);
  await run('tar', ['-cf', join(work, 'walk.tar'), '-C', '/', '--files-from', join(work, 'list')], { maxBuffer: 16 << 20 });
  await buildImage(join(work, 'src'), { layers: [{ tar: join(work, 'walk.tar') }] }, 'v1');
  await rm(join(work, 'walk.tar'));
  await starling('convert', `oci:${join(work, 'src')}:v1`, `docker://${reg.directHost}/bench/walk:v1`, '--format', 'estargz');
  const link = await checkLink(reg);
  console.error(`link: ${link.rttMs.toFixed(2)} ms RTT, ${link.throughputMbit.toFixed(0)} Mbit/s`);
  // Small files read cold: every 10th file under 16 kB, SMALL_READ of them, named up front (a `find`
  // first would measure FUSE metadata round trips over all the layer's entries, not reads).
  const small = paths.filter((_, i) => sizes[i]! < 16_000).filter((_, i) => i % 10 === 0).slice(0, SMALL_READ);
  await writeFile(join(work, 'small-list'), `${small.join('\n')}\n`);
  const smallCmd = (dir: string) => `cd ${dir} && xargs -a ${join(work, 'small-list')} cat | wc -c`;
  for (let i = 0; i < SAMPLES; i++) {
    for (const [where, host, relay] of [['loopback', loopback.host, loopback], ['link', reg.host, reg.relay]] as const) {
      for (const [name, mountFn] of Object.entries(systems)) {
        for (const phase of ['walk', 'small'] as const) {
          const at = join(work, `s${i}-${where}-${name}-${phase}`, 'mnt');
          await mkdir(at, { recursive: true });
          const c0 = await relay.counters();
          active = await mountFn(host, at);
          try {
            const seconds = await timed(phase === 'walk' ? `tar -cf - -C ${active.dir} . | wc -c` : smallCmd(active.dir));
            const c1 = await relay.counters();
            const key = `${name}, ${where}`;
            if (!results.has(key)) results.set(key, { mount: [], walk: [], small: [], mb: { walk: [], small: [] }, gets: { walk: [], small: [] } });
            const row = results.get(key)!;
            row[phase].push(seconds);
            row.mb[phase].push((c1.bytesDown + c1.bytesUp - c0.bytesDown - c0.bytesUp) / 1e6);
            row.gets[phase].push(c1.getRequests - c0.getRequests);
            if (phase === 'walk') row.mount.push(active.mountSeconds);
            console.error(`[${i + 1}/${SAMPLES}] ${key} ${phase}: ${seconds.toFixed(2)} s (mount ${active.mountSeconds.toFixed(2)} s), ${row.mb[phase].at(-1)!.toFixed(1)} MB, ${row.gets[phase].at(-1)} GETs`);
          } finally {
            await active.stop();
            active = undefined;
          }
          await rm(join(at, '..'), { recursive: true, force: true });
        }
      }
    }
  }
  const fmt = (xs: number[]) => `${median(xs).toFixed(2)} (${xs.map((x) => x.toFixed(2)).join(', ')})`;
  const lines = [
    `bench/fs cold walk — ${new Date().toISOString()} — one eStargz layer of ${paths.length} host files, ${(bytes / 1e6).toFixed(0)} MB; ` +
      `link ${profile.rttMs} ms / ${profile.rateMbit} Mbit/s (checked: ${link.rttMs.toFixed(2)} ms, ${link.throughputMbit.toFixed(0)} Mbit/s); ${SAMPLES} samples, medians (all samples); default options on both sides`,
    '',
    `| system, path | mount s | cold walk s (\`tar -cf - .\`) | walk MB, GETs | cold read of ${small.length} small files (every 10th under 16 kB) s | small MB, GETs |`,
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...[...results].map(([k, r]) => `| ${k} | ${fmt(r.mount)} | ${fmt(r.walk)} | ${median(r.mb.walk).toFixed(1)}, ${median(r.gets.walk)} | ${fmt(r.small)} | ${median(r.mb.small).toFixed(1)}, ${median(r.gets.small)} |`),
    '',
  ];
  for (const where of ['loopback', 'link']) {
    const s = results.get(`Starling, ${where}`)!;
    const g = results.get(`stargz-snapshotter, ${where}`)!;
    lines.push(`- ${where}: Starling / stargz — walk ${(median(s.walk) / median(g.walk)).toFixed(2)} × (target ≤ 0.7), small files ${(median(s.small) / median(g.small)).toFixed(2)} ×, mount ${(median(s.mount) / median(g.mount)).toFixed(2)} × (target ≤ 1)`);
  }
  lines.push(`- load average at the end: ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')} (2 cores)`);
  const report = lines.join('\n');
  console.log(report);
  await mkdir(join(root, 'bench/out'), { recursive: true });
  await writeFile(join(root, 'bench/out', `cold-walk-${Date.now()}.md`), `${report}\n`);
} finally {
  await active?.stop().catch(() => {});
  await loopback.close();
  await reg.stop();
  await rm(work, { recursive: true, force: true });
}
