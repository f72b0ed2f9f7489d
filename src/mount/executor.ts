// Carries out an overlay plan: `mount -t overlay` with the options the planner shares with the
// snapshotter's answers to containerd.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { overlayOptions, type OverlayPlan } from './plan.js';

const run = promisify(execFile);

/** The source name that marks an overlay as Starling's (stale-mount recovery looks for it). */
export const OVERLAY_SOURCE = 'starling-overlay';

export async function mountOverlay(plan: OverlayPlan): Promise<void> {
  await run('mount', ['-t', 'overlay', OVERLAY_SOURCE, '-o', overlayOptions(plan.lowers, plan.upper).join(','), plan.target]);
}
