// eStargz conversion benchmark: Starling's writer against Go's estargz.Build (Debian's
// stargz-snapshotter 0.12.0, test/interop/estargz) on the same ≥ 200 MB real-content layer, same gzip
// level and chunk size, run alternately in one session. Each conversion runs in its own process
// under GNU time (wall time, peak RSS); Go keeps its default GOMAXPROCS, as `ctr-remote` would.
// Go then verifies our blob, so the figures are for a valid eStargz.
//
//   npx tsx bench/convert/estargz.ts [--runs N] [--level N] [--chunk-size BYTES]
//
// Prints a table and writes bench/out/convert-estargz.{json,txt}.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { benchLayer } from './layer.js';
import { formatTable, measureCommand, MiB, writeReport, type Measurement } from './measure.js';

const run = promisify(execFile);
const repo = new URL('../../', import.meta.url).pathname;
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    level: { type: 'string', default: '9' },
    'chunk-size': { type: 'string', default: String(4 << 20) },
  },
});
const runs = Number(values.runs);
const level = values.level;
const chunkSize = values['chunk-size'];

await run(join(repo, 'scripts/build-interop.sh'), [], { cwd: repo });
const layer = await benchLayer(join(repo, 'bench/out/cache'));
const work = await mkdtemp(join(tmpdir(), 'starling-bench-convert-'));
try {
  const oursOut = join(work, 'ours.blob');
  const goOut = join(work, 'go.blob');
  const tsx = join(repo, 'node_modules/.bin/tsx');
  const ours: Measurement[] = [];
  const go: Measurement[] = [];
  for (let i = 0; i < runs; i++) {
    ours.push(await measureCommand(tsx, [join(repo, 'bench/convert/run-estargz.ts'), layer.path, oursOut, chunkSize, level]));
    go.push(await measureCommand(join(repo, '.interop-bin/estargz'), ['build', layer.path, goOut, '-procs', '0', '-level', level, '-chunk-size', chunkSize]));
    process.stderr.write(`run ${i + 1}/${runs}: starling ${(ours.at(-1)!.wallMs / 1000).toFixed(1)} s, go ${(go.at(-1)!.wallMs / 1000).toFixed(1)} s\n`);
  }
  const oursResult = JSON.parse(ours.at(-1)!.stdout) as { size: number; tocDigest: string };
  const goResult = JSON.parse(go.at(-1)!.stdout) as { size: number };
  await run(join(repo, '.interop-bin/estargz'), ['verify', oursOut, oursResult.tocDigest], { maxBuffer: 256 << 20 });

  const median = (ms: Measurement[]) => [...ms].sort((a, b) => a.wallMs - b.wallMs)[Math.floor((ms.length - 1) / 2)]!;
  const o = median(ours);
  const g = median(go);
  const ratio = o.wallMs / g.wallMs;
  const mbps = (m: Measurement) => (layer.size / MiB / (m.wallMs / 1000)).toFixed(1);
  const cpuMedian = (ms: Measurement[]) => [...ms].map((m) => m.cpuMs).sort((a, b) => a - b)[Math.floor((ms.length - 1) / 2)]!;
  const oCpu = cpuMedian(ours);
  const gCpu = cpuMedian(go);
  const table = formatTable(
    ['converter', 'wall s (median)', 'MiB/s', 'CPU s (median)', 'peak RSS MiB', 'blob MiB'],
    [
      ['starling writeEstargz', (o.wallMs / 1000).toFixed(2), mbps(o), (oCpu / 1000).toFixed(2), (o.peakRssBytes / MiB).toFixed(0), (oursResult.size / MiB).toFixed(1)],
      ['go estargz.Build', (g.wallMs / 1000).toFixed(2), mbps(g), (gCpu / 1000).toFixed(2), (g.peakRssBytes / MiB).toFixed(0), (goResult.size / MiB).toFixed(1)],
    ],
  );
  // On a shared, loaded machine wall time mostly measures the scheduler; CPU time (user + sys) is
  // the steadier comparison of the work each converter does.
  const summary =
    `eStargz conversion, layer ${(layer.size / MiB).toFixed(0)} MiB (${layer.path}), level ${level}, chunk ${chunkSize} B, ${runs} runs each, load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} CPUs\n${table}\n` +
    `ratio starling/go: wall time ${ratio.toFixed(2)} (target ≤ 1.00), CPU time ${(oCpu / gCpu).toFixed(2)}\n`;
  process.stdout.write(summary);
  await writeReport(join(repo, 'bench/out/convert-estargz.txt'), summary);
  await writeReport(
    join(repo, 'bench/out/convert-estargz.json'),
    JSON.stringify(
      {
        layerBytes: layer.size,
        level: Number(level),
        chunkSize: Number(chunkSize),
        runs,
        starling: { wallMs: ours.map((m) => m.wallMs), cpuMs: ours.map((m) => m.cpuMs), peakRssBytes: ours.map((m) => m.peakRssBytes), blobBytes: oursResult.size },
        go: { wallMs: go.map((m) => m.wallMs), cpuMs: go.map((m) => m.cpuMs), peakRssBytes: go.map((m) => m.peakRssBytes), blobBytes: goResult.size },
        ratio,
        cpuRatio: oCpu / gCpu,
      },
      null,
      2,
    ),
  );
} finally {
  await rm(work, { recursive: true, force: true });
}
