// Where a mount's daemon can be reached: a run directory per mountpoint (hash of its real path)
// holding the control socket and the daemon's private mounts, and a one-line JSON protocol over
// that socket: {"op":"stats"} → the stats report, {"op":"stop"} → unmount and exit.
import { createHash } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join, resolve } from 'node:path';

export const DEFAULT_RUN_DIR = '/run/starling';

export interface MountPaths {
  dir: string;
  socket: string;
  /** JSON {pid, ref, mountpoint} of the daemon, for `umount --force`. */
  info: string;
  log: string;
}

export function mountPaths(mountpoint: string, runDir = process.env.STARLING_RUN_DIR ?? DEFAULT_RUN_DIR): MountPaths {
  const id = createHash('sha256').update(resolve(mountpoint)).digest('hex').slice(0, 16);
  const dir = join(runDir, id);
  return { dir, socket: join(dir, 'control.sock'), info: join(dir, 'daemon.json'), log: join(dir, 'daemon.log') };
}

export type ControlRequest = { op: 'stats' } | { op: 'stop' };

export class ControlUnreachable extends Error {}

/**
 * Sends one request and resolves with the JSON answer the other side ends the connection with: a
 * daemon's (ControlRequest), or the host spare's (host-spare.ts).
 */
export function control<R extends object = ControlRequest>(socket: string, req: R, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolvePromise, reject) => {
    const conn = createConnection(socket);
    let data = '';
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new ControlUnreachable(`${socket}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.on('connect', () => conn.write(`${JSON.stringify(req)}\n`));
    conn.on('data', (d) => (data += d.toString()));
    conn.on('error', (err) => {
      clearTimeout(timer);
      reject(new ControlUnreachable(`${socket}: ${err.message}`));
    });
    conn.on('end', () => {
      clearTimeout(timer);
      try {
        const answer = JSON.parse(data) as { error?: string };
        if (answer.error) reject(new Error(answer.error));
        else resolvePromise(answer);
      } catch {
        reject(new ControlUnreachable(`${socket}: bad answer ${JSON.stringify(data.slice(0, 200))}`));
      }
    });
  });
}

/**
 * Whether nothing listens on a daemon's control socket any more (connection refused, or no socket):
 * the daemon is gone. A daemon too busy to answer in time is not.
 */
export function controlGone(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = createConnection(socket);
    conn.on('connect', () => {
      conn.destroy();
      resolve(false);
    });
    conn.on('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT'));
  });
}

/** Calls `handle` once with the first line a client sends, parsed (undefined if it is not JSON). */
export function onRequest(conn: Socket, handle: (req: unknown) => void): void {
  let buf = '';
  conn.on('error', () => {});
  conn.on('data', function onData(d: Buffer) {
    buf += d.toString();
    const nl = buf.indexOf('\n');
    if (nl < 0) return;
    conn.off('data', onData);
    let req: unknown;
    try {
      req = JSON.parse(buf.slice(0, nl));
    } catch {
      req = undefined;
    }
    handle(req);
  });
}

/** Serves control requests; `handle` answers a request (a thrown error becomes {"error"}). */
export async function serveControl(socket: string, handle: (req: ControlRequest) => Promise<unknown>): Promise<Server> {
  const server = createServer((conn) =>
    onRequest(conn, (req) => {
      if (req === undefined) return void conn.end(`${JSON.stringify({ error: 'bad request' })}\n`);
      handle(req as ControlRequest).then(
        (answer) => conn.end(`${JSON.stringify(answer)}\n`),
        (err: Error) => conn.end(`${JSON.stringify({ error: err.message })}\n`),
      );
    }),
  );
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(socket, () => res());
  });
  return server;
}
