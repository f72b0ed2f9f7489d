// Shared helpers of the conversion benchmarks: time a command (wall time + peak RSS through GNU
// time's wait4 rusage, so children are measured exactly and not by polling) and print/write tables.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface Measurement {
  /** Wall-clock time of the command in milliseconds. */
  wallMs: number;
  /** Peak resident set size of the command's process in bytes (max RSS from wait4). */
  peakRssBytes: number;
  /** User + system CPU time of the command in milliseconds (from wait4): robust on a loaded machine. */
  cpuMs: number;
  /** Everything the command printed on stdout. */
  stdout: string;
}

export interface MeasureOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * Runs `cmd args…` under /usr/bin/time and returns its wall time, peak RSS and stdout.
 * Rejects with the command's stderr when it exits non-zero.
 */
export async function measureCommand(cmd: string, args: readonly string[], opts: MeasureOptions = {}): Promise<Measurement> {
  const work = await mkdtemp(join(tmpdir(), 'starling-measure-'));
  const timeFile = join(work, 'time');
  try {
    const started = process.hrtime.bigint();
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn('/usr/bin/time', ['-o', timeFile, '-f', '%M %U %S', cmd, ...args], {
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.once('error', reject);
      child.once('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
    });
    const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
    if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${stderr.trim()}`);
    const [maxRssKiB, userS, sysS] = (await readFile(timeFile, 'utf8')).trim().split('\n').pop()!.split(' ').map(Number);
    if (!Number.isFinite(maxRssKiB)) throw new Error(`could not read peak RSS of ${cmd}`);
    return { wallMs, peakRssBytes: maxRssKiB! * 1024, cpuMs: ((userS ?? NaN) + (sysS ?? NaN)) * 1000, stdout };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Runs `cmd` `runs` times and returns the measurement with the median wall time. */
export async function measureMedian(cmd: string, args: readonly string[], runs: number, opts: MeasureOptions = {}): Promise<Measurement> {
  const all: Measurement[] = [];
  for (let i = 0; i < runs; i++) all.push(await measureCommand(cmd, args, opts));
  all.sort((a, b) => a.wallMs - b.wallMs);
  return all[Math.floor((all.length - 1) / 2)]!;
}

export const MiB = 1024 * 1024;

/** A plain-text table with right-aligned columns after the first. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Writes a report file (creating its directory) and returns its path. */
export async function writeReport(path: string, content: string): Promise<string> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, content);
  return path;
}
