// Results of a start-up benchmark run: the JSON record, its summary (p50/p95 per image × mode),
// a Markdown table and an SVG chart of stacked pull/run bars, in the style of HelloBench plots.
import type { LinkProfile } from '../net/relay.js';
import type { LinkCheck } from '../net/link.js';
import { MODES, type Mode } from '../../src/cli/bench-modes.js';
import { containerdNotes, isContainerdMode } from './containerd-modes.js';

export { MODES, type Mode };

/** One timed start: pull (or mount) then run, with the bytes the link carried in each phase. */
export interface Sample {
  image: string;
  mode: Mode;
  /** 0-based index of this sample within its image × mode cell. */
  index: number;
  pullMs: number;
  runMs: number;
  /** Bytes the relay carried (both directions) during each phase. */
  pullBytes: number;
  runBytes: number;
  /** HTTP GET requests through the relay during each phase. */
  pullRequests: number;
  runRequests: number;
  /** Set when the sample failed; failed samples are kept in results.json but not summarised. */
  error?: string;
}

export interface Quantiles {
  p50: number;
  p95: number;
}

export interface CellSummary {
  image: string;
  mode: Mode;
  samples: number;
  failures: number;
  pullMs: Quantiles;
  runMs: Quantiles;
  totalMs: Quantiles;
  /** Median bytes over the link per phase and in total. */
  pullBytes: number;
  runBytes: number;
  totalBytes: number;
  /** Median GET requests over the link per phase and in total. */
  pullRequests: number;
  runRequests: number;
  totalRequests: number;
  /** Median total of `full` for the same image divided by this cell's median total. */
  speedupVsFull?: number;
}

/** Issue 13's targets for the lazy mode (Starling's defaults) of an image, stated in the report's notes. */
export interface LazyTargets {
  /** GET requests, pull + run. */
  requests: number;
  /** Bytes fetched before the workload ends, over the bytes of the files it reads + the TOCs. */
  fetchedOverRead: number;
}

export interface ImageInfo {
  name: string;
  description: string;
  workload: string[];
  /** Uncompressed bytes of regular files, per layer. */
  layerBytes: number[];
  /** Compressed bytes of the layers of each form pushed (gzip, estargz, …). */
  formBytes: Record<string, number>;
  /** Bytes of the files the workload reads (from `starling record`), when known. */
  readBytes?: number;
  /** Bytes of the layers' TOCs of each lazy form. */
  tocBytes: Record<string, number>;
  lazyTargets?: LazyTargets;
}

export interface Results {
  startedAt: string;
  finishedAt: string;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; kernel: string; node: string };
  link: { profile: LinkProfile; check: LinkCheck };
  samplesPerCell: number;
  images: ImageInfo[];
  samples: Sample[];
  summary: CellSummary[];
  notes: string[];
}

/** Nearest-rank percentile (q in (0, 1]) of a non-empty list. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new Error('percentile of no values');
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

function quantiles(values: number[]): Quantiles {
  return { p50: percentile(values, 0.5), p95: percentile(values, 0.95) };
}

export function summarise(samples: readonly Sample[]): CellSummary[] {
  const cells = new Map<string, Sample[]>();
  for (const s of samples) {
    const k = `${s.image}\0${s.mode}`;
    cells.set(k, [...(cells.get(k) ?? []), s]);
  }
  const out: CellSummary[] = [];
  for (const group of cells.values()) {
    const ok = group.filter((s) => s.error === undefined);
    const { image, mode } = group[0]!;
    if (ok.length === 0) {
      const zero = { p50: NaN, p95: NaN };
      out.push({ image, mode, samples: 0, failures: group.length, pullMs: zero, runMs: zero, totalMs: zero, pullBytes: NaN, runBytes: NaN, totalBytes: NaN, pullRequests: NaN, runRequests: NaN, totalRequests: NaN });
      continue;
    }
    out.push({
      image,
      mode,
      samples: ok.length,
      failures: group.length - ok.length,
      pullMs: quantiles(ok.map((s) => s.pullMs)),
      runMs: quantiles(ok.map((s) => s.runMs)),
      totalMs: quantiles(ok.map((s) => s.pullMs + s.runMs)),
      pullBytes: percentile(ok.map((s) => s.pullBytes), 0.5),
      runBytes: percentile(ok.map((s) => s.runBytes), 0.5),
      totalBytes: percentile(ok.map((s) => s.pullBytes + s.runBytes), 0.5),
      pullRequests: percentile(ok.map((s) => s.pullRequests), 0.5),
      runRequests: percentile(ok.map((s) => s.runRequests), 0.5),
      totalRequests: percentile(ok.map((s) => s.pullRequests + s.runRequests), 0.5),
    });
  }
  for (const cell of out) {
    // The containerd modes are set against containerd's own full pull.
    const full = out.find((c) => c.image === cell.image && c.mode === (isContainerdMode(cell.mode) ? 'containerd-full' : 'full'));
    if (full && full.samples > 0 && cell.samples > 0) cell.speedupVsFull = full.totalMs.p50 / cell.totalMs.p50;
  }
  const order = (c: CellSummary) => MODES.indexOf(c.mode);
  return out.sort((a, b) => (a.image === b.image ? order(a) - order(b) : a.image < b.image ? -1 : 1));
}

const seconds = (ms: number) => (Number.isNaN(ms) ? '—' : (ms / 1000).toFixed(2));
const megabytes = (b: number) => (Number.isNaN(b) ? '—' : (b / 1e6).toFixed(1));
const count = (n: number) => (Number.isNaN(n) ? '—' : String(n));

export function markdownTable(summary: readonly CellSummary[]): string {
  const lines = [
    '| image | mode | pull s p50 (p95) | run s p50 (p95) | total s p50 (p95) | MB fetched: pull + run | GET requests: pull + run | speed-up vs full | samples |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const c of summary) {
    const q = (x: Quantiles) => `${seconds(x.p50)} (${seconds(x.p95)})`;
    const speedup = c.speedupVsFull === undefined ? '—' : `${c.speedupVsFull.toFixed(2)}×`;
    const failed = c.failures ? ` (${c.failures} failed)` : '';
    lines.push(`| ${c.image} | ${c.mode} | ${q(c.pullMs)} | ${q(c.runMs)} | ${q(c.totalMs)} | ${megabytes(c.pullBytes)} + ${megabytes(c.runBytes)} | ${count(c.pullRequests)} + ${count(c.runRequests)} | ${speedup} | ${c.samples}${failed} |`);
  }
  return lines.join('\n');
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (ch) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[ch]!);
}

/** Horizontal stacked bars (pull, then run; medians) per image × mode, grouped by image. */
export function svgChart(summary: readonly CellSummary[], title: string): string {
  const rowH = 22;
  const gap = 14;
  const labelW = 230;
  const plotW = 520;
  const top = 48;
  const cells = summary;
  const maxMs = Math.max(1, ...cells.filter((c) => c.samples > 0).map((c) => c.pullMs.p50 + c.runMs.p50));
  // A round axis end: 1, 2 or 5 × 10^k seconds.
  const maxS = maxMs / 1000;
  const mag = 10 ** Math.floor(Math.log10(maxS));
  const axisS = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= maxS)!;
  const x = (ms: number) => labelW + (ms / 1000 / axisS) * plotW;
  const parts: string[] = [];
  let y = top;
  let image = '';
  for (const c of cells) {
    if (c.image !== image) {
      if (image) y += gap;
      image = c.image;
      parts.push(`<text x="8" y="${y + 14}" font-weight="bold">${escapeXml(c.image)}</text>`);
      y += rowH;
    }
    if (c.samples === 0) {
      parts.push(
        `<text x="${labelW - 8}" y="${y + 15}" text-anchor="end">${escapeXml(c.mode)}</text>`,
        `<text x="${labelW + 6}" y="${y + 15}" fill="#c00">all ${c.failures} samples failed</text>`,
      );
      y += rowH;
      continue;
    }
    const pullEnd = x(c.pullMs.p50);
    const runEnd = x(c.pullMs.p50 + c.runMs.p50);
    parts.push(
      `<text x="${labelW - 8}" y="${y + 15}" text-anchor="end">${escapeXml(c.mode)}</text>`,
      `<rect x="${labelW}" y="${y + 3}" width="${(pullEnd - labelW).toFixed(1)}" height="${rowH - 6}" fill="#4e79a7"><title>pull ${seconds(c.pullMs.p50)} s</title></rect>`,
      `<rect x="${pullEnd.toFixed(1)}" y="${y + 3}" width="${(runEnd - pullEnd).toFixed(1)}" height="${rowH - 6}" fill="#f28e2b"><title>run ${seconds(c.runMs.p50)} s</title></rect>`,
      `<text x="${(runEnd + 6).toFixed(1)}" y="${y + 15}">${seconds(c.totalMs.p50)} s${c.speedupVsFull !== undefined && c.mode !== 'full' ? ` (${c.speedupVsFull.toFixed(1)}×)` : ''}</text>`,
    );
    y += rowH;
  }
  const axisY = y + 8;
  const ticks: string[] = [];
  for (let i = 0; i <= 5; i++) {
    const s = (axisS * i) / 5;
    const tx = labelW + (plotW * i) / 5;
    ticks.push(`<line x1="${tx}" y1="${top - 4}" x2="${tx}" y2="${axisY}" stroke="#ddd"/>`, `<text x="${tx}" y="${axisY + 16}" text-anchor="middle">${Number(s.toPrecision(3))}</text>`);
  }
  const width = labelW + plotW + 110;
  const height = axisY + 48;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="8" y="20" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
    `<rect x="${labelW}" y="28" width="12" height="10" fill="#4e79a7"/><text x="${labelW + 16}" y="37">pull / mount</text>`,
    `<rect x="${labelW + 110}" y="28" width="12" height="10" fill="#f28e2b"/><text x="${labelW + 126}" y="37">run (to ready line)</text>`,
    ...ticks,
    ...parts,
    `<text x="${labelW + plotW / 2}" y="${axisY + 34}" text-anchor="middle">seconds (median)</text>`,
    '</svg>',
    '',
  ].join('\n');
}

/** The form of the image each of Starling's lazy modes mounts. */
const LAZY_FORM: Partial<Record<Mode, string>> = { lazy: 'estargz', 'lazy-first': 'estargz', 'lazy-no-bg': 'estargz', 'lazy-optimised': 'estargz-opt', 'lazy-profile': 'estargz', 'lazy-zstdchunked': 'zstdchunked' };

/**
 * The issues' targets, computed from the medians: lazy-optimised total ≤ 1/8 of full; bytes a lazy
 * mode fetches ≤ 1.3 × (bytes of the files the workload reads + TOCs), or the image's own bound for
 * lazy; lazy no worse than 1.2 × full (the sequential-read case); lazy's GET requests within the
 * image's bound. Each is stated for every image it can be computed for, with lazy against
 * stargz-snapshotter on the same blobs.
 */
export function acceptanceNotes(results: Pick<Results, 'summary' | 'images'>): string[] {
  const notes: string[] = [];
  const cell = (image: string, mode: Mode) => results.summary.find((c) => c.image === image && c.mode === mode && c.samples > 0);
  const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
  for (const img of results.images) {
    const full = cell(img.name, 'full');
    const opt = cell(img.name, 'lazy-optimised');
    if (full && opt) {
      const ratio = opt.totalMs.p50 / full.totalMs.p50;
      notes.push(`${img.name}: lazy-optimised total / full total = ${ratio.toFixed(3)} (target ≤ 0.125: ${verdict(ratio <= 0.125)}).`);
    }
    for (const [mode, form] of Object.entries(LAZY_FORM) as Array<[Mode, string]>) {
      const c = cell(img.name, mode);
      const toc = img.tocBytes[form];
      if (c && img.readBytes !== undefined && toc !== undefined) {
        const ratio = c.totalBytes / (img.readBytes + toc);
        const bound = (mode === 'lazy' ? img.lazyTargets?.fetchedOverRead : undefined) ?? 1.3;
        notes.push(`${img.name}: ${mode} fetched ${(c.totalBytes / 1e6).toFixed(1)} MB = ${ratio.toFixed(2)} × (files read ${(img.readBytes / 1e6).toFixed(1)} MB + TOCs ${(toc / 1e6).toFixed(2)} MB) (target ≤ ${bound}: ${verdict(ratio <= bound)}).`);
      }
      if (c && mode === 'lazy' && img.lazyTargets) {
        notes.push(`${img.name}: lazy GET requests pull + run = ${c.totalRequests} (target ≤ ${img.lazyTargets.requests}: ${verdict(c.totalRequests <= img.lazyTargets.requests)}).`);
      }
      if (c && full) {
        const ratio = c.totalMs.p50 / full.totalMs.p50;
        notes.push(`${img.name}: ${mode} total / full total = ${ratio.toFixed(2)}${ratio > 1.2 ? ' (worse than 1.2 × full)' : ''}.`);
      }
    }
    const lazy = cell(img.name, 'lazy');
    const stargz = cell(img.name, 'stargz');
    if (lazy && stargz) {
      const total = lazy.totalMs.p50 / stargz.totalMs.p50;
      const mount = lazy.pullMs.p50 / stargz.pullMs.p50;
      notes.push(
        `${img.name}: lazy (defaults) against stargz-snapshotter (defaults): total ${total.toFixed(2)} × (target ≤ 0.7: ${verdict(total <= 0.7)}), ` +
          `mount ${mount.toFixed(2)} × (target ≤ 1: ${verdict(mount <= 1)}), bytes ${(lazy.totalBytes / stargz.totalBytes).toFixed(2)} ×, GET requests ${lazy.totalRequests} against ${stargz.totalRequests}.`,
      );
    }
    const first = cell(img.name, 'lazy-first');
    if (first && stargz) {
      notes.push(
        `${img.name}: lazy-first (defaults, the first mount on a host: no spare daemon) against stargz-snapshotter: total ${(first.totalMs.p50 / stargz.totalMs.p50).toFixed(2)} ×, mount ${(first.pullMs.p50 / stargz.pullMs.p50).toFixed(2)} ×.`,
      );
    }
    const profiled = cell(img.name, 'lazy-profile');
    if (profiled && opt && lazy) {
      const vsOpt = profiled.totalMs.p50 / opt.totalMs.p50;
      const vsLazy = profiled.totalMs.p50 / lazy.totalMs.p50;
      notes.push(
        `${img.name}: lazy-profile (the unchanged eStargz image and a pushed prefetch profile) total / lazy-optimised total = ${vsOpt.toFixed(2)} (target ≤ 1.2: ${verdict(vsOpt <= 1.2)}); / lazy total = ${vsLazy.toFixed(2)} (target ≤ 0.5: ${verdict(vsLazy <= 0.5)}).`,
      );
    }
    const stargzOpt = cell(img.name, 'stargz-optimised');
    if (profiled && stargzOpt) {
      const ratio = profiled.totalMs.p50 / stargzOpt.totalMs.p50;
      notes.push(`${img.name}: lazy-profile total / stargz-snapshotter on the optimised image (stargz-optimised) total = ${ratio.toFixed(2)} (target ≤ 0.7: ${verdict(ratio <= 0.7)}).`);
    }
    const indexed = cell(img.name, 'lazy-gzip-index');
    if (indexed && lazy) {
      const ratio = indexed.totalMs.p50 / lazy.totalMs.p50;
      notes.push(
        `${img.name}: lazy-gzip-index (the unconverted gzip image with a pushed gzip index) total / lazy (the image converted to eStargz) total = ${ratio.toFixed(2)} (target ≤ 1.3: ${verdict(ratio <= 1.3)}); ` +
          `mount ${(indexed.pullMs.p50 / 1000).toFixed(2)} s against ${(lazy.pullMs.p50 / 1000).toFixed(2)} s, run ${(indexed.runMs.p50 / 1000).toFixed(2)} s against ${(lazy.runMs.p50 / 1000).toFixed(2)} s, ${(indexed.totalBytes / 1e6).toFixed(1)} MB against ${(lazy.totalBytes / 1e6).toFixed(1)} MB, GET requests ${indexed.totalRequests} against ${lazy.totalRequests}.`,
      );
    }
    const noBg = cell(img.name, 'lazy-no-bg');
    if (lazy && noBg) {
      const ratio = lazy.totalMs.p50 / noBg.totalMs.p50;
      notes.push(`${img.name}: lazy (defaults) total / lazy-no-bg total = ${ratio.toFixed(2)} (target ≤ 1.1: the background fill never costs the workload: ${verdict(ratio <= 1.1)}).`);
    }
    notes.push(...containerdNotes(img.name, cell));
  }
  return notes;
}

/** argv as one would type it in a shell (words with spaces or quotes single-quoted). */
function shellWords(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** The Markdown report: context (date, machine, link), the table, and the notes. */
export function markdownReport(results: Results, chartFile: string): string {
  const { machine, link } = results;
  const forms = [...new Set(results.images.flatMap((i) => Object.keys(i.formBytes)))];
  const lines = [
    `Run ${results.finishedAt.slice(0, 16).replace('T', ' ')} UTC on ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}.`,
    `Link: ${link.profile.rttMs} ms RTT, ${link.profile.rateMbit} Mbit/s (checked: ${link.check.rttMs} ms RTT, ${link.check.throughputMbit} Mbit/s over a ${(link.check.probeBytes / 1e6).toFixed(0)} MB download). ` +
      `${results.samplesPerCell} samples per cell, cold cache and new connections each, order shuffled; bytes counted at the link.`,
    '',
    markdownTable(results.summary),
    '',
    `![start-up time, pull + run](${chartFile})`,
    '',
    `| image | workload | uncompressed | ${forms.map((f) => `${f} MB`).join(' | ')} | TOCs MB | files read by workload |`,
  ];
  lines.push(`| --- | --- | ---: | ${forms.map(() => '---:').join(' | ')} | --- | ---: |`);
  for (const img of results.images) {
    const total = img.layerBytes.reduce((a, b) => a + b, 0);
    lines.push(
      `| ${img.name} | \`${shellWords(img.workload)}\` | ${megabytes(total)} MB | ${forms.map((f) => megabytes(img.formBytes[f] ?? NaN)).join(' | ')} | ${Object.entries(img.tocBytes).map(([f, b]) => `${f} ${(b / 1e6).toFixed(2)}`).join(', ') || '—'} | ${img.readBytes === undefined ? '—' : `${megabytes(img.readBytes)} MB`} |`,
    );
  }
  if (results.notes.length) lines.push('', ...results.notes.map((n) => `- ${n}`));
  return lines.join('\n') + '\n';
}
