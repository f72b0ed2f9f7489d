// The host's spare mount daemon. After a mount, `starling mount` leaves one behind: Node started, the
// mount code loaded and TOC parsing warmed up, at low priority. The next `starling mount` hands it
// its arguments, directory and environment over a unix socket and it becomes that mount's daemon,
// instead of a new process starting Node (~0.1 s here), loading the mount code (~0.2 s) and parsing
// the TOCs on a cold JIT (about twice the warm time). One spare per run directory; it exits unused
// after SPARE_IDLE_MS, when its socket is removed (its run directory deleted), or when the program on
// disk is no longer the one it runs. Only the owner of the run directory can reach it (mode 0700).
import type { ChildProcess } from 'node:child_process';
import { rmSync, watch } from 'node:fs';
import { chmod, lstat, mkdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { control, DEFAULT_RUN_DIR, mountPaths, onRequest } from './control.js';
import { machineIdle } from './machine-idle.js';
import { daemonExecArgv, daemonProcess, MountFailed, normalPriority, SPARE_NICENESS, type DaemonChannel, type DaemonReport } from './spawn.js';

/** How long a spare waits for a mount before it exits. */
export const SPARE_IDLE_MS = 10 * 60_000;
/** How often a spare checks that its socket is still there. */
const SOCKET_CHECK_MS = 1_000;
/** How long `starling mount` waits for a spare to take or refuse a mount before starting a daemon itself. */
const CLAIM_ANSWER_MS = 10_000;

export function sparePaths(runDir = process.env.STARLING_RUN_DIR ?? DEFAULT_RUN_DIR): { dir: string; socket: string } {
  const dir = join(runDir, 'spare');
  return { dir, socket: join(dir, 'spare.sock') };
}

/**
 * What a caller and the spare must share to be the same program (checked on every claim). The Node
 * binary is told by its file (an upgrade replaces it), not its version: the native client
 * (native/mount_client.c) cannot ask Node, and sends the same fields.
 */
interface Program {
  /** Real path of the Node binary, and its file: `inode:size:mtime seconds`. */
  node: string;
  nodeFile: string;
  /** Real path of the program's script (bin/starling.js). */
  script: string;
  execArgv: string[];
}

export type SpareRequest =
  /** `warmNow`: load and warm up now rather than when the machine is idle. */
  | { op: 'status'; warmNow?: boolean }
  | { op: 'stop' }
  | { op: 'mount'; program: Program; args: string[]; cwd: string; umask: number; env: Record<string, string> };

/**
 * Answers to a mount: refused (the caller mounts by itself), an error in its arguments (exit code
 * included; the spare stays a spare), or accepted, then the daemon's reports.
 */
export type SpareAnswer =
  | { spare: number; warm: boolean }
  | { stopped: number }
  | { refused: string }
  | { accepted: number; mountpoint: string; log: string }
  | DaemonReport;

/** What the spare makes of a mount's arguments before it takes the mount: its mountpoint, or why they are wrong. */
export type MountArgsCheck = (args: string[], cwd: string) => { mountpoint: string } | { error: string; exitCode: number };

async function thisProgram(): Promise<Program> {
  const node = await realpath(process.execPath);
  const file = await stat(node);
  return { node, nodeFile: `${file.ino}:${file.size}:${Math.trunc(file.mtimeMs / 1000)}`, script: await realpath(process.argv[1]!), execArgv: daemonExecArgv() };
}

function samePrograms(a: Program, b: Program): boolean {
  return a.node === b.node && a.nodeFile === b.nodeFile && a.script === b.script && JSON.stringify(a.execArgv) === JSON.stringify(b.execArgv);
}

/** Calls `onChange` once the code this process runs from changes on disk (an upgrade, a rebuild). */
function watchCode(onChange: (why: string) => void): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  for (const [path, recursive] of [[root, true], [join(root, '../package.json'), false]] as const) {
    watch(path, { recursive, persistent: false }, (_event, file) => onChange(`${join(path, recursive ? String(file) : '')} changed`)).on('error', (err) => onChange(`cannot watch ${path}: ${err.message}`));
  }
}

/** The spare's one answer to `status` or `stop`; undefined when none answers. */
export function askSpare(req: Extract<SpareRequest, { op: 'status' | 'stop' }>, socket = sparePaths().socket): Promise<SpareAnswer | undefined> {
  return control(socket, req, CLAIM_ANSWER_MS).then(
    (a) => a as SpareAnswer,
    () => undefined,
  );
}

/**
 * Hands `starling mount`'s arguments (REF, MOUNTPOINT, options) to the host's spare and waits until
 * it has mounted. Undefined when there is no spare or it refuses (another version of the program,
 * already taken): the caller starts a daemon itself. Rejects, as a daemon that fails does, once the
 * spare has taken the mount, or when it finds the arguments wrong.
 */
export function claimSpare(args: string[]): Promise<{ pid: number; log: string } | undefined> {
  return thisProgram().then(
    (program) =>
      new Promise((resolvePromise, reject) => {
        const env = Object.fromEntries(Object.entries(process.env).filter((kv): kv is [string, string] => kv[1] !== undefined));
        const req: SpareRequest = { op: 'mount', program, args, cwd: process.cwd(), umask: process.umask(), env };
        let pid: number | undefined;
        let log = '';
        const conn = createConnection(sparePaths().socket).on('connect', () => conn.write(`${JSON.stringify(req)}\n`));
        // Errors are the connection's: the 'close' below decides.
        createInterface({ input: conn }).on('error', () => {}).on('line', (line) => {
          const a = spareAnswer(line);
          // Not an answer: the connection ends, and 'close' below decides as for a spare that went away.
          if (!a) return void conn.destroy();
          if ('accepted' in a) {
            pid = a.accepted;
            log = a.log;
            conn.setTimeout(0);
          } else if ('ready' in a) resolvePromise({ pid: pid!, log });
          else if ('error' in a) reject(new MountFailed(a.error, a.exitCode));
          else if (!('progress' in a)) resolvePromise(undefined); // refused
        });
        // A spare that neither takes nor refuses in time is left to itself (it cannot take the mount
        // after this: the connection it would answer on is gone).
        conn.setTimeout(CLAIM_ANSWER_MS, () => conn.destroy());
        conn.on('error', () => {});
        conn.on('close', () => {
          if (pid === undefined) resolvePromise(undefined);
          else reject(new MountFailed(`the mount daemon (pid ${pid}, the host's spare) exited before the mount was ready; see ${log}`));
        });
      }),
  );
}

/** A line from the spare as an answer; undefined if it is not a JSON object. */
function spareAnswer(line: string): SpareAnswer | undefined {
  try {
    const a: unknown = JSON.parse(line);
    return typeof a === 'object' && a !== null ? (a as SpareAnswer) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Leaves a spare for the next mount unless one answers: a detached `starling mount --host-spare`
 * at low priority (two started at once: the second finds the first and exits).
 */
async function startSpare(): Promise<void> {
  if (await askSpare({ op: 'status' }, sparePaths().socket)) return;
  (await spareProcess(false)).child.unref();
}

/** A spare made for later: it waits in a shell until released (or its maker exits); `cancel` kills it first. */
export interface Successor {
  release(): void;
  cancel(): void;
}

/**
 * A spare that starts only once released or once this process has exited. `starling mount` makes one
 * while the daemon it started mounts (it starts when the command exits), and a spare makes one for
 * the mount after its own as soon as it listens, while its process is small (forking later, at
 * 100+ MB, would cost it a copy-on-write fault per page it writes afterwards: ~13 µs each under
 * this hypervisor), released once its own mount is ready. Whether one answers is not asked (a
 * spare that took a mount may not have let its socket go yet); of two, the second exits at once.
 */
export async function gatedSpare(): Promise<Successor> {
  const { child, log } = await spareProcess(true);
  child.unref();
  return {
    release: () => void child.stdin?.end(),
    cancel() {
      child.kill('SIGKILL');
      rmSync(log, { force: true });
    },
  };
}

async function spareProcess(gated: boolean): Promise<{ child: ChildProcess; log: string }> {
  const { dir } = sparePaths();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const log = join(dir, `spare-${Date.now()}-${process.pid}.log`);
  return { child: await daemonProcess(['mount', '--host-spare', log], log, { niceness: SPARE_NICENESS, ipc: false, gated }), log };
}

/** Starts a spare unless one answers, and waits up to `timeoutMs` until it is warmed up (now, busy machine or not); its pid. */
export async function warmSpare(timeoutMs: number): Promise<number> {
  await startSpare();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await askSpare({ op: 'status', warmNow: true });
    if (answer && 'warm' in answer && answer.warm) return answer.spare;
    if (Date.now() > deadline) throw new Error(`no warmed-up spare mount daemon on ${sparePaths().socket} after ${timeoutMs / 1000} s (its log is in ${sparePaths().dir})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A mount handed to the spare: `starling mount`'s arguments, the channel to report on, and the spare for after it. */
export interface SpareClaim {
  args: string[];
  channel: DaemonChannel;
  successor: Successor;
}

/**
 * Serves as the host's spare: listens, runs `warmUp`, and resolves with the first mount it is handed
 * whose arguments pass `check`, once this process has taken the caller's directory, umask,
 * environment and priority and moved `log` (its output) to the mount's log. Exits by itself when
 * there is nothing to wait for.
 */
export async function serveAsSpare(log: string, warmUp: (taken: () => boolean) => Promise<void>, check: MountArgsCheck): Promise<SpareClaim> {
  const { dir, socket } = sparePaths();
  const owned = await lstat(dir).catch(() => undefined);
  // Whoever can connect can have a mount made with this process's rights: the directory must be ours alone.
  if (!owned?.isDirectory() || owned.uid !== process.getuid!() || (owned.mode & 0o077) !== 0) return quit(log, `${dir} is not a directory of uid ${process.getuid!()} with mode 0700`);
  const server = createServer();
  if (!(await listen(server, socket))) return quit(log, `another spare answers on ${socket}, or it cannot be created`);
  const inode = (await stat(socket)).ino;
  const successor = await gatedSpare().catch(() => ({ release() {}, cancel() {} }));
  const exit = (why: string) => {
    successor.cancel();
    quit(log, why);
  };
  const program = await thisProgram();
  let warm = false;
  let taken = false;
  const leave = (why: string) => {
    server.close();
    rmSync(socket, { force: true });
    exit(why);
  };
  const idle = setTimeout(() => leave(`not used for ${SPARE_IDLE_MS / 60_000} minutes`), SPARE_IDLE_MS);
  const socketCheck = setInterval(() => {
    stat(socket).then(
      (s) => s.ino !== inode && exit(`${socket} was replaced`),
      () => exit(`${socket} was removed`),
    );
  }, SOCKET_CHECK_MS);
  const onSignal = () => leave('stopped by a signal');
  // Code that changed under it would mix with what it has loaded.
  watchCode((why) => !taken && leave(why));
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, onSignal);
  // Loaded and warmed up while waiting, once the machine is idle (a container that has just started
  // is not slowed); a mount handed over meanwhile loads what it needs itself.
  let warmNow!: () => void;
  const warmUpStarts = new Promise<void>((r) => (warmNow = r));
  // Once taken, this process is a mount's daemon: no warm-up starts (one under way stops at its next
  // round), and nothing of the spare's keeps it alive.
  void machineIdle(() => taken).then(warmNow);
  void warmUpStarts.then(() => (taken ? undefined : warmUp(() => taken))).then(
    () => (warm = true),
    (err: Error) => process.stderr.write(`spare ${process.pid}: warm-up failed: ${err.message}\n`),
  );

  return new Promise((resolveClaim) => {
    server.on('connection', (conn) =>
      onRequest(conn, async (parsed) => {
        if (parsed === undefined) return void conn.destroy();
        const req = parsed as SpareRequest;
        const answer = (a: SpareAnswer) => conn.write(`${JSON.stringify(a)}\n`);
        if (req.op === 'status' && req.warmNow) warmNow();
        if (req.op === 'status') return void conn.end(`${JSON.stringify({ spare: process.pid, warm } satisfies SpareAnswer)}\n`);
        if (req.op === 'stop') {
          conn.end(`${JSON.stringify({ stopped: process.pid } satisfies SpareAnswer)}\n`);
          return leave('stopped');
        }
        if (req.op !== 'mount' || taken) return void conn.end(`${JSON.stringify({ refused: taken ? 'taken by another mount' : 'not a request' })}\n`);
        if (typeof req.program !== 'object' || req.program === null || !samePrograms(req.program, program)) {
          conn.end(`${JSON.stringify({ refused: `the spare (pid ${process.pid}) runs another program` } satisfies SpareAnswer)}\n`);
          // A spare started by another program (another Node, other flags) serves nobody here.
          return leave('refused a mount of another program');
        }
        const checked = Array.isArray(req.args) && typeof req.cwd === 'string' ? check(req.args, req.cwd) : { error: 'not a mount request', exitCode: 2 };
        if ('error' in checked) return void conn.end(`${JSON.stringify(checked satisfies SpareAnswer)}\n`);
        taken = true;
        clearTimeout(idle);
        clearInterval(socketCheck);
        for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(sig, onSignal);
        server.close();
        await rm(socket, { force: true });
        await adopt(req, checked.mountpoint, log);
        answer({ accepted: process.pid, mountpoint: checked.mountpoint, log: mountPaths(checked.mountpoint).log });
        resolveClaim({
          args: req.args,
          channel: {
            send: (report) => void (conn.writable && answer(report)),
            close: () => void conn.end(),
          },
          successor,
        });
      }),
    );
  });
}

/** Listens on `socket`, taking it over from a spare that is gone; false when another spare answers there. */
async function listen(server: Server, socket: string): Promise<boolean> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const err = await new Promise<NodeJS.ErrnoException | undefined>((r) => {
      server.once('error', r);
      server.listen(socket, () => r(undefined));
    });
    if (!err) return true;
    if (err.code !== 'EADDRINUSE' || (await askSpare({ op: 'status' }, socket))) return false;
    await rm(socket, { force: true });
  }
  return false;
}

/** Becomes the caller's process as far as a mount can tell: directory, umask, environment, priority; output to the mount's log. */
async function adopt(req: Extract<SpareRequest, { op: 'mount' }>, mountpoint: string, log: string): Promise<void> {
  process.chdir(req.cwd);
  process.umask(req.umask);
  for (const k of Object.keys(process.env)) if (!(k in req.env)) delete process.env[k];
  Object.assign(process.env, req.env);
  await normalPriority(process.pid);
  const paths = mountPaths(mountpoint);
  await mkdir(paths.dir, { recursive: true });
  // stdout and stderr stay open on this file: renamed, it is the mount's log (an earlier one there is replaced).
  await rename(log, paths.log).catch(() => {});
}

/**
 * Exits, after saying why and removing the log of a spare that served nothing. Synchronously: the
 * thread pool may be busy warming up, and a spare serves no reads that this could hold up.
 */
function quit(log: string, why: string): never {
  process.stderr.write(`spare ${process.pid}: exits: ${why}\n`);
  rmSync(log, { force: true });
  process.exit(0);
}
