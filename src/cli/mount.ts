// `starling mount REF MOUNTPOINT`: lazy mount. Without --foreground it starts a detached daemon
// (this same program with --foreground) and returns once the daemon reports the mount usable.
import { rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { exitNow } from '../format/native.js';
import { mountPaths } from '../mount/control.js';
import { claimSpare, gatedSpare, serveAsSpare, type MountArgsCheck, type Successor } from '../mount/host-spare.js';
import { ipcChannel, MountFailed, spawnMountDaemon, type DaemonChannel, type SpareAssignment } from '../mount/spawn.js';
import type { MountProgress } from '../mount/image-mount.js';
import type { MountMode } from '../mount/plan.js';
import { parsePlatform } from '../oci/platform.js';
import { parseCommandArgs, parseIntArg, parseSize } from './args.js';
import { asUserError, UserError, type Command } from './command.js';

const usage = `usage: starling mount REF MOUNTPOINT [options]

Mounts the image REF read-only at MOUNTPOINT, fetching file contents only when they are read
(eStargz and zstd:chunked layers, and gzip layers with a gzip index pushed by 'starling index REF
--push'; other layers are fetched whole). Returns once the mount is usable
and keeps serving it from a background daemon; 'starling umount MOUNTPOINT' stops it.
REF is docker://[HOST[:PORT]/]NAME[:TAG][@DIGEST] or oci:DIR[:TAG].

options:
  --platform P          os/arch[/variant] to pick from an index (default: this machine's)
  --cache-dir DIR       chunk cache shared by all mounts (default $STARLING_CACHE_DIR or /var/cache/starling)
  --cache-size SIZE     disk cache bound (default 10GiB)
  --memory-cache SIZE   memory cache bound (default 128MiB)
  --no-prefetch         do not fetch the prioritised files (eStargz landmark / --prefetch-list /
                        profile) first, nor the loader, libc and the image's command
                        (Entrypoint + Cmd) at mount, nor the shared libraries of a program
                        being started, nor the modules a Python module being imported
                        imports, nor the headers a C or C++ file being read includes, nor a
                        directory whose files keep missing one by one
  --no-background-fetch do not fill the rest of the layers in the background
  --background-quiet S  the background fill starts S seconds after the last on-demand fetch
                        (default 5); it then sends one small request at a time, paced to the
                        measured link rate, and pauses whenever a read has to fetch
  --background-rate MBIT  keep the background fill under MBIT megabits per second (default:
                        paced to the link only)
  --prefetch-list FILE  paths in the image (one per line) to fetch first
  --profile NAME|none   the prefetch profile (an OCI referrer of the image, pushed by 'starling
                        record --push') whose files to fetch first, with the landmark or the list;
                        default: the newest for the image's platform. A profile that cannot be
                        used is skipped, with the reason in 'starling stats'
  --mode merged|overlay|layers
                        one FUSE mount of the merged layers (default); one per layer stacked
                        by kernel overlayfs; or one per lazy layer at MOUNTPOINT/N (N: the
                        layer's position, bottom 0) for containerd to stack, layers without a
                        usable TOC (a refused one included) left out and not fetched
  --upper DIR           writable overlayfs on top (DIR/upper, DIR/work)
  --fuse-timeout SECS   per-operation FUSE timeout (default 120)
  --foreground          serve in this process until SIGINT/SIGTERM or umount (a service manager
                        should start it as the background daemon is: node --max-semi-space-size=4,
                        MALLOC_MMAP_THRESHOLD_=8388608 in the environment)
  --plain-http          talk http:// to the registry
  --no-spare            neither hand this mount to the spare daemon a previous mount left (Node
                        started, code loaded and warmed up: ~0.35 s less per mount) nor leave one for
                        the next mount; a spare exits after 10 minutes unused`;

export const command: Command = {
  summary: 'mount an image lazily (FUSE): contents are fetched when read',
  usage,
  async run(argv) {
    if (argv.length === 2 && argv[0] === '--spare' && process.send) return mount(await spareAssignment(argv[1]!), ipcChannel());
    if (argv.length === 2 && argv[0] === '--host-spare') {
      // Listening first: a mount handed over before the code is loaded still skips starting Node.
      const claim = await serveAsSpare(
        argv[1]!,
        async (taken) => {
          await Promise.all([import('../mount/daemon.js'), import('../mount/mount-image.js'), import('../fs/fuse.js')]);
          await (await import('../mount/warm-up.js')).warmUpMounting(taken);
        },
        checkMountArgs,
      );
      return mount([...claim.args, '--foreground'], claim.channel, claim.successor);
    }
    return mount(argv, ipcChannel());
  },
};

const isMountMode = (mode: string): mode is MountMode => mode === 'merged' || mode === 'overlay' || mode === 'layers';

/** `starling mount`'s options, read from ARGV; relative paths are taken from `cwd`. Throws a UserError. */
function parseMountArgs(argv: string[], cwd: string) {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      platform: { type: 'string' },
      'cache-dir': { type: 'string' },
      'cache-size': { type: 'string' },
      'memory-cache': { type: 'string' },
      'no-prefetch': { type: 'boolean' },
      'no-background-fetch': { type: 'boolean' },
      'background-quiet': { type: 'string' },
      'background-rate': { type: 'string' },
      'prefetch-list': { type: 'string' },
      profile: { type: 'string' },
      mode: { type: 'string' },
      upper: { type: 'string' },
      'fuse-timeout': { type: 'string' },
      foreground: { type: 'boolean' },
      'plain-http': { type: 'boolean' },
      'no-spare': { type: 'boolean' },
    },
    usage,
  );
  if (positionals.length !== 2) throw new UserError(`expected REF and MOUNTPOINT\n\n${usage}`, 2);
  const [ref, mnt] = positionals as [string, string];
  const mode: string = values.mode ?? 'merged';
  if (!isMountMode(mode)) throw new UserError(`--mode: expected merged, overlay or layers, got ${JSON.stringify(mode)}`, 2);
  if (mode === 'layers' && values.upper) throw new UserError('--upper: not with --mode layers (containerd stacks the layers)', 2);
  let platform;
  try {
    platform = values.platform ? parsePlatform(values.platform) : undefined;
  } catch (err) {
    throw new UserError(`--platform: ${(err as Error).message}`, 2);
  }
  return {
    values,
    ref,
    mode,
    platform,
    mountpoint: resolve(cwd, mnt),
    cacheDir: resolve(cwd, values['cache-dir'] ?? process.env.STARLING_CACHE_DIR ?? '/var/cache/starling'),
    upper: values.upper ? resolve(cwd, values.upper) : undefined,
    prefetchListFile: values['prefetch-list'] ? resolve(cwd, values['prefetch-list']) : undefined,
    cacheBytes: parseSize(values['cache-size'] ?? '10GiB', '--cache-size'),
    memoryCacheBytes: parseSize(values['memory-cache'] ?? '128MiB', '--memory-cache'),
    fuseTimeoutMs: parseIntArg(values['fuse-timeout'] ?? '120', '--fuse-timeout', 1, 3600) * 1000,
    backgroundQuietMs: parseIntArg(values['background-quiet'] ?? '5', '--background-quiet', 0, 86_400) * 1000,
    backgroundRate: values['background-rate'] === undefined ? 0 : (parseIntArg(values['background-rate'], '--background-rate', 1, 1_000_000) * 1e6) / 8,
  };
}

/** The host spare's look at a mount's arguments before it takes the mount (a wrong one leaves it a spare). */
const checkMountArgs: MountArgsCheck = (args, cwd) => {
  try {
    return { mountpoint: parseMountArgs(args, cwd).mountpoint };
  } catch (err) {
    return { error: (err as Error).message, exitCode: err instanceof UserError ? err.exitCode : 1 };
  }
};

/**
 * `starling mount ARGV`; `channel` is how a daemon reports to whoever started it (none in a
 * foreground run); `successor`, the spare a host spare made for the mount after this one.
 */
async function mount(argv: string[], channel: DaemonChannel | undefined, successor?: Successor): Promise<number> {
  const { values, ref, mode, platform, mountpoint, cacheDir, upper, prefetchListFile, cacheBytes, memoryCacheBytes, fuseTimeoutMs, backgroundQuietMs, backgroundRate } = parseMountArgs(argv, process.cwd());
  if (!values.foreground) {
    const spare = !values['no-spare'];
    // A spare saves the next mount time; not having one costs nothing else. One that takes the mount
    // brings its successor. A daemon started here gets one made by this process, not by the daemon:
    // a daemon's children inherit its /dev/fuse descriptor (libfuse 2 opens it without O_CLOEXEC),
    // which would keep the mount's connection up after the daemon dies, its readers hanging; and
    // forking a process of 100+ MB costs it a copy-on-write fault per page it writes afterwards
    // (~13 µs each under this hypervisor). Made at the daemon's first report, while this process
    // only waits; it starts once this process has exited.
    let next: Promise<Successor | undefined> | undefined;
    const leaveSpare = () => void (next ??= gatedSpare().catch(() => undefined));
    try {
      const { pid, log } = (spare ? await claimSpare(argv) : undefined) ?? (await spawnMountDaemon(argv, mountpoint, spare ? leaveSpare : undefined));
      process.stderr.write(`mounted at ${mountpoint} (daemon pid ${pid}; log ${log})\n`);
    } catch (err) {
      (await next)?.cancel(); // no spare after a mount that failed
      throw new UserError((err as Error).message, err instanceof MountFailed ? err.exitCode : 1);
    }
    // The mount is the daemon's now and all is said: the caller need not wait for Node's teardown.
    exitNow(0);
    return 0;
  }

  // The daemon starts in the caller's directory so that relative paths mean what they meant there;
  // once they are resolved it leaves it, so that it never keeps a directory (or a mount) busy.
  if (channel) process.chdir('/');
  const log = (m: string) => process.stderr.write(`${new Date().toISOString()} starling mount ${mountpoint}: ${m}\n`);
  try {
    let prefetchList: string[] | undefined;
    if (prefetchListFile) {
      try {
        prefetchList = (await readFile(prefetchListFile, 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
      } catch (err) {
        throw new UserError(`--prefetch-list: ${(err as Error).message}`, 2);
      }
    }
    // Loaded here, not at the top: the command that only spawns the daemon would otherwise spend
    // ~0.2-0.5 s compiling the registry client, formats and FUSE code it never runs. The manifest
    // is asked for first, while the rest of the mount code compiles.
    const imageOpts = { ref, ...(platform ? { platform } : {}), ...(values['plain-http'] ? { plainHttp: true } : {}) };
    const { openMountImage } = await import('../mount/mount-image.js');
    const image = openMountImage({ ...imageOpts, tocCacheDir: cacheDir });
    image.catch(() => {}); // awaited by the mount
    const { runMountDaemon } = await import('../mount/daemon.js');
    await runMountDaemon(
      {
        ...imageOpts,
        image,
        mountpoint,
        cacheDir,
        cacheBytes,
        memoryCacheBytes,
        prefetch: !values['no-prefetch'],
        background: !values['no-background-fetch'],
        backgroundQuietMs,
        backgroundRate,
        ...(prefetchList ? { prefetchList } : {}),
        ...(values.profile !== undefined ? { profile: values.profile } : {}),
        mode,
        ...(upper ? { upper } : {}),
        fuseTimeoutMs,
        log,
        ...(channel ? { progress: (progress: MountProgress) => channel.send({ progress }) } : {}),
      },
      () => {
        log(`mounted ${ref} (pid ${process.pid})`);
        channel?.send({ ready: true });
        channel?.close();
        successor?.release();
      },
    );
  } catch (err) {
    successor?.cancel(); // no spare after a mount that failed
    channel?.send({ error: (err as Error).message, ...(err instanceof UserError && err.exitCode !== 1 ? { exitCode: err.exitCode } : {}) });
    channel?.close();
    throw asUserError(err);
  }
  return 0;
}

/**
 * A spare daemon (mount/spawn.ts): loads the mount code now, then waits for the arguments of the
 * mount it will serve; exits if its parent goes away first.
 */
async function spareAssignment(mountpoint: string): Promise<string[]> {
  // Its run directory holds only its log: gone with it, even when the process that started it was killed.
  const orphaned = () => {
    rmSync(mountPaths(mountpoint).dir, { recursive: true, force: true });
    process.exit(0);
  };
  process.once('disconnect', orphaned);
  // A parent gone while this process was starting is not reported again.
  if (!process.connected) orphaned();
  await Promise.all([import('../mount/daemon.js'), import('../fs/fuse.js')]);
  let assigned = false;
  const assignment = new Promise<SpareAssignment>((r) => process.once('message', (m: SpareAssignment) => ((assigned = true), r(m))));
  // TOC parsing and tree building on a warm JIT, as the host's spare has them (its parent starts it once the machine is idle).
  const { warmUpMounting } = await import('../mount/warm-up.js');
  void warmUpMounting(() => assigned).catch((err: Error) => process.stderr.write(`spare ${process.pid}: warm-up failed: ${err.message}\n`));
  const { args } = await assignment;
  process.removeAllListeners('disconnect');
  return args;
}
