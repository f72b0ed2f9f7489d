// The containerd modes of the start-up benchmark (run by containerd.ts) and the report's lines about
// them: issue 14's target, Starling's snapshotter against stargz-snapshotter's under the same
// containerd (`ctr-remote image rpull` + `ctr run`, both with their defaults), totals ≤ 0.7 ×, with
// the rpull and run phases side by side. Kept apart from containerd.ts so the report does not load
// what runs containerd.
import { CONTAINERD_MODES } from '../../src/cli/bench-modes.js';
import type { CellSummary, Mode } from './report.js';

export type ContainerdMode = (typeof CONTAINERD_MODES)[number];

export const isContainerdMode = (mode: string): mode is ContainerdMode => (CONTAINERD_MODES as readonly string[]).includes(mode);

/** What the containerd modes are, for the report's notes. */
export const CONTAINERD_NOTE =
  "containerd modes: Debian's containerd 1.6 and runc, a new containerd with empty root, state and snapshotter per sample (its start and its snapshotter's are not timed; the CRI plugin off); " +
  'pull = `ctr image pull` of the gzip image into containerd\'s overlayfs snapshotter (containerd-full) or `ctr-remote image rpull` of the eStargz image (containerd-starling: `starling snapshotter` with its defaults; containerd-stargz: stargz-snapshotter 0.12\'s snapshotter, upstream\'s default config, bench/stargz-snapshotter); ' +
  'run = `ctr run --rm` of the workload until its ready line. Lazy samples are checked afterwards: no layer in containerd\'s content store, every layer mounted lazily.';

const s = (ms: number) => (ms / 1000).toFixed(2);
const x = (a: number, b: number) => (a / b).toFixed(2);

/** The containerd lines for one image, from the cells that have successful samples. */
export function containerdNotes(image: string, cell: (image: string, mode: Mode) => CellSummary | undefined): string[] {
  const notes: string[] = [];
  const starling = cell(image, 'containerd-starling');
  const stargz = cell(image, 'containerd-stargz');
  const full = cell(image, 'containerd-full');
  if (starling && stargz) {
    const total = starling.totalMs.p50 / stargz.totalMs.p50;
    notes.push(
      `${image}: containerd-starling against containerd-stargz (ctr-remote rpull + ctr run, defaults): total ${total.toFixed(2)} × (${s(starling.totalMs.p50)} s against ${s(stargz.totalMs.p50)} s; target ≤ 0.7: ${total <= 0.7 ? 'met' : 'MISSED'}); ` +
        `rpull ${x(starling.pullMs.p50, stargz.pullMs.p50)} × (${s(starling.pullMs.p50)} s against ${s(stargz.pullMs.p50)} s), run ${x(starling.runMs.p50, stargz.runMs.p50)} × (${s(starling.runMs.p50)} s against ${s(stargz.runMs.p50)} s); ` +
        `${(starling.totalBytes / 1e6).toFixed(1)} MB against ${(stargz.totalBytes / 1e6).toFixed(1)} MB, GET requests ${starling.totalRequests} against ${stargz.totalRequests}.`,
    );
  }
  for (const lazy of [starling, stargz]) {
    if (lazy && full) notes.push(`${image}: ${lazy.mode} total / containerd-full total = ${x(lazy.totalMs.p50, full.totalMs.p50)}.`);
  }
  return notes;
}
