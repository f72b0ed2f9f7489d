// `starling record REF --out FILE -- CMD…`: runs a workload on a lazy mount of REF and writes the
// files it read, in first-read order — the prioritised-files list `starling convert
// --prioritize-file` consumes (what `ctr-remote image optimize` does, without containerd).
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
import { ImageMount } from '../fs/image-mount.js';
import { LazyFs } from '../fs/lazyfs.js';
import { parsePlatform } from '../oci/platform.js';
import type { Platform } from '../oci/types.js';
import { resolveImage } from '../registry/resolve.js';
import { openImageSource } from '../registry/transport.js';
import { runInRootfs } from './_workload.js';
import { parseCommandArgs } from './args.js';
import { asUserError, UserError, type Command } from './command.js';

const usage = `usage: starling record REF --out FILE [options] -- CMD [ARG…]

Mounts REF lazily with a writable upper layer, runs CMD in it (chroot, with the image's Env and
WorkingDir) and writes the image files the workload read to FILE, one absolute path per line in
first-read order. Feed FILE to 'starling convert --format estargz --prioritize-file FILE'.
Without CMD the image's Entrypoint + Cmd run. Needs root (FUSE, overlayfs, chroot).

options:
  --out FILE      where the list goes (required; written whole or not at all)
  --platform P    os/arch[/variant] to pick from an index (default: this machine's)
  --plain-http    talk http:// to the registry
  --echo          show the workload's output
  --json          print a JSON summary {files, bytes, exitCode} instead of a human one`;

export interface AccessTrace {
  /** Paths in first-read order, with their file sizes. */
  files: Map<string, number>;
  stop(): void;
}

/** Notes the first read of each regular file on every LazyFs of this process until `stop()`. */
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
      if (!trace.files.has(path)) {
        try {
          trace.files.set(path, this.getattr(path).size);
        } catch {
          // no such file: the read rejects too
        }
      }
      return read.call(this, path, offset, length);
    },
  });
  return trace;
}

export const command: Command = {
  summary: "run a workload on a lazy mount and list the files it reads (for convert's --prioritize-file)",
  usage,
  async run(argv) {
    const dash = argv.indexOf('--');
    const { values, positionals } = parseCommandArgs(
      dash >= 0 ? argv.slice(0, dash) : argv,
      { out: { type: 'string' }, platform: { type: 'string' }, 'plain-http': { type: 'boolean' }, echo: { type: 'boolean' }, json: { type: 'boolean' } },
      usage,
    );
    if (positionals.length !== 1) throw new UserError(`expected one REF before --\n\n${usage}`, 2);
    if (!values.out) throw new UserError(`--out is required\n\n${usage}`, 2);
    if (process.getuid?.() !== 0) throw new UserError('record needs root (FUSE, overlayfs and chroot)');
    const ref = positionals[0]!;
    const out = resolve(values.out);
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
    const cmd = dash >= 0 ? argv.slice(dash + 1) : [...(config.config?.Entrypoint ?? []), ...(config.config?.Cmd ?? [])];
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
      mount = await ImageMount.open({
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
      const res = await runInRootfs(mountpoint, config, cmd, { echo: values.echo === true });
      if (res.exitCode !== 0) {
        throw new UserError(`the workload ${JSON.stringify(cmd.join(' '))} failed (${res.exitCode ?? res.signal}): ${res.stderr.trim().slice(-1000)}`);
      }
      // The list is one path per line: a name with a line break cannot be listed (tar allows it).
      const read = [...trace.files.keys()];
      const unlistable = read.filter((p) => /[\r\n]/.test(p));
      if (unlistable.length) log(`left out ${unlistable.length} file(s) whose names contain line breaks: ${JSON.stringify(unlistable.slice(0, 3))}`);
      const listed = read.filter((p) => !/[\r\n]/.test(p));
      const tmp = `${out}.tmp-${process.pid}`;
      try {
        await writeFile(tmp, listed.map((p) => `${p}\n`).join(''));
        await rename(tmp, out);
      } catch (err) {
        await rm(tmp, { force: true });
        throw new UserError(`--out: cannot write ${out}: ${(err as Error).message}`);
      }
      const summary = { out, files: listed.length, bytes: listed.reduce((n, p) => n + trace.files.get(p)!, 0), exitCode: res.exitCode };
      process.stdout.write(values.json ? `${JSON.stringify(summary)}\n` : `${summary.files} files (${(summary.bytes / 1e6).toFixed(1)} MB) read by the workload, in first-read order: ${out}\n`);
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
