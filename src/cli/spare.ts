// `starling spare [--stop]`: starts the spare mount daemon that `starling mount` otherwise leaves
// after a mount (for a host that is about to mount: a CI job's set-up, a benchmark), or stops it.
import { askSpare, sparePaths, warmSpare } from '../mount/host-spare.js';
import { parseCommandArgs, parseIntArg } from './args.js';
import { UserError, type Command } from './command.js';

const usage = `usage: starling spare [--stop] [--timeout SECS]

Starts the spare mount daemon unless one is running, and returns once it is warmed up: the next
'starling mount' hands it the mount instead of starting a daemon (Node, the mount code and a warm
JIT are ready: ~0.35 s less per mount). 'starling mount' leaves one after every mount anyway (not
with --no-spare); a spare exits after 10 minutes unused.

options:
  --stop          stop the spare instead
  --timeout SECS  how long to wait for it to be warmed up (default 60)`;

export const command: Command = {
  summary: 'start (or --stop) the spare mount daemon that makes the next mount faster',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, { stop: { type: 'boolean' }, timeout: { type: 'string' } }, usage);
    if (positionals.length !== 0) throw new UserError(`unexpected ${positionals.join(' ')}\n\n${usage}`, 2);
    if (values.stop) {
      const answer = await askSpare({ op: 'stop' });
      process.stderr.write(answer && 'stopped' in answer ? `stopped the spare (pid ${answer.stopped})\n` : `no spare answers on ${sparePaths().socket}\n`);
      return 0;
    }
    const timeoutMs = parseIntArg(values.timeout ?? '60', '--timeout', 1, 3600) * 1000;
    const pid = await warmSpare(timeoutMs).catch((err: Error) => {
      throw new UserError(err.message);
    });
    process.stderr.write(`spare mount daemon ready (pid ${pid})\n`);
    return 0;
  },
};
