// containerd's snapshots gRPC API (containerd.services.snapshots.v1.Snapshots) on a unix socket,
// served from a Snapshotter: containerd talks to it as a proxy plugin. Requests and answers follow
// containerd's own snapshotservice (contrib/snapshotservice): errors by gRPC status code, List
// streamed in blocks of 100.
import { connect } from 'node:net';
import { lstat, unlink } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { SnapshotError } from './errors.js';
import type { Info, Labels } from './store.js';
import type { Mount, Snapshotter } from './snapshotter.js';

// The .proto files stay in src/snapshotter/ (shipped with the package): from both
// src/snapshotter/ (tsx) and dist/snapshotter/ (built) this is the same path.
const PROTO = fileURLToPath(new URL('../../src/snapshotter/snapshots.proto', import.meta.url));

const KIND = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' } as const;
const LIST_BLOCK = 100;

interface Timestamp {
  seconds: number;
  nanos: number;
}
interface WireInfo {
  name: string;
  parent: string;
  kind: string;
  created_at: Timestamp;
  updated_at: Timestamp;
  labels: Labels;
}
interface KeyRequest {
  key: string;
}
interface CreateRequest {
  key: string;
  parent: string;
  labels: Labels;
}
interface CommitRequest {
  name: string;
  key: string;
  labels: Labels;
}
interface UpdateRequest {
  info: WireInfo | null;
  update_mask: { paths: string[] } | null;
}
interface ListRequest {
  filters: string[];
}

const timestamp = (d: Date): Timestamp => ({ seconds: Math.floor(d.getTime() / 1000), nanos: (d.getTime() % 1000) * 1e6 });

function wireInfo(info: Info): WireInfo {
  return { name: info.name, parent: info.parent, kind: KIND[info.kind], created_at: timestamp(info.created), updated_at: timestamp(info.updated), labels: info.labels };
}

const wireMounts = (mounts: Mount[]) => ({ mounts: mounts.map((m) => ({ type: m.type, source: m.source, target: '', options: m.options })) });

/** A gRPC status for an error: ours carry their code; anything else is UNKNOWN (as errdefs.ToGRPC does) and logged. */
function toStatus(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof SnapshotError) return { code: err.code, details: err.message };
  process.stderr.write(`snapshotter: ${(err as Error)?.stack ?? String(err)}\n`);
  return { code: grpc.status.UNKNOWN, details: (err as Error)?.message ?? String(err) };
}

function unary<Req, Res>(fn: (req: Req) => Res | Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request))
      .then(
        (res) => callback(null, res),
        (err: unknown) => callback(toStatus(err)),
      );
  };
}

function handlers(sn: Snapshotter): grpc.UntypedServiceImplementation {
  return {
    Prepare: unary(async (r: CreateRequest) => wireMounts(await sn.prepare(r.key, r.parent, r.labels))),
    View: unary(async (r: CreateRequest) => wireMounts(await sn.view(r.key, r.parent, r.labels))),
    Mounts: unary(async (r: KeyRequest) => wireMounts(await sn.mounts(r.key))),
    Commit: unary(async (r: CommitRequest) => (await sn.commit(r.name, r.key, r.labels), {})),
    Remove: unary((r: KeyRequest) => (sn.remove(r.key), {})),
    Stat: unary((r: KeyRequest) => ({ info: wireInfo(sn.stat(r.key)) })),
    Update: unary((r: UpdateRequest) => ({ info: wireInfo(sn.update({ name: r.info?.name ?? '', labels: r.info?.labels ?? {} }, r.update_mask?.paths ?? [])) })),
    Usage: unary(async (r: KeyRequest) => await sn.usage(r.key)),
    Cleanup: unary(async () => (await sn.cleanup(), {})),
    List: (call: grpc.ServerWritableStream<ListRequest, unknown>) => {
      try {
        const infos = sn.list(call.request.filters).map(wireInfo);
        for (let i = 0; i < infos.length; i += LIST_BLOCK) call.write({ info: infos.slice(i, i + LIST_BLOCK) });
        call.end();
      } catch (err) {
        call.emit('error', toStatus(err));
      }
    },
  };
}

/** The Snapshots service from our .proto: its definition for a server, a client constructor for tests. */
export function snapshotsService(): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true });
  const proto = grpc.loadPackageDefinition(definition) as unknown as {
    containerd: { services: { snapshots: { v1: { Snapshots: grpc.ServiceClientConstructor } } } };
  };
  return proto.containerd.services.snapshots.v1.Snapshots;
}

/** Removes a socket file left by a service that is gone; refuses one that still answers. */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return;
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path)
      .once('connect', () => (s.destroy(), resolve(true)))
      .once('error', () => resolve(false));
  });
  if (alive) throw new Error(`${path}: another service is listening there`);
  await unlink(path);
}

export interface SnapshotService {
  /** Stops accepting calls, finishes those under way (at most `graceMs`), and removes the socket. */
  close(graceMs?: number): Promise<void>;
}

export async function serveSnapshots(sn: Snapshotter, socketPath: string): Promise<SnapshotService> {
  const server = new grpc.Server();
  server.addService(snapshotsService().service, handlers(sn));
  await removeStaleSocket(socketPath);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  return {
    async close(graceMs = 5000) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => (server.forceShutdown(), resolve()), graceMs);
        server.tryShutdown(() => (clearTimeout(timer), resolve()));
      });
      await unlink(socketPath).catch(() => {});
    },
  };
}
