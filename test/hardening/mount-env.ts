// Shared set-up of the mounted hardening tests (faults, load, lifecycle): a real Distribution, an
// image of known files converted with `starling convert` and pushed there, optionally a fault proxy
// in front of it, and the `starling` CLI run as a child process (mount daemons included). Keeps the
// source files on local disk so readers can check every byte they read from a mount against them.
// `cleanup()` force-unmounts everything this environment mounted, even after a failed test.
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { detachAll, listMounts } from '../../src/mount/stale.js';
import { buildImage } from '../fixtures/image.js';
import { noise } from '../fs/helpers/layer.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { startTokenServer, type TokenServer } from '../helpers/token-server.js';
import { cleanupOnSignal } from '../helpers/signal-cleanup.js';

export const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
export const CLI = join(here, '../fs/helpers/starling.ts');

export interface MountEnv {
  work: string;
  registry: RunningRegistry;
  proxy?: FaultProxy;
  /** The token issuer, when the registry uses token auth (user alice, password pw, via DOCKER_AUTH_CONFIG). */
  tokens?: TokenServer;
  /** Local copy of the image's files: what every read from a mount is compared with. */
  srcTree: string;
  files: Map<string, Buffer>;
  /** `docker://HOST/test/NAME:v1`, through the proxy when there is one. */
  ref(name: string): string;
  starling(...args: string[]): Promise<{ stdout: string; stderr: string }>;
  mount(ref: string, mnt: string, ...opts: string[]): Promise<void>;
  umount(mnt: string, ...opts: string[]): Promise<void>;
  daemonLog(mnt: string): Promise<string>;
  daemonPid(mnt: string): Promise<number>;
  cleanup(): Promise<void>;
}

export interface MountEnvOptions {
  /** Regular files of the image: path → content. */
  files: Record<string, Buffer>;
  /** Image names to push, each converted to this format. */
  images: Record<string, 'estargz' | 'zstd:chunked'>;
  /** estargz chunk size (default 64 KiB: many chunks per file). */
  chunkSize?: number;
  proxy?: boolean;
  /** Token auth on the registry; every `starling` run gets alice's credentials. */
  token?: boolean;
}

/** Deterministic files of mixed sizes: small text, multi-chunk noise, a zero-heavy file. */
export function testFiles(count: number, size: number, seed = 11): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < count; i++) files[`data/f${String(i).padStart(3, '0')}.bin`] = noise(size + i * 1021, seed + i);
  for (let i = 0; i < 16; i++) files[`etc/conf${i}.txt`] = Buffer.from(`setting-${i} = ${'v'.repeat(i * 37)}\n`);
  files['data/zeros.bin'] = Buffer.concat([noise(10_000, 99), Buffer.alloc(300_000), noise(10_000, 98)]);
  return files;
}

export async function startMountEnv(opts: MountEnvOptions): Promise<MountEnv> {
  const work = await mkdtemp(join(tmpdir(), 'starling-hardening-'));
  cleanupOnSignal(work); // after() does not run on a signal
  const runDir = join(work, 'run');
  const mounted = new Set<string>();
  let registry: RunningRegistry | undefined;
  let proxy: FaultProxy | undefined;
  let tokens: TokenServer | undefined;
  const env: NodeJS.ProcessEnv = { ...process.env, STARLING_RUN_DIR: runDir };
  const starling = (...args: string[]) => run(process.execPath, ['--import', 'tsx', CLI, ...args], { maxBuffer: 64 << 20, env });
  const daemonPaths = async (mnt: string) => {
    const { mountPaths } = await import('../../src/mount/control.js');
    return mountPaths(mnt, runDir);
  };
  const cleanup = async () => {
    for (const mnt of mounted) await starling('umount', mnt, '--force').catch(() => {});
    await detachAll([...mounted], [runDir]).catch(() => {});
    await proxy?.stop().catch(() => {});
    await registry?.stop().catch(() => {});
    await tokens?.stop().catch(() => {});
    // Never remove a tree with a mount still inside it.
    const still = (await listMounts()).filter((m) => m.mountpoint.startsWith(work + '/'));
    if (still.length === 0) await rm(work, { recursive: true, force: true });
  };
  try {
    if (opts.token) tokens = await startTokenServer({ users: { alice: 'pw' }, anonymousPull: true });
    registry = await startRegistry(tokens ? { token: tokens.registryConfig } : {});
    if (opts.token) {
      const auth = Buffer.from('alice:pw').toString('base64');
      env.DOCKER_AUTH_CONFIG = JSON.stringify({ auths: { [registry.host]: { auth } } });
    }
    const srcTree = join(work, 'src-tree');
    const files = new Map(Object.entries(opts.files));
    for (const [p, content] of files) {
      await mkdir(dirname(join(srcTree, p)), { recursive: true });
      await writeFile(join(srcTree, p), content);
    }
    const oci = join(work, 'oci');
    await buildImage(oci, { layers: [{ files: opts.files }] }, 'v1');
    for (const [name, format] of Object.entries(opts.images)) {
      const chunk = format === 'estargz' ? ['--chunk-size', String(opts.chunkSize ?? 64 << 10)] : [];
      await starling('convert', `oci:${oci}:v1`, `docker://${registry.host}/test/${name}:v1`, '--format', format, ...chunk);
    }
    if (opts.proxy) proxy = await startFaultProxy(registry.url);
    if (proxy && env.DOCKER_AUTH_CONFIG) {
      const auth = Buffer.from('alice:pw').toString('base64');
      env.DOCKER_AUTH_CONFIG = JSON.stringify({ auths: { [registry.host]: { auth }, [proxy.host]: { auth } } });
    }
    const host = proxy?.host ?? registry.host;
    const me: MountEnv = {
      work,
      registry,
      ...(proxy ? { proxy } : {}),
      ...(tokens ? { tokens } : {}),
      srcTree,
      files,
      ref: (name) => `docker://${host}/test/${name}:v1`,
      starling,
      async mount(ref, mnt, ...mopts) {
        // A stale FUSE mount there answers ENOTCONN: exactly what the mount must recover from.
        await mkdir(mnt, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOTCONN') throw err;
        });
        mounted.add(mnt);
        try {
          await starling('mount', ref, mnt, ...mopts);
        } catch (err) {
          throw new Error(`${(err as Error).message}\ndaemon log:\n${await me.daemonLog(mnt)}`);
        }
      },
      async umount(mnt, ...uopts) {
        await starling('umount', mnt, ...uopts);
        mounted.delete(mnt);
      },
      async daemonLog(mnt) {
        return readFile((await daemonPaths(mnt)).log, 'utf8').catch(() => '(no log)');
      },
      async daemonPid(mnt) {
        return (JSON.parse(await readFile((await daemonPaths(mnt)).info, 'utf8')) as { pid: number }).pid;
      },
      cleanup,
    };
    return me;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** sha256 of a file as a child process (`sha256sum`) reads it; rejects when the read fails. */
export async function childDigest(path: string): Promise<string> {
  const { stdout } = await run('sha256sum', [path], { maxBuffer: 1 << 20 });
  return `sha256:${stdout.split(' ')[0]}`;
}

/** Starts a child process without waiting; resolves with its exit code/signal and output. */
export function spawnChild(cmd: string, args: string[]): { pid: number; done: Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { pid: child.pid!, done };
}
