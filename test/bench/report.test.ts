// Report generation: percentiles, per-cell summaries with speed-up against full, the Markdown table
// and the SVG chart (bar lengths proportional to the medians).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { publishToReadme, writeReport } from '../../bench/startup/harness.js';
import { acceptanceNotes, markdownReport, markdownTable, percentile, summarise, svgChart, type Results, type Sample } from '../../bench/startup/report.js';

function sample(image: string, mode: Sample['mode'], index: number, pullMs: number, runMs: number, bytes: number, error?: string): Sample {
  return { image, mode, index, pullMs, runMs, pullBytes: bytes, runBytes: bytes / 10, pullRequests: 2, runRequests: index + 1, ...(error ? { error } : {}) };
}

const samples: Sample[] = [
  ...[10_000, 12_000, 11_000, 30_000, 10_500].map((p, i) => sample('gcc', 'full', i, p, 1000, 400e6)),
  ...[500, 600, 400, 450, 550].map((p, i) => sample('gcc', 'lazy', i, p, 2000 + i * 100, 1e6)),
  sample('gcc', 'lazy-optimised', 0, 300, 900, 1e6),
  sample('gcc', 'lazy-optimised', 1, 0, 0, 0, 'mount failed: EIO'),
  sample('python', 'lazy', 0, 100, 200, 5e5),
];

test('percentile is nearest-rank', () => {
  assert.equal(percentile([5, 1, 4, 2, 3], 0.5), 3);
  assert.equal(percentile([5, 1, 4, 2, 3], 0.95), 5);
  assert.equal(percentile([7], 0.95), 7);
  assert.equal(percentile([1, 2, 3, 4], 0.5), 2);
  assert.throws(() => percentile([], 0.5));
});

test('summarise: medians and p95 per cell, failures counted apart, speed-up against full', () => {
  const summary = summarise(samples);
  assert.deepEqual(
    summary.map((c) => `${c.image}/${c.mode}`),
    ['gcc/full', 'gcc/lazy', 'gcc/lazy-optimised', 'python/lazy'],
  );
  const full = summary[0]!;
  assert.deepEqual(full.pullMs, { p50: 11_000, p95: 30_000 });
  assert.equal(full.totalMs.p50, 12_000);
  assert.equal(full.totalBytes, 440e6);
  const lazy = summary[1]!;
  assert.deepEqual(lazy.runMs, { p50: 2200, p95: 2400 });
  assert.equal(lazy.totalMs.p50, 2700); // totals are summarised per sample, not summed medians
  assert.equal(lazy.speedupVsFull, 12_000 / 2700);
  const opt = summary[2]!;
  assert.equal(opt.samples, 1);
  assert.equal(opt.failures, 1);
  assert.equal(opt.totalMs.p50, 1200);
  assert.equal(summary[3]!.speedupVsFull, undefined); // no full run of python
});

test('markdown table and report name every cell with its figures', () => {
  const summary = summarise(samples);
  const table = markdownTable(summary);
  const rows = table.split('\n');
  assert.equal(rows.length, 2 + summary.length);
  assert.match(rows[3]!, /^\| gcc \| lazy \| 0\.50 \(0\.60\) \| 2\.20 \(2\.40\) \| 2\.70 \(2\.95\) \| 1\.0 \+ 0\.1 \| 2 \+ 3 \| 4\.44× \| 5 \|$/);
  assert.match(rows[4]!, /\| 1 \(1 failed\) \|$/);
  const results: Results = {
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:10:00.000Z',
    machine: { cpus: 2, cpuModel: 'Test CPU', memoryGiB: 24, kernel: '6.1', node: 'v20' },
    link: { profile: { rttMs: 20, rateMbit: 100 }, check: { rttMs: 21.5, throughputMbit: 97.1, probeBytes: 50e6, probeSeconds: 4.1 } },
    samplesPerCell: 5,
    images: [{ name: 'gcc', description: 'd', workload: ['sh', '-c', 'gcc x.c'], layerBytes: [1e9, 2e8], formBytes: { gzip: 4e8, estargz: 4.4e8 }, readBytes: 5e7, tocBytes: { estargz: 2e6 } }],
    samples,
    summary,
    notes: ['a note'],
  };
  const md = markdownReport(results, 'chart.svg');
  assert.match(md, /20 ms RTT, 100 Mbit\/s \(checked: 21\.5 ms RTT, 97\.1 Mbit\/s/);
  assert.match(md, /!\[[^\]]*\]\(chart\.svg\)/);
  assert.match(md, /\| gcc \| `sh -c 'gcc x\.c'` \| 1200\.0 MB \| 400\.0 \| 440\.0 \| estargz 2\.00 \| 50\.0 MB \|/);
  assert.match(md, /- a note/);
});

test('SVG chart: one pull and one run bar per successful cell, lengths proportional to the medians', () => {
  const summary = summarise(samples);
  const svg = svgChart(summary, 'gcc & python <test>');
  assert.ok(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>'));
  assert.match(svg, /gcc &amp; python &lt;test&gt;/);
  const bars = [...svg.matchAll(/<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="16" fill="(#4e79a7|#f28e2b)"><title>(pull|run) ([\d.]+) s<\/title>/g)];
  assert.equal(bars.length, 2 * summary.length);
  // A cell whose every sample failed is shown as such, not left out.
  const failed = summarise([...samples, sample('python', 'lazy-zstdchunked', 0, 0, 0, 0, 'EIO')]);
  assert.match(svgChart(failed, 't'), />lazy-zstdchunked<\/text>\s*<text [^>]*>all 1 samples failed</);
  // Pixels per second is the same for every bar.
  const scales = bars.map((b) => Number(b[2]) / Number(b[5])).filter((s) => Number.isFinite(s) && s > 0);
  for (const s of scales) assert.ok(Math.abs(s - scales[0]!) / scales[0]! < 0.02, `bar scale ${s} vs ${scales[0]}`);
  // Run bars start where their pull bar ends.
  for (let i = 0; i < bars.length; i += 2) assert.ok(Math.abs(Number(bars[i]![1]) + Number(bars[i]![2]) - Number(bars[i + 1]![1])) < 0.2);
});

test("acceptance notes: the issue's targets computed from the medians, met or missed", () => {
  const summary = summarise(samples);
  const notes = acceptanceNotes({
    summary,
    images: [{ name: 'gcc', description: '', workload: [], layerBytes: [], formBytes: {}, readBytes: 0.5e6, tocBytes: { estargz: 0.5e6, 'estargz-opt': 0.4e6 } }],
  });
  // lazy-optimised: 1200 ms / full 12000 ms = 0.1 → met; its 1.1 MB over (0.5 + 0.4) MB = 1.22 → met.
  assert.ok(notes.includes('gcc: lazy-optimised total / full total = 0.100 (target ≤ 0.125: met).'), notes.join('\n'));
  assert.ok(notes.some((n) => n.startsWith('gcc: lazy-optimised fetched 1.1 MB = 1.22 × (files read 0.5 MB + TOCs 0.40 MB) (target ≤ 1.3: met)')));
  // lazy: 1.1 MB over (0.5 + 0.5) MB = 1.10 → met; its time 2700 / 12000.
  assert.ok(notes.some((n) => n.startsWith('gcc: lazy fetched 1.1 MB = 1.10 ×')));
  assert.ok(notes.includes('gcc: lazy total / full total = 0.23.'));
  // lazy against stargz-snapshotter: 2700 / 4000 ms (mount 500 / 1000), 1.1 / 2.2 MB, GET requests 2 + 3 against 2 + 1;
  // against lazy-no-bg 2700 / 2400 ms.
  const both = acceptanceNotes({
    summary: summarise([...samples, sample('gcc', 'stargz', 0, 1000, 3000, 2e6), sample('gcc', 'lazy-no-bg', 0, 400, 2000, 1e6)]),
    images: [{ name: 'gcc', description: '', workload: [], layerBytes: [], formBytes: {}, tocBytes: {} }],
  });
  assert.ok(both.includes('gcc: lazy (defaults) against stargz-snapshotter (defaults): total 0.68 × (target ≤ 0.7: met), mount 0.50 × (target ≤ 1: met), bytes 0.50 ×, GET requests 5 against 3.'), both.join('\n'));
  assert.ok(both.includes('gcc: lazy (defaults) total / lazy-no-bg total = 1.13 (target ≤ 1.1: the background fill never costs the workload: MISSED).'), both.join('\n'));
  // lazy-profile 300 + 1200 ms against stargz on the optimised image 500 + 2000 ms: 0.60 → met.
  const profiled = acceptanceNotes({
    summary: summarise([sample('gcc', 'lazy-profile', 0, 300, 1200, 1e6), sample('gcc', 'stargz-optimised', 0, 500, 2000, 1e6)]),
    images: [{ name: 'gcc', description: '', workload: [], layerBytes: [], formBytes: {}, tocBytes: {} }],
  });
  assert.ok(profiled.includes('gcc: lazy-profile total / stargz-snapshotter on the optimised image (stargz-optimised) total = 0.60 (target ≤ 0.7: met).'), profiled.join('\n'));
  const slow = acceptanceNotes({ summary: summarise([sample('d', 'full', 0, 1000, 0, 1), sample('d', 'lazy', 0, 100, 1500, 1)]), images: [{ name: 'd', description: '', workload: [], layerBytes: [], formBytes: {}, tocBytes: {} }] });
  assert.deepEqual(slow, ['d: lazy total / full total = 1.60 (worse than 1.2 × full).']);
});

test("acceptance notes: an image's own lazy targets (GET requests, bytes over files read + TOCs) replace the general bound for lazy only", () => {
  // python lazy: 0.5 + 0.05 MB in 2 + 1 GETs; lazy-no-bg the same.
  const summary = summarise([sample('python', 'lazy', 0, 100, 200, 5e5), sample('python', 'lazy-no-bg', 0, 100, 200, 5e5)]);
  const image = { name: 'python', description: '', workload: [], layerBytes: [], formBytes: {}, readBytes: 0.2e6, tocBytes: { estargz: 0.1e6 } };
  const notes = acceptanceNotes({ summary, images: [{ ...image, lazyTargets: { requests: 40, fetchedOverRead: 2 } }] });
  // 0.55 MB / (0.2 + 0.1) MB = 1.83: within lazy's own 2, beyond the 1.3 that lazy-no-bg keeps.
  assert.ok(notes.includes('python: lazy fetched 0.6 MB = 1.83 × (files read 0.2 MB + TOCs 0.10 MB) (target ≤ 2: met).'), notes.join('\n'));
  assert.ok(notes.includes('python: lazy-no-bg fetched 0.6 MB = 1.83 × (files read 0.2 MB + TOCs 0.10 MB) (target ≤ 1.3: MISSED).'), notes.join('\n'));
  assert.ok(notes.includes('python: lazy GET requests pull + run = 3 (target ≤ 40: met).'), notes.join('\n'));
  const strict = acceptanceNotes({ summary, images: [{ ...image, lazyTargets: { requests: 2, fetchedOverRead: 1.5 } }] });
  assert.ok(strict.includes('python: lazy GET requests pull + run = 3 (target ≤ 2: MISSED).'), strict.join('\n'));
  assert.ok(strict.some((n) => n.startsWith('python: lazy fetched 0.6 MB = 1.83 ×') && n.endsWith('(target ≤ 1.5: MISSED).')), strict.join('\n'));
  // Without targets of its own, no requests line.
  assert.ok(!acceptanceNotes({ summary, images: [image] }).some((n) => n.includes('GET requests pull + run')));
});

test('writeReport + publishToReadme: the README gets one benchmark section, replaced on the next run, other sections kept', async () => {
  const root = await mkdtemp(join(tmpdir(), 'starling-readme-'));
  try {
    const out = join(root, 'out');
    await mkdir(out);
    await mkdir(join(root, 'bench/micro'), { recursive: true });
    await writeFile(join(root, 'bench/micro/latest.md'), '| benchmark | mean |\n| --- | ---: |\n| toc | 1 ms |\n');
    await writeFile(join(root, 'README.md'), '# Starling\n\nIntro.\n\n## Commands\n\nRun it.\n');
    const results: Results = {
      startedAt: '2026-01-01T00:00:00.000Z',
      finishedAt: '2026-01-01T00:10:00.000Z',
      machine: { cpus: 2, cpuModel: 'Test CPU', memoryGiB: 24, kernel: '6.1', node: 'v20' },
      link: { profile: { rttMs: 20, rateMbit: 100 }, check: { rttMs: 21, throughputMbit: 97, probeBytes: 50e6, probeSeconds: 4.1 } },
      samplesPerCell: 5,
      images: [],
      samples,
      summary: summarise(samples),
      notes: [],
    };
    await writeReport(results, out);
    assert.deepEqual(JSON.parse(await readFile(join(out, 'results.json'), 'utf8')), JSON.parse(JSON.stringify(results)));
    await publishToReadme(out, root);
    await writeFile(join(root, 'README.md'), (await readFile(join(root, 'README.md'), 'utf8')) + '\n## Later section\n\nKept.\n');
    await publishToReadme(out, root);
    const readme = await readFile(join(root, 'README.md'), 'utf8');
    assert.equal(readme.split('## Start-up benchmark').length, 2, 'exactly one benchmark section');
    assert.match(readme, /^# Starling\n\nIntro\.\n\n## Commands\n\nRun it\.\n\n## Start-up benchmark\n/);
    assert.match(readme, /!\[[^\]]*\]\(bench\/startup\/latest\/chart\.svg\)/);
    assert.match(readme, /\| gcc \| lazy \| 0\.50 \(0\.60\)/);
    assert.match(readme, /### Micro-benchmarks[^]*\| toc \| 1 ms \|/);
    assert.match(readme, /\n## Later section\n\nKept\.\n$/);
    assert.equal(await readFile(join(root, 'bench/startup/latest/chart.svg'), 'utf8'), await readFile(join(out, 'chart.svg'), 'utf8'));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("containerd modes: issue 14's target line (containerd-starling / containerd-stargz totals ≤ 0.7) with rpull and run apart; ordered after the other modes", { timeout: 10_000 }, () => {
  // starling: rpull 600 + run 1400 ms, 2 MB; stargz: rpull 400 + run 3000 ms, 3 MB; full: 9000 + 1000 ms.
  const s = summarise([
    sample('gcc', 'containerd-stargz', 0, 400, 3000, 3e6 / 1.1),
    sample('gcc', 'containerd-starling', 0, 600, 1400, 2e6 / 1.1),
    sample('gcc', 'containerd-full', 0, 9000, 1000, 400e6),
    sample('gcc', 'lazy', 0, 500, 2000, 1e6),
  ]);
  assert.deepEqual(s.map((c) => c.mode), ['lazy', 'containerd-full', 'containerd-starling', 'containerd-stargz']);
  // Speed-up against containerd's own full pull (10 s), not against Starling's `full` (absent here).
  assert.deepEqual(s.map((c) => c.speedupVsFull), [undefined, 1, 5, 10_000 / 3400]);
  const notes = acceptanceNotes({ summary: s, images: [{ name: 'gcc', description: '', workload: [], layerBytes: [], formBytes: {}, tocBytes: {} }] });
  assert.ok(
    notes.includes(
      'gcc: containerd-starling against containerd-stargz (ctr-remote rpull + ctr run, defaults): total 0.59 × (2.00 s against 3.40 s; target ≤ 0.7: met); ' +
        'rpull 1.50 × (0.60 s against 0.40 s), run 0.47 × (1.40 s against 3.00 s); 2.0 MB against 3.0 MB, GET requests 3 against 3.',
    ),
    notes.join('\n'),
  );
  assert.ok(notes.includes('gcc: containerd-starling total / containerd-full total = 0.20.'), notes.join('\n'));
  assert.ok(notes.includes('gcc: containerd-stargz total / containerd-full total = 0.34.'), notes.join('\n'));
  const missed = acceptanceNotes({ summary: summarise([sample('p', 'containerd-stargz', 0, 400, 600, 1), sample('p', 'containerd-starling', 0, 500, 500, 1)]), images: [{ name: 'p', description: '', workload: [], layerBytes: [], formBytes: {}, tocBytes: {} }] });
  assert.match(missed[0]!, /^p: containerd-starling against containerd-stargz .*total 1\.00 × \(1\.00 s against 1\.00 s; target ≤ 0\.7: MISSED\)/);
  // Without both lazy cells there is no target line.
  assert.deepEqual(acceptanceNotes({ summary: summarise([sample('p', 'containerd-starling', 0, 500, 500, 1)]), images: [{ name: 'p', description: '', workload: [], layerBytes: [], formBytes: {}, tocBytes: {} }] }), []);
});
