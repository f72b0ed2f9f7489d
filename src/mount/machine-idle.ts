// When a spare daemon may load: loading Node and the mount code takes ~1 s of CPU, which a container
// that has just started on the image mounted last must not lose (on 2 cores it did: 0.1-0.25 s of
// its start-up under containerd).
import { cpus } from 'node:os';

/** A spare loads once the machine is idle, or after this long anyway. */
export const LOAD_AFTER_MS = 60_000;

/**
 * Resolves once the machine has been at least 90 % idle (all cores together) for a second, sampled
 * every 0.5 s, or after `latestMs`, or as soon as `stop()` says so.
 */
export async function machineIdle(stop: () => boolean, latestMs = LOAD_AFTER_MS): Promise<void> {
  const times = () => cpus().reduce((t, c) => ({ idle: t.idle + c.times.idle, all: t.all + c.times.idle + c.times.user + c.times.nice + c.times.sys + c.times.irq }), { idle: 0, all: 0 });
  let before = times();
  for (let quiet = 0, waited = 0; quiet < 2 && waited < latestMs; waited += 500) {
    await new Promise((r) => setTimeout(r, 500).unref());
    if (stop()) return;
    const now = times();
    quiet = now.idle - before.idle >= 0.9 * (now.all - before.all) ? quiet + 1 : 0;
    before = now;
  }
}
