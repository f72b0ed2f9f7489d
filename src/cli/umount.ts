// `starling umount MOUNTPOINT [--force]`: asks the mount's daemon to unmount and exit; --force also
// recovers a mount whose daemon is gone or stuck (lazy unmounts, then the daemon is killed).
import { resolve } from 'node:path';
import { stopMountDaemon, StopError } from '../mount/stop.js';
import { parseCommandArgs } from './args.js';
import { UserError, type Command } from './command.js';

const usage = `usage: starling umount MOUNTPOINT [--force]

Stops the daemon serving MOUNTPOINT and unmounts it.

options:
  --force   also when the daemon is dead or does not answer: detach its mounts lazily and kill it`;

export const command: Command = {
  summary: 'unmount a lazy mount and stop its daemon',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, { force: { type: 'boolean' } }, usage);
    if (positionals.length !== 1) throw new UserError(`expected MOUNTPOINT\n\n${usage}`, 2);
    const mountpoint = resolve(positionals[0]!);
    try {
      const { detached } = await stopMountDaemon(mountpoint, { force: values.force ?? false });
      if (detached.length) process.stderr.write(`detached ${detached.join(', ')}\n`);
    } catch (err) {
      if (err instanceof StopError) throw new UserError(err.message);
      throw err;
    }
    return 0;
  },
};
