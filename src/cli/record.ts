// `starling record REF --out FILE -- CMD…`: runs a workload on a lazy mount of REF and writes the
// files it read, in first-read order — the prioritised-files list `starling convert
// --prioritize-file` consumes (what `ctr-remote image optimize` does, without containerd). With
// --push (or --profile-out) it also makes a prefetch profile of the same reads, with the byte ranges
// read, and pushes it next to the image as an OCI referrer (docs/prefetch-profile.md).
//
// How files are traced: the mount runs inside this process and the first read the kernel forwards
// to the FUSE filesystem for each file is noted. That covers everything the workload reads from the
// image — files it reads, executables and the ELF interpreter the kernel loads, libraries the loader
// maps — and nothing else (no strace/fanotify, nothing on the host). Files opened but never read
// (empty ones included) have no bytes to prefetch and are not listed. The mount has no access-log
// API, so the hook is a wrapper around LazyFs.read installed for the life of this command only.
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ImageMount, type MountedLayer } from '../mount/image-mount.js';
import { LazyFs } from '../fs/lazyfs.js';
import { addRange, buildProfile, checkProfileName, serializeProfile, type ByteRange } from '../image/profile.js';
import { openProfileTarget, pushProfile } from '../image/profile-registry.js';
import { containerCommand } from '../oci/container-command.js';
import type { Digest } from '../oci/digest.js';
import { parsePlatform } from '../oci/platform.js';
import type { Platform } from '../oci/types.js';
import { resolveImage } from '../registry/resolve.js';
import { openImageSource } from '../registry/transport.js';
import { runInRootfs } from './_workload.js';
import { parseCommandArgs } from './args.js';
import { asUserError, UserError, type Command } from './command.js';

const usage = `usage: starling record REF [--out FILE] [--push [--name NAME]] [--profile-out FILE] [options] -- CMD [ARG…]

Mounts REF lazily with a writable upper layer, runs CMD in it (chroot, with the image's Env and
WorkingDir) and writes the image files the workload read to FILE, one absolute path per line in
first-read order. Feed FILE to 'starling convert --format estargz --prioritize-file FILE'.
With --push, the reads (per layer, with the byte ranges read) are pushed next to the image as a
prefetch profile, which 'starling mount' of the unchanged image finds and prefetches.
Without CMD the image's Entrypoint + Cmd run. Needs root (FUSE, overlayfs, chroot).

options:
  --out FILE      where the list goes (written whole or not at all)
  --push          push a prefetch profile of the reads as a referrer of REF's platform manifest
  --name NAME     the profile's workload name (default: default)
  --profile-out FILE  write the profile's JSON to FILE (for 'starling profile push')
  --platform P    os/arch[/variant] to pick from an index (default: this machine's)
  --plain-http    talk http:// to the registry
  --echo          show the workload's output
  --json          print a JSON summary {files, bytes, exitCode, profile} instead of a human one

At least one of --out, --push and --profile-out is needed.`;

export interface AccessTrace {
  /** Paths in first-read order, with their file sizes and the ranges read. */
  files: Map<string, { size: number; ranges: ByteRange[] }>;
  stop(): void;
}

/** Notes the reads of each regular file on every LazyFs of this process until `stop()`. */
export function traceReads(): AccessTrace {
  const original = Object.getOwnPropertyDescriptor(LazyFs.prototype, 'read')!;
  const trace: AccessTrace = {
    files: new Map(),
    stop: () => Object.defineProperty(LazyFs.prototype, 'read', original),
  };
  const read = original.value as LazyFs['read'];
  Object.defineProperty(LazyFs.prototype, 'read', {
    ...original,
    value(this: LazyFs, path: string, offset: number, length: number): Promise<Buffer> {
      let file = trace.files.get(path);
      if (!file) {
        try {
          file = { size: this.getattr(path).size, ranges: [] };
          trace.files.set(path, file);
        } catch {
          // no such file: the read rejects too
        }
      }
      if (file) addRange(file.ranges, offset, Math.min(offset + length, file.size));
      return read.call(this, path, offset, length);
    },
  });
  return trace;
}

/** Writes `data` to `path` whole or not at all. */
async function writeWhole(path: string, data: string | Buffer, option: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new UserError(`${option}: cannot write ${path}: ${(err as Error).message}`);
  }
}

/** A mounted layer as buildProfile sees it: its digest, and whether it holds a path (a set made on first use). */
function layerPaths(layer: MountedLayer): { digest: Digest; has(path: string): boolean } {
  let paths: Set<string> | undefined;
  const table = layer.contents.entries;
  return { digest: layer.digest, has: (p) => (paths ??= new Set(Array.from({ length: table.length }, (_, r) => table.path(r)))).has(p) };
}

export const command: Command = {
  summary: "run a workload on a lazy mount and list the files it reads (for convert's --prioritize-file)",
  usage,
  async run(argv) {
    const dash = argv.indexOf('--');
    const { values, positionals } = parseCommandArgs(
      dash >= 0 ? argv.slice(0, dash) : argv,
      {
        out: { type: 'string' },
        push: { type: 'boolean' },
        name: { type: 'string' },
        'profile-out': { type: 'string' },
        platform: { type: 'string' },
        'plain-http': { type: 'boolean' },
        echo: { type: 'boolean' },
        json: { type: 'boolean' },
      },
      usage,
    );
    if (positionals.length !== 1) throw new UserError(`expected one REF before --\n\n${usage}`, 2);
    if (!values.out && !values.push && !values['profile-out']) throw new UserError(`--out, --push or --profile-out is required\n\n${usage}`, 2);
    if (values.name !== undefined && !values.push) throw new UserError(`--name goes with --push\n\n${usage}`, 2);
    const name = values.name ?? 'default';
    try {
      checkProfileName(name);
    } catch (err) {
      throw new UserError(`--name: ${(err as Error).message}`, 2);
    }
    if (process.getuid?.() !== 0) throw new UserError('record needs root (FUSE, overlayfs and chroot)');
    const ref = positionals[0]!;
    let platform: Platform | undefined;
    try {
      platform = values.platform ? parsePlatform(values.platform) : undefined;
    } catch (err) {
      throw new UserError(`--platform: ${(err as Error).message}`, 2);
    }
    const plainHttp = values['plain-http'] ? { plainHttp: true } : {};

    let config;
    const source = await openImageSource(ref, { ...(platform ? { platform } : {}), ...plainHttp }).catch((err) => Promise.reject(asUserError(err)));
    try {
      config = (await resolveImage(source, platform).catch((err) => Promise.reject(asUserError(err)))).config;
    } finally {
      await source.close();
    }
    const cmd = dash >= 0 ? argv.slice(dash + 1) : containerCommand(config).argv;
    if (cmd.length === 0) throw new UserError('no command given after -- and the image has no Entrypoint or Cmd', 2);

    const work = await mkdtemp(join(tmpdir(), 'starling-record-'));
    const trace = traceReads();
    let mount: ImageMount | undefined;
    const onSignal = () => void (mount?.close() ?? Promise.resolve()).finally(() => process.exit(130));
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const mountpoint = join(work, 'rootfs');
      await mkdir(mountpoint);
      const log = (m: string) => process.stderr.write(`starling record: ${m}\n`);
      const mounted = await ImageMount.open({
        ref,
        mountpoint,
        workDir: join(work, 'mount'),
        ...(platform ? { platform } : {}),
        ...plainHttp,
        // A private cache: a warm shared cache would not change what is read, but keep it clean.
        cacheDir: join(work, 'cache'),
        cacheBytes: 64 * 2 ** 30,
        memoryCacheBytes: 128 * 2 ** 20,
        // Only what the workload asks for: prefetching would not show in the trace, it would only cost.
        prefetch: false,
        background: false,
        mode: 'merged',
        upper: join(work, 'upper'),
        fuseTimeoutMs: 300_000,
        log,
      }).catch((err) => Promise.reject(asUserError(err)));
      mount = mounted;
      const res = await runInRootfs(mountpoint, config, cmd, { echo: values.echo === true });
      if (res.exitCode !== 0) {
        throw new UserError(`the workload ${JSON.stringify(cmd.join(' '))} failed (${res.exitCode ?? res.signal}): ${res.stderr.trim().slice(-1000)}`);
      }
      const read = [...trace.files.keys()];
      const summary: { out?: string; files: number; bytes: number; exitCode: number; profile?: { digest: string; name: string; via: string } } = {
        ...(values.out ? { out: resolve(values.out) } : {}),
        files: read.length,
        bytes: read.reduce((n, p) => n + trace.files.get(p)!.size, 0),
        exitCode: res.exitCode,
      };
      if (summary.out) {
        // The list is one path per line: a name with a line break cannot be listed (tar allows it).
        const unlistable = read.filter((p) => /[\r\n]/.test(p));
        if (unlistable.length) log(`left out ${unlistable.length} file(s) whose names contain line breaks: ${JSON.stringify(unlistable.slice(0, 3))}`);
        await writeWhole(summary.out, read.filter((p) => !/[\r\n]/.test(p)).map((p) => `${p}\n`).join(''), '--out');
      }
      if (values.push || values['profile-out']) {
        const { profile, unplaced } = buildProfile(trace.files, mounted.layers.map(layerPaths));
        if (unplaced.length) log(`left out of the profile ${unplaced.length} file(s) no layer holds: ${JSON.stringify(unplaced.slice(0, 3))}`);
        if (values['profile-out']) await writeWhole(resolve(values['profile-out']), serializeProfile(profile), '--profile-out');
        if (values.push) {
          const target = await openProfileTarget(ref, { ...(platform ? { platform } : {}), ...plainHttp }).catch((err) => Promise.reject(asUserError(err)));
          try {
            const pushed = await pushProfile(target, profile, { name, command: cmd }).catch((err) => Promise.reject(asUserError(err)));
            summary.profile = { digest: pushed.descriptor.digest, name, via: pushed.via };
          } finally {
            await target.close();
          }
        }
      }
      const what = `${summary.files} files (${(summary.bytes / 1e6).toFixed(1)} MB) read by the workload`;
      const where = [summary.out ? `in first-read order: ${summary.out}` : '', summary.profile ? `profile ${JSON.stringify(name)} pushed as ${summary.profile.digest}` : ''].filter(Boolean).join('; ');
      process.stdout.write(values.json ? `${JSON.stringify(summary)}\n` : `${what}${where ? `, ${where}` : ''}\n`);
      return 0;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      trace.stop();
      // Only once everything is unmounted may the work directory go (never rm through a mount).
      await mount?.close();
      await rm(work, { recursive: true, force: true });
    }
  },
};
