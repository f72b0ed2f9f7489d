// The fuzz loop: for a time budget, mutate a seed (or an earlier interesting input) and run the
// target, checking the property every parser of untrusted bytes must keep: it returns, or throws
// one of its allowed error classes with a message — within a time bound and without a memory jump.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256 } from '../../src/oci/digest.js';
import { mutateBytes, mutateJson, Rng } from './mutate.js';
import type { Target } from './targets.js';

export interface Violation {
  target: string;
  kind: 'unexpected-error' | 'non-error-throw' | 'empty-message' | 'timeout' | 'memory';
  detail: string;
  input: Buffer;
}

export interface FuzzStats {
  target: string;
  executions: number;
  /** Inputs the target accepted (no error). */
  accepted: number;
  /** Error messages by class name: which refusals the run reached. */
  refusals: Map<string, number>;
  violations: Violation[];
  maxMs: number;
}

export interface FuzzOptions {
  seconds: number;
  seed: number;
  /** Per-input time bound (default 5 s). */
  perInputMs?: number;
  /** RSS growth over the start of the run that counts as unbounded memory (default 512 MiB). */
  memoryJumpBytes?: number;
  /** Where each violating input is written (not written when absent). */
  saveDir?: string;
  /** Stop after this many violations (default 5): one bug tends to repeat. */
  maxViolations?: number;
  /** At least this many executions even if the time budget runs out. */
  minExecutions?: number;
}

/** Recomputes the checksum of every 512-byte block that looks like a tar header (ustar magic or octal checksum). */
export function fixTarChecksums(b: Buffer): Buffer {
  const out = Buffer.from(b);
  for (let off = 0; off + 512 <= out.length; off += 512) {
    const block = out.subarray(off, off + 512);
    const magic = block.toString('latin1', 257, 262) === 'ustar';
    if (!magic && !/^[0-7 \0]{8}$/.test(block.toString('latin1', 148, 156))) continue;
    if (block.every((x) => x === 0)) continue;
    block.fill(0x20, 148, 156);
    let sum = 0;
    for (const x of block) sum += x;
    block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  }
  return out;
}

/** Runs `input` through `target` once; the violation, if the property fails. */
export async function checkOne(target: Target, input: Buffer, perInputMs = 5000, memoryJumpBytes = 512 << 20): Promise<Violation | { error?: Error }> {
  const rssBefore = process.memoryUsage.rss();
  const started = performance.now();
  let error: unknown;
  let threw = false;
  let timer: NodeJS.Timeout | undefined;
  try {
    const result = target.run(input);
    if (result instanceof Promise) {
      const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), perInputMs)));
      if ((await Promise.race([result, timeout])) === 'timeout') {
        result.catch(() => {});
        return { target: target.name, kind: 'timeout', detail: `no answer after ${perInputMs} ms`, input };
      }
    }
  } catch (err) {
    threw = true;
    error = err;
  } finally {
    clearTimeout(timer);
  }
  const ms = performance.now() - started;
  const v = (kind: Violation['kind'], detail: string): Violation => ({ target: target.name, kind, detail, input });
  if (ms > perInputMs) return v('timeout', `took ${ms.toFixed(0)} ms`);
  const grown = process.memoryUsage.rss() - rssBefore;
  if (grown > memoryJumpBytes) return v('memory', `RSS grew by ${(grown / 2 ** 20).toFixed(0)} MiB on one input`);
  if (!threw) return {};
  if (!(error instanceof Error)) return v('non-error-throw', `threw ${typeof error}: ${String(error)}`);
  if (!target.allowed.some((c) => error instanceof c)) {
    return v('unexpected-error', `${error.constructor.name}: ${error.message}\n${error.stack?.split('\n').slice(1, 6).join('\n')}`);
  }
  if (error.message.trim() === '') return v('empty-message', `${error.constructor.name} without a message`);
  return { error };
}

function isViolation(r: Violation | { error?: Error }): r is Violation {
  return 'kind' in r;
}

/** The fuzz loop over one target. */
export async function fuzzTarget(target: Target, opts: FuzzOptions): Promise<FuzzStats> {
  const rng = new Rng(opts.seed ^ hashName(target.name));
  const stats: FuzzStats = { target: target.name, executions: 0, accepted: 0, refusals: new Map(), violations: [], maxMs: 0 };
  // Inputs that reached an error message not seen before (or were accepted) join the pool: a
  // cheap stand-in for coverage feedback that keeps mutating past the first check that fails.
  const pool: Buffer[] = [...target.seeds];
  const seenMessages = new Set<string>();
  const deadline = performance.now() + opts.seconds * 1000;
  const maxViolations = opts.maxViolations ?? 5;
  const minExecutions = opts.minExecutions ?? 0;
  while ((performance.now() < deadline || stats.executions < minExecutions) && stats.violations.length < maxViolations) {
    const base = rng.chance(0.3) ? rng.pick(target.seeds) : rng.pick(pool);
    let input = target.json && rng.chance(0.5) ? mutateJson(rng, base, pool) : mutateBytes(rng, base, pool);
    if (target.tar && rng.chance(0.8)) input = fixTarChecksums(input);
    const t0 = performance.now();
    let r = await checkOne(target, input, opts.perInputMs, opts.memoryJumpBytes);
    // Time and memory are noisy on a shared machine: such a finding counts only if it repeats.
    if (isViolation(r) && (r.kind === 'timeout' || r.kind === 'memory')) {
      const again = await checkOne(target, input, opts.perInputMs, opts.memoryJumpBytes);
      if (!isViolation(again) || again.kind === r.kind) r = again;
    }
    stats.maxMs = Math.max(stats.maxMs, performance.now() - t0);
    stats.executions++;
    if (isViolation(r)) {
      stats.violations.push(r);
      if (opts.saveDir) {
        mkdirSync(opts.saveDir, { recursive: true });
        const file = join(opts.saveDir, `${target.name}-${sha256(input).slice(7, 23)}.bin`);
        writeFileSync(file, input);
        r.detail += `\n(input saved to ${file})`;
      }
      continue;
    }
    if (!r.error) {
      stats.accepted++;
      if (pool.length < 512 && rng.chance(0.05)) pool.push(input);
      continue;
    }
    const cls = r.error.constructor.name;
    stats.refusals.set(cls, (stats.refusals.get(cls) ?? 0) + 1);
    // Message shape without numbers/quoted names: a new shape means a new refusal path was reached.
    const shape = r.error.message.replace(/"[^"]*"/g, 'S').replace(/\d+/g, 'N').slice(0, 160);
    if (!seenMessages.has(shape)) {
      seenMessages.add(shape);
      if (pool.length < 512) pool.push(input);
    }
  }
  return stats;
}

function hashName(name: string): number {
  let h = 2166136261;
  for (const c of name) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  return h;
}

export function formatStats(s: FuzzStats): string {
  const refusals = [...s.refusals].map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  return `${s.target}: ${s.executions} executions, ${s.accepted} accepted, refused: ${refusals}; slowest ${s.maxMs.toFixed(0)} ms; violations ${s.violations.length}`;
}
