// `starling snapshotter`: serves containerd's snapshots API on a unix socket until SIGINT/SIGTERM,
// layers with a usable TOC served lazily by mount daemons (src/snapshotter/ holds the logic).
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ImageDaemons, imagesDir } from '../snapshotter/image-daemons.js';
import { serveSnapshots } from '../snapshotter/service.js';
import { Snapshotter } from '../snapshotter/snapshotter.js';
import { parseCommandArgs } from './args.js';
import { abortOnSignals, UserError, type Command } from './command.js';

const DEFAULTS = { address: '/run/starling/snapshotter.sock', root: '/var/lib/starling/snapshotter' };

const usage = `usage: starling snapshotter [--address SOCKET] [--root DIR] [--config FILE]

Serves containerd's snapshots API (a proxy plugin of type "snapshot") on a unix socket.
Snapshots live under DIR/snapshots, their metadata in DIR/metadata.db. A Prepare carrying
containerd's remote-snapshot labels (ctr-remote's stargz.* or CRI's cri.*) for an eStargz or
zstd:chunked layer whose TOC verifies is served lazily: one mount daemon per image (DIR/images/*,
chunk cache DIR/cache) mounts its lazy layers, and keeps them mounted across restarts of this
service. Other layers are unpacked by containerd, the reason in this service's log.

options:
  --address SOCKET  unix socket to serve on (default ${DEFAULTS.address})
  --root DIR        state directory (default ${DEFAULTS.root})
  --config FILE     JSON file with "address", "root", "cacheDir" (default DIR/cache),
                    "plainHttp" (registries, host[:port], to reach over http:// besides loopback
                    ones) and "mountOptions" (more 'starling mount' options for the image
                    daemons, such as ["--background-rate", "50", "--cache-size", "20GiB"]);
                    options given here win`;

interface Config {
  address?: string;
  root?: string;
  cacheDir?: string;
  plainHttp?: string[];
  mountOptions?: string[];
}

async function readConfig(file: string): Promise<Config> {
  let config: unknown;
  try {
    config = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new UserError(`--config ${file}: ${(err as Error).message}`, 2);
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new UserError(`--config ${file}: expected a JSON object`, 2);
  const out: Config = {};
  for (const [k, v] of Object.entries(config)) {
    if (k === 'plainHttp' || k === 'mountOptions') {
      if (!Array.isArray(v) || !v.every((h) => typeof h === 'string' && h !== '')) throw new UserError(`--config ${file}: "${k}" must be a list of non-empty strings`, 2);
      out[k] = v as string[];
      continue;
    }
    if (k !== 'address' && k !== 'root' && k !== 'cacheDir') throw new UserError(`--config ${file}: unknown key ${JSON.stringify(k)} (known: address, root, cacheDir, plainHttp, mountOptions)`, 2);
    if (typeof v !== 'string' || v === '') throw new UserError(`--config ${file}: "${k}" must be a non-empty string`, 2);
    out[k] = v;
  }
  return out;
}

export const command: Command = {
  summary: 'serve containerd snapshots (proxy plugin) on a unix socket',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, { address: { type: 'string' }, root: { type: 'string' }, config: { type: 'string' } }, usage);
    if (positionals.length > 0) throw new UserError(`unexpected argument: ${positionals[0]}\n\n${usage}`, 2);
    const config = values.config ? await readConfig(values.config) : {};
    const address = resolve(values.address ?? config.address ?? DEFAULTS.address);
    const root = resolve(values.root ?? config.root ?? DEFAULTS.root);
    const signals = abortOnSignals();
    let sn: Snapshotter | undefined;
    try {
      const log = (m: string) => process.stderr.write(`${new Date().toISOString()} starling snapshotter: ${m}\n`);
      const remote = new ImageDaemons({ dir: imagesDir(root), cacheDir: resolve(config.cacheDir ?? join(root, 'cache')), plainHttpHosts: config.plainHttp ?? [], mountOptions: config.mountOptions ?? [], log });
      sn = await Snapshotter.open(root, { remote, log }).catch((err: Error) => {
        throw new UserError(err.message);
      });
      await mkdir(dirname(address), { recursive: true, mode: 0o700 });
      const service = await serveSnapshots(sn, address).catch((err: Error) => {
        throw new UserError(`cannot serve on ${address}: ${err.message}`);
      });
      process.stderr.write(`starling snapshotter: serving on ${address}, root ${root}\n`);
      await new Promise((r) => signals.signal.addEventListener('abort', r, { once: true }));
      await service.close();
      return 0;
    } finally {
      await sn?.close();
      signals.dispose();
    }
  },
};
