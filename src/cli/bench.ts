// `starling bench`: the start-up benchmark (bench/startup/harness.ts). This command parses the
// options and runs the harness in a process of its own: in a checkout its TypeScript sources under
// tsx (a dev dependency), so edits apply without a build; in an installed package, which has no
// sources, the harness compiled into dist/harness/ by `npm run build` (tsconfig.bench.json).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseCommandArgs, parseIntArg } from './args.js';
import { DEFAULT_MODES, MODES } from './bench-modes.js';
import { UserError, type Command } from './command.js';

const IMAGES = ['python', 'pydata', 'gcc', 'data'];

const usage = `usage: starling bench [options]

Start-up benchmark: cold start of a container (pull or mount, then run until the workload's ready
line) from a real registry behind an emulated link, for every image × mode, in shuffled order.
Writes results.json, results.md (table) and chart.svg to --out. Needs root (FUSE, overlayfs, chroot).

options:
  --images A,B       ${IMAGES.join(', ')} (default: all)
  --modes A,B        ${MODES.join(', ')} (default: ${DEFAULT_MODES.join(', ')})
                     full: \`starling pull\`; lazy, lazy-optimised (eStargz with the workload's
                     files first), lazy-zstdchunked: \`starling mount\` with its default options,
                     the spare daemon a previous mount leaves ready (\`starling spare\`, untimed);
                     lazy-first: lazy as the first mount on a host (no spare);
                     lazy-no-bg: lazy with --no-background-fetch; lazy-profile: lazy's unchanged
                     image with the workload's prefetch profile pushed next to it (OCI 1.1
                     referrer, in a repository of its own); lazy-gzip-index: lazy's mount of the
                     unconverted gzip image with a gzip index (\`starling index --push\`, in a
                     repository of its own); stargz: stargz-snapshotter's
                     filesystem (Debian's 0.12, default config) on lazy's blobs; stargz-optimised:
                     the same on lazy-optimised's blobs; skopeo: skopeo + tar;
                     containerd-full: \`ctr image pull\` + \`ctr run\` (overlayfs, gzip image);
                     containerd-starling / containerd-stargz: \`ctr-remote image rpull\` +
                     \`ctr run\` of lazy's image, \`starling snapshotter\` / stargz-snapshotter's
                     own snapshotter as containerd's proxy plugin, both with their defaults
                     (containerd and snapshotter started per sample, untimed)
  --rtt MS           round-trip time of the link (default 20)
  --rate MBIT        rate of the link in Mbit/s (default 100; 1000 for the gigabit profile)
  --samples N        samples per image × mode (default 5)
  --out DIR          where the report goes (default bench/out/startup); DIR/logs/ keeps each lazy and
                     containerd sample's daemon and snapshotter logs and 'starling stats --json'
  --cache-dir DIR    built and converted images are kept here (default bench/out/cache)
  --seed N           seed of the run order shuffle (default: random, recorded)
  --probe-mb N       size of the link check's timed download in MB (default 50)
  --allow-bad-link   measure even if the link check is off the profile (a warning goes in the report)
  --engine DIR       use the compiled Starling snapshot in DIR (compiled there if missing) instead
                     of a fresh one per run: converted images are cached per snapshot
  --prepare-only     build, convert, record and push the images (filling the cache), measure nothing
  --readme           also copy the report to bench/startup/latest/ and put it in README.md`;

/** node's arguments that run the harness of the package in `root`. */
function harness(root: string): string[] {
  const source = join(root, 'bench/startup/main.ts');
  return existsSync(source) ? ['--import', import.meta.resolve('tsx'), source] : [join(root, 'dist/harness/bench/startup/main.js')];
}

function list<T extends string>(value: string | undefined, known: readonly T[], fallback: readonly T[], what: string): T[] {
  if (value === undefined) return [...fallback];
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '') as T[];
  for (const i of items) if (!known.includes(i)) throw new UserError(`${what}: unknown ${JSON.stringify(i)} (known: ${known.join(', ')})`, 2);
  if (items.length === 0) throw new UserError(`${what}: empty list`, 2);
  return [...new Set(items)];
}

export const command: Command = {
  summary: 'Start-up benchmark: lazy against full pull over an emulated network',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        images: { type: 'string' },
        modes: { type: 'string' },
        rtt: { type: 'string' },
        rate: { type: 'string' },
        samples: { type: 'string' },
        out: { type: 'string' },
        'cache-dir': { type: 'string' },
        seed: { type: 'string' },
        'probe-mb': { type: 'string' },
        readme: { type: 'boolean' },
        'allow-bad-link': { type: 'boolean' },
        engine: { type: 'string' },
        'prepare-only': { type: 'boolean' },
      },
      usage,
    );
    if (positionals.length > 0) throw new UserError(`unexpected argument ${JSON.stringify(positionals[0])}\n\n${usage}`, 2);
    const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
    const options = {
      images: list(values.images, IMAGES, IMAGES, '--images'),
      modes: list(values.modes, MODES, DEFAULT_MODES, '--modes'),
      profile: { rttMs: values.rtt === undefined ? 20 : parseIntArg(values.rtt, '--rtt', 0, 10_000), rateMbit: values.rate === undefined ? 100 : parseIntArg(values.rate, '--rate', 1, 100_000) },
      samples: values.samples === undefined ? 5 : parseIntArg(values.samples, '--samples', 1, 1000),
      out: resolve(values.out ?? join(root, 'bench/out/startup')),
      cacheDir: resolve(values['cache-dir'] ?? join(root, 'bench/out/cache')),
      seed: values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : parseIntArg(values.seed, '--seed', 0, 2 ** 31 - 1),
      probeBytes: (values['probe-mb'] === undefined ? 50 : parseIntArg(values['probe-mb'], '--probe-mb', 1, 10_000)) * 1e6,
      readme: values.readme === true,
      allowBadLink: values['allow-bad-link'] === true,
      ...(values.engine ? { engineDir: resolve(values.engine) } : {}),
      prepareOnly: values['prepare-only'] === true,
    };
    if (process.getuid?.() !== 0) throw new UserError('bench needs root (FUSE mounts, overlayfs and chroot)');
    const child = spawn(process.execPath, [...harness(root), JSON.stringify(options)], { stdio: 'inherit' });
    // The harness unmounts what it mounted on SIGINT/SIGTERM; give it the chance.
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    const code = await new Promise<number>((r) => child.once('close', (c) => r(c ?? 1)));
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
    return code;
  },
};
