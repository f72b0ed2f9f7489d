// zstd:chunked conversion benchmark: Starling's writer against containers/storage's Go
// ZstdCompressor (Debian 1.43, test/interop/zstdchunked) on the same real layer of ≥ 200 MB, each
// in its own process (wall time, CPU time and exact peak RSS from wait4), side by side in one run.
//
//   node --import tsx bench/convert/zstdchunked.ts [--runs N] [--cache DIR] [--out FILE]
//   node --import tsx bench/convert/zstdchunked.ts --memory   (peak RSS on a > 1 GiB layer, streamed)
//
// The layer is the benchmark layer's directory list written as a GNU tar with 512-byte records (so it
// ends right after its two zero blocks): 1.43's compressor fails with "short write" on PAX tars and
// on bytes after the end-of-archive marker (interop-notes.md). Both run at level 10 (containers/storage's
// default, what podman writes) and at level 3 (zstd's default), each compared at the same level.
// `--convert IN OUT LEVEL` is the child mode: one conversion, result JSON on stdout.
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { access, mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { parseArgs, promisify } from 'node:util';
import { writeZstdChunked } from '../../src/format/zstdchunked/writer.js';
import { DigestingStream } from '../../src/oci/digest.js';
import { LAYER_DIRS, MIN_LAYER_BYTES } from './layer.js';
import { formatTable, measureCommand, MiB, writeReport, type Measurement } from './measure.js';

const run = promisify(execFile);
const REPO = new URL('../../', import.meta.url).pathname;
const GO = join(REPO, '.interop-bin/zstdchunked');

async function convertOnce(input: string, output: string, level: number): Promise<void> {
  const out = createWriteStream(output);
  const result = await writeZstdChunked(createReadStream(input, { highWaterMark: 1 << 20 }), out, { level });
  out.end();
  await finished(out);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** The benchmark layer's directories as a GNU tar without record padding, cached in `cacheDir`. */
async function gnuLayer(cacheDir: string): Promise<{ path: string; size: number }> {
  const path = join(cacheDir, 'convert-layer-gnu-b1.tar');
  try {
    await access(path);
  } catch {
    await mkdir(cacheDir, { recursive: true });
    const tmp = `${path}.tmp-${process.pid}`;
    await run('tar', ['-C', '/', '--sort=name', '--format=gnu', '--blocking-factor=1', '-cf', tmp, ...LAYER_DIRS], { maxBuffer: 1 << 20 });
    await rename(tmp, path);
  }
  const { size } = await stat(path);
  if (size < MIN_LAYER_BYTES) throw new Error(`benchmark layer ${path} is ${size} bytes, below ${MIN_LAYER_BYTES}`);
  return { path, size };
}

async function sha256File(path: string): Promise<string> {
  const d = new DigestingStream();
  createReadStream(path).pipe(d).resume();
  await finished(d);
  return d.digest;
}

/**
 * Memory bound: the benchmark directories plus a 1 GiB file of zeros (one hole: a single chunk cut
 * into many frames) streamed from `tar` into one conversion; wait4's max RSS of the shell is the
 * largest of its children.
 */
async function memory(cacheDir: string): Promise<void> {
  const dir = join(cacheDir, `zstdchunked-memory-${process.pid}`);
  await mkdir(dir, { recursive: true });
  try {
    await run('truncate', ['-s', '1G', join(dir, 'zeros.bin')]);
    const self = new URL(import.meta.url).pathname;
    const script = `tar --sort=name --format=gnu -cf - -C / ${LAYER_DIRS.join(' ')} -C ${dir} zeros.bin | ${process.execPath} --import tsx ${self} --convert /dev/stdin /dev/null`;
    const m = await measureCommand('bash', ['-c', `set -o pipefail; ${script}`], { cwd: REPO });
    const result = JSON.parse(m.stdout) as { size: number; uncompressedSize: number; entryCount: number };
    const summary =
      `zstd:chunked writer memory: ${(result.uncompressedSize / MiB).toFixed(0)} MiB layer (${LAYER_DIRS.join(', ')} + a 1 GiB zero file), ${result.entryCount} TOC entries\n` +
      `wall ${(m.wallMs / 1000).toFixed(1)} s, CPU ${(m.cpuMs / 1000).toFixed(1)} s, peak RSS ${(m.peakRssBytes / MiB).toFixed(0)} MiB, blob ${(result.size / MiB).toFixed(0)} MiB\n`;
    process.stdout.write(summary);
    await writeReport(join(REPO, 'bench/out/convert-zstdchunked-memory.txt'), summary);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      cache: { type: 'string', default: join(REPO, 'bench/out/cache') },
      out: { type: 'string', default: join(REPO, 'bench/out/convert-zstdchunked.md') },
      convert: { type: 'boolean', default: false },
      memory: { type: 'boolean', default: false },
    },
    allowPositionals: true,
  });
  if (values.memory) return memory(values.cache!);
  if (values.convert) {
    const [input, output, level] = process.argv.slice(process.argv.indexOf('--convert') + 1);
    if (!input || !output || !level) throw new Error('usage: zstdchunked.ts --convert IN.tar OUT LEVEL');
    return convertOnce(input, output, Number(level));
  }
  const runs = Number(values.runs);
  await run(join(REPO, 'scripts/build-interop.sh'), [], { cwd: REPO, maxBuffer: 16 << 20 });
  const layer = await gnuLayer(values.cache!);
  const work = join(values.cache!, `zstdchunked-${process.pid}`);
  await mkdir(work, { recursive: true });
  try {
    const inputDigest = await sha256File(layer.path);
    // Rounds interleave the four converters so a change in machine load hits them alike.
    const ours = (level: number) => join(work, `starling-${level}.zst`);
    const configs: Record<string, [string, string[], string]> = {
      starling10: [process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--convert', layer.path, ours(10), '10'], ours(10)],
      go10: [GO, ['compress', '-level', '10', layer.path, join(work, 'go-10.zst')], join(work, 'go-10.zst')],
      starling3: [process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--convert', layer.path, ours(3), '3'], ours(3)],
      go3: [GO, ['compress', '-level', '3', layer.path, join(work, 'go-3.zst')], join(work, 'go-3.zst')],
    };
    const all: Record<string, Measurement[]> = { starling10: [], go10: [], starling3: [], go3: [] };
    for (let r = 0; r < runs; r++) {
      for (const [name, [cmd, args]] of Object.entries(configs)) all[name]!.push(await measureCommand(cmd, args, { cwd: REPO }));
    }
    const median = (name: string) => {
      const sorted = [...all[name]!].sort((a, b) => a.wallMs - b.wallMs);
      return sorted[Math.floor((sorted.length - 1) / 2)]!;
    };
    const starling: Record<number, Measurement & { size: number }> = {};
    for (const level of [10, 3]) {
      const m = median(`starling${level}`);
      const result = JSON.parse(m.stdout) as { diffID: string; size: number };
      if (result.diffID !== inputDigest) throw new Error(`Starling's blob does not decompress to the input tar (${result.diffID} != ${inputDigest})`);
      starling[level] = { ...m, size: result.size };
    }
    const go: Record<number, Measurement & { size: number }> = {
      10: { ...median('go10'), size: (await stat(configs.go10![2])).size },
      3: { ...median('go3'), size: (await stat(configs.go3![2])).size },
    };
    const mbps = (m: Measurement) => (layer.size / MiB / (m.wallMs / 1000)).toFixed(1);
    // Ratios are against Go at the same level.
    const row = (name: string, m: Measurement & { size: number }, level: number) => [
      name,
      String(level),
      (m.wallMs / 1000).toFixed(2),
      (m.cpuMs / 1000).toFixed(2),
      mbps(m),
      (m.peakRssBytes / MiB).toFixed(0),
      (m.size / MiB).toFixed(1),
      (m.wallMs / go[level]!.wallMs).toFixed(2),
      (m.cpuMs / go[level]!.cpuMs).toFixed(2),
    ];
    const table = formatTable(
      ['converter', 'level', 'wall s', 'CPU s', 'MiB/s', 'peak RSS MiB', 'blob MiB', 'wall/Go', 'CPU/Go'],
      [10, 3].flatMap((level) => [row('Starling', starling[level]!, level), row('Go ZstdCompressor', go[level]!, level)]),
    );
    const report = [
      '# zstd:chunked conversion: Starling vs containers/storage ZstdCompressor',
      '',
      `Layer: ${LAYER_DIRS.join(' ')} as a GNU tar, ${(layer.size / MiB).toFixed(1)} MiB. Median of ${runs} interleaved runs each, one process per run.`,
      `Machine: ${(await run('nproc')).stdout.trim()} cores, load average ${(await run('cat', ['/proc/loadavg'])).stdout.split(' ').slice(0, 3).join(' ')} at the end.`,
      '',
      '```',
      table,
      '```',
      '',
      `Target: Starling time / Go time ≤ 1.0. CPU s = user + system time of the process (all its threads); on a loaded`,
      `machine it is the steadier figure. Starling's blob decompresses to the input tar (${inputDigest}).`,
      '',
    ].join('\n');
    process.stdout.write(`${report}\n`);
    await writeReport(values.out!, report);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
