// `starling stats MOUNTPOINT [--json]`: what a mount's daemon has fetched, served and cached.
import { resolve } from 'node:path';
import { control, ControlUnreachable, mountPaths } from '../mount/control.js';
import type { StatsReport } from '../mount/image-mount.js';
import { imageMountpoints } from '../snapshotter/image-daemons.js';
import { formatBytes } from './_progress.js';
import { parseCommandArgs } from './args.js';
import { UserError, type Command } from './command.js';

const usage = `usage: starling stats MOUNTPOINT [--json]
       starling stats --snapshotter DIR [--json]

How long mounting took, step by step; the prefetch profile used, or why none. Per layer: digest, format, lazy or not (and why not), size, bytes fetched, requests, prefetch and
background progress. Totals: bytes fetched and served, requests, cache hits and misses, fetch
latency percentiles, verification failures.

With --snapshotter, the same for every image whose layers the containerd snapshotter with root
DIR serves lazily (one daemon per image; layers containerd unpacked itself show why).

options:
  --snapshotter DIR  the snapshotter's root (its --root)
  --json             one JSON object {layers: [...], totals: {...}}; with --snapshotter, an array`;

function human(s: StatsReport): string {
  const pct = (p: { total: number; done: number; state: string }) => (p.state === 'off' ? 'off' : `${p.state} ${p.total ? Math.round((100 * p.done) / p.total) : 100}%`);
  const lines = [`${s.ref} at ${s.mountpoint} (${s.mode}, manifest ${s.manifest.slice(0, 19)}, daemon pid ${s.pid})`];
  const m = s.timings;
  lines.push(`  mounted in ${m.mountedMs} ms: manifest ${m.manifestMs} ms, layers (footers, TOCs, config) ${m.layersMs - m.manifestMs} ms, trees and FUSE ${m.mountedMs - m.layersMs} ms`);
  const p = s.profile;
  lines.push(`  prefetch profile: ${p.state}${p.name ? ` ${p.name}` : ''}${p.digest ? ` (${p.digest.slice(0, 19)}, via ${p.via === 'api' ? 'the referrers API' : 'the referrers tag'})` : ''}${p.reason ? `: ${p.reason}` : ''}`);
  for (const l of s.layers) {
    lines.push(
      `  ${l.digest.slice(0, 19)}  ${l.format.padEnd(12)} ${l.lazy ? 'lazy   ' : 'whole  '} size ${formatBytes(l.size)}, fetched ${formatBytes(l.fetchedBytes)} in ${l.requests} requests, prefetch ${pct(l.prefetch)}, background ${pct(l.background)}` +
        (l.windowBytes === null ? '' : `, window ${formatBytes(l.windowBytes)}`) +
        (l.verificationFailures ? `, ${l.verificationFailures} verification failures` : '') +
        (l.reason ? `\n      not lazy: ${l.reason}` : ''),
    );
  }
  const t = s.totals;
  const c = t.cache;
  const r = t.chunkRequests;
  lines.push(
    `  total: fetched ${formatBytes(t.fetchedBytes)} (${formatBytes(t.metadataBytes)} image metadata) in ${t.requests} requests, served ${formatBytes(t.servedBytes)}`,
    `  chunk requests: ${r.read} reads, ${r.readAhead} read-ahead, ${r.prefetch} prefetch, ${r.speculative} guessed ahead, ${r.background} background`,
    `  cache: memory ${c.memoryHits} hits / ${c.memoryMisses} misses, disk ${c.diskHits} hits / ${c.diskMisses} misses, ${formatBytes(c.diskBytes)} on disk`,
    `  fetch latency: p50 ${t.fetchLatencyMs.p50.toFixed(1)} ms, p95 ${t.fetchLatencyMs.p95.toFixed(1)} ms, p99 ${t.fetchLatencyMs.p99.toFixed(1)} ms (${t.fetchLatencyMs.count} requests)`,
    `  verification failures: ${t.verificationFailures}`,
    `  fetched ahead of the dynamic loader: ${t.filesAhead} files`,
    `  fetched ahead of Python's importer: ${t.modulesAhead} modules`,
    `  fetched ahead of the C/C++ compiler: ${t.headersAhead} headers`,
    `  directories fetched at once (their files missing one by one): ${t.dirsAhead}`,
    `  fetched for the image's command at mount: ${t.commandFiles} files`,
  );
  return lines.join('\n');
}

async function report(mountpoint: string): Promise<StatsReport> {
  try {
    return (await control(mountPaths(mountpoint).socket, { op: 'stats' })) as StatsReport;
  } catch (err) {
    if (err instanceof ControlUnreachable) throw new UserError(`${mountpoint}: no running starling daemon (${err.message})`);
    throw err;
  }
}

export const command: Command = {
  summary: 'show what a lazy mount has fetched, served and cached',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, { json: { type: 'boolean' }, snapshotter: { type: 'string' } }, usage);
    if (values.snapshotter !== undefined) {
      if (positionals.length !== 0) throw new UserError(`expected no MOUNTPOINT with --snapshotter\n\n${usage}`, 2);
      const reports: StatsReport[] = [];
      for (const mnt of await imageMountpoints(resolve(values.snapshotter))) reports.push(await report(mnt));
      process.stdout.write(values.json ? `${JSON.stringify(reports)}\n` : `${reports.length ? reports.map(human).join('\n') : 'no image is served lazily'}\n`);
      return 0;
    }
    if (positionals.length !== 1) throw new UserError(`expected MOUNTPOINT\n\n${usage}`, 2);
    const r = await report(resolve(positionals[0]!));
    process.stdout.write(values.json ? `${JSON.stringify(r)}\n` : `${human(r)}\n`);
    return 0;
  },
};
