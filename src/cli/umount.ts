// `starling umount MOUNTPOINT [--force]`: asks the mount's daemon to unmount and exit; --force also
// recovers a mount whose daemon is gone or stuck (lazy unmounts, then the daemon is killed).
import { readFile, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { control, ControlUnreachable, mountPaths } from '../mount/control.js';
import { detachAll, isMountpoint } from '../mount/stale.js';
import { parseCommandArgs } from './args.js';
import { UserError, type Command } from './command.js';

const usage = `usage: starling umount MOUNTPOINT [--force]

Stops the daemon serving MOUNTPOINT and unmounts it.

options:
  --force   also when the daemon is dead or does not answer: detach its mounts lazily and kill it`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const command: Command = {
  summary: 'unmount a lazy mount and stop its daemon',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, { force: { type: 'boolean' } }, usage);
    if (positionals.length !== 1) throw new UserError(`expected MOUNTPOINT\n\n${usage}`, 2);
    const mountpoint = resolve(positionals[0]!);
    const paths = mountPaths(mountpoint);
    try {
      await control(paths.socket, { op: 'stop' });
      // The daemon answers first, then unmounts: wait until the mountpoint is released.
      for (let i = 0; i < 600 && (await isMountpoint(mountpoint)); i++) await sleep(100);
      if (!(await isMountpoint(mountpoint))) return 0;
      if (!values.force) throw new UserError(`${mountpoint}: the daemon did not unmount within 60 s (try --force)`);
    } catch (err) {
      if (!(err instanceof ControlUnreachable)) throw err;
      if (!values.force) throw new UserError(`${mountpoint}: no running starling daemon (${err.message}); use --force to clean up a stale mount`);
    }
    // Missing, or cut short by a daemon that died while writing it: then there is no pid to kill.
    const info = (await readFile(paths.info, 'utf8').then((t) => JSON.parse(t) as unknown).catch(() => ({}))) as { pid?: number };
    const detached = await detachAll([mountpoint], paths.dir);
    if (info.pid) {
      try {
        process.kill(info.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await rm(paths.socket, { force: true });
    await rm(paths.info, { force: true });
    if (detached.length === 0 && !info.pid) throw new UserError(`${mountpoint}: nothing of starling is mounted there`);
    process.stderr.write(`detached ${detached.length ? detached.join(', ') : 'nothing'}\n`);
    return 0;
  },
};
