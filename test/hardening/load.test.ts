// Load: 64 concurrent reader processes (random and sequential reads, find, stat) over an eStargz
// image mounted by the `starling mount` daemon, for a bounded time (15 s; STARLING_LONG=1: 5 min),
// every byte read checked against the source files. The daemon's RSS is sampled throughout and must
// stay within a bound derived from its configured memory cache; no read may fail (a FUSE request
// past the op timeout would fail), and the slowest read must stay under that timeout.
// Figures (readers, bytes verified, p99 read latency, peak RSS) are reported as test diagnostics.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StatsReport } from '../../src/mount/image-mount.js';
import { spawnChild, startMountEnv, testFiles, type MountEnv } from './mount-env.js';

const LONG = process.env.STARLING_LONG === '1';
const READERS = 64;
const DURATION_MS = LONG ? 300_000 : 15_000;
const FUSE_TIMEOUT_S = 30;
const MEMORY_CACHE_MIB = 32;
/** Node's own footprint plus the memory cache plus chunks in flight: what "bounded" means here. */
const RSS_BOUND_MIB = 160 + MEMORY_CACHE_MIB + 128;
const reader = join(dirname(fileURLToPath(import.meta.url)), 'load-reader.mjs');

let env: MountEnv;

before(async () => {
  env = await startMountEnv({ files: testFiles(48, 300_000), images: { img: 'estargz' } });
});

after(async () => {
  await env?.cleanup();
});

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

test(`${READERS} concurrent readers over a mounted image: every byte verified, RSS bounded, no read near the op timeout`, async (t) => {
  const mnt = join(env.work, 'mnt');
  // Lazy all the way (no prefetch or background fill) and a small memory cache: reads hit the
  // network, the disk cache and evictions while the readers run.
  await env.mount(env.ref('img'), mnt, '--cache-dir', join(env.work, 'cache'), '--memory-cache', `${MEMORY_CACHE_MIB}MiB`, '--no-prefetch', '--no-background-fetch', '--fuse-timeout', String(FUSE_TIMEOUT_S));
  const pid = await env.daemonPid(mnt);
  let peakKiB = await rssKiB(pid);
  const sampler = setInterval(() => void rssKiB(pid).then((k) => (peakKiB = Math.max(peakKiB, k))), 100);
  const started = Date.now();
  const children = Array.from({ length: READERS }, (_, i) => spawnChild(process.execPath, [reader, mnt, env.srcTree, String(DURATION_MS), String(1000 + i)]));
  const results = await Promise.all(children.map((c) => c.done));
  clearInterval(sampler);
  const wall = Date.now() - started;

  const outs = results.map((r, i) => {
    assert.equal(r.code, 0, `reader ${i} exited ${r.code ?? r.signal}: ${r.stderr}`);
    return JSON.parse(r.stdout) as { ops: number; reads: number; bytesVerified: number; mismatches: string[]; errors: string[]; latenciesMs: number[] };
  });
  const mismatches = outs.flatMap((o) => o.mismatches);
  const errors = outs.flatMap((o) => o.errors);
  const latencies = outs.flatMap((o) => o.latenciesMs).sort((a, b) => a - b);
  const bytes = outs.reduce((n, o) => n + o.bytesVerified, 0);
  const ops = outs.reduce((n, o) => n + o.ops, 0);
  const s = JSON.parse((await env.starling('stats', mnt, '--json')).stdout) as StatsReport;
  const figures = {
    readers: READERS,
    seconds: Math.round(wall / 100) / 10,
    operations: ops,
    reads: latencies.length,
    bytesVerifiedMiB: Math.round((bytes / 2 ** 20) * 10) / 10,
    readLatencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? 0 },
    peakRssMiB: Math.round(peakKiB / 1024),
    fetchedMiB: Math.round((s.totals.fetchedBytes / 2 ** 20) * 10) / 10,
    requests: s.totals.requests,
    cache: s.totals.cache,
  };
  t.diagnostic(`load figures: ${JSON.stringify(figures)}`);
  await env.umount(mnt);

  assert.deepEqual(mismatches.slice(0, 10), [], 'every byte and size matches the source');
  assert.deepEqual(errors.slice(0, 10), [], 'no read, stat or walk failed');
  assert.ok(outs.every((o) => o.ops > 0), 'every reader got work done');
  assert.ok(bytes > 0 && latencies.length > READERS);
  assert.ok(figures.readLatencyMs.max < FUSE_TIMEOUT_S * 1000, `slowest read ${figures.readLatencyMs.max} ms`);
  assert.equal(s.totals.verificationFailures, 0);
  assert.ok(figures.peakRssMiB > 0 && figures.peakRssMiB < RSS_BOUND_MIB, `daemon peak RSS ${figures.peakRssMiB} MiB (bound ${RSS_BOUND_MIB} MiB)`);
});
