// Remote layers served by mount daemons, one per image: the first Prepare of an image's layer starts
// `starling mount docker://REF DIR/mnt --mode layers`, which opens every layer's TOC at once (the
// layers above are ready by the time containerd asks for them), mounts each lazy layer at
// DIR/mnt/N (and, when all are lazy, all of them merged at DIR/mnt/merged: the lower dir of a
// container on the image) and shares one chunk cache and one fetch scheduler (prefetch, background
// fill) among them. The daemons are separate processes that outlive the service: restarting the
// snapshotter never touches a running container's mounts; a restarted service adopts them, or starts
// dead ones again on the same paths from DIR/image.json (the reference pinned to the manifest mounted).
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { MountProgress, StatsReport } from '../mount/image-mount.js';
import { control, controlGone, mountPaths } from '../mount/control.js';
import { layerTarget, mergedTarget, servesMerged } from '../mount/plan.js';
import { SpareDaemon, spawnMountDaemon } from '../mount/spawn.js';
import { machineIdle } from '../mount/machine-idle.js';
import { listMounts } from '../mount/stale.js';
import { stopMountDaemon } from '../mount/stop.js';
import type { Digest } from '../oci/digest.js';
import { formatDockerReference, parseDockerReference } from '../registry/reference.js';
import type { RemoteLayers, RemoteRequest } from './remote.js';
import type { RemoteLayer } from './store.js';

export interface ImageDaemonOptions {
  /** Where the images' directories go (imagesDir of the root). */
  dir: string;
  /** The chunk cache all daemons share. */
  cacheDir: string;
  /** Registries (`host[:port]`) to talk plain HTTP to, besides loopback ones. */
  plainHttpHosts: string[];
  /** More `starling mount` options for every daemon. */
  mountOptions: string[];
  log(message: string): void;
}

/** What DIR/image.json holds: enough to start the daemon again after a crash. */
interface ImageRecord {
  /** The reference as containerd named it. */
  ref: string;
  /** `starling mount` arguments, the reference pinned to the manifest digest. */
  args: string[];
}

interface LayerOutcome {
  lazy: boolean;
  reason?: string;
}

/**
 * An image's daemon as the service knows it from the moment the daemon has resolved the manifest:
 * each layer's outcome is known as soon as the daemon has opened (and verified) its TOC, so a
 * layer's Prepare is answered then, while the other TOCs are still coming and before anything is
 * mounted; what needs the mounts (an overlay over them) waits for `mounted`.
 */
interface Daemon {
  ref: string;
  /** Undefined once stopped: none of the image's layers could be served lazily (or mounting failed). */
  dir?: string;
  layers: Array<{ digest: Digest; outcome: Promise<LayerOutcome> }>;
  /** Settles once every lazy layer is mounted; rejects if the daemon failed. */
  mounted: Promise<void>;
}

/** DIR/image.json; empty when there is none (or it cannot be read). */
async function readRecord(dir: string): Promise<Partial<ImageRecord>> {
  return JSON.parse(await readFile(join(dir, 'image.json'), 'utf8').catch(() => '{}')) as Partial<ImageRecord>;
}

/** How long an image none of whose layers is lazy is remembered (its next layers' Prepares answer at once). */
const NOTHING_LAZY_MS = 60_000;

const mountpointOf = (dir: string) => join(dir, 'mnt');

/** Where the snapshotter with root `root` keeps its images' directories. */
export const imagesDir = (root: string) => join(root, 'images');

/** The mountpoints of the image daemons of the snapshotter with root `root` that are up (for `starling stats`). */
export async function imageMountpoints(root: string): Promise<string[]> {
  const dir = imagesDir(root);
  const dirs = (await readdir(dir).catch(() => [] as string[])).map((d) => join(dir, d));
  return dirs.filter((d) => existsSync(join(d, 'image.json'))).map(mountpointOf);
}

export class ImageDaemons implements RemoteLayers {
  /** Daemons by reference as containerd names it: started, starting, or known to serve nothing. */
  private readonly byRef = new Map<string, Promise<Daemon>>();
  /** Daemons being started, by directory, until mounted: Cleanup leaves them alone, mounts over them wait. */
  private readonly mounting = new Map<string, Promise<void>>();
  /** Image directories whose daemon also mounts the layers merged, with their number of layers. */
  private readonly mergedLayers = new Map<string, number>();
  /** A daemon started ahead, for the next image: a Prepare does not wait for Node to start. */
  private spare?: Promise<SpareDaemon | undefined>;
  /** The next spare, to start once the machine is idle; dropped when a Prepare needs a daemon first. */
  private spareDue?: { dropped: boolean };
  private closed = false;

  constructor(private readonly opts: ImageDaemonOptions) {}

  async mount(req: RemoteRequest): Promise<{ layer: RemoteLayer } | { reason: string }> {
    let daemon: Daemon;
    try {
      daemon = await this.daemonFor(req);
    } catch (err) {
      return { reason: `cannot mount ${req.ref}: ${(err as Error).message}` };
    }
    // The first lazy layer with that digest (an image may hold the same layer twice).
    let reason = `layer ${req.digest} is not in the image ${req.ref} resolves to`;
    for (const [index, layer] of daemon.layers.entries()) {
      if (layer.digest !== req.digest) continue;
      const outcome = await layer.outcome;
      if (outcome.lazy && daemon.dir) return { layer: { dir: daemon.dir, layer: index } };
      reason = `not lazy: ${outcome.reason ?? 'no usable TOC'}`;
    }
    return { reason };
  }

  path(layer: RemoteLayer): string {
    return layerTarget(mountpointOf(layer.dir), layer.layer);
  }

  async merged(layers: RemoteLayer[]): Promise<string | undefined> {
    const dir = layers[0]?.dir;
    if (dir === undefined || this.mergedLayers.get(dir) !== layers.length) return undefined;
    // Top first: layers n-1 … 0 of one image, nothing left out.
    if (!layers.every((l, i) => l.dir === dir && l.layer === layers.length - 1 - i)) return undefined;
    const path = mergedTarget(mountpointOf(dir));
    // Mounts (checkMounted) has made sure the daemon lives; its merged mount unmounted by hand leaves the per-layer ones.
    const fuse = (await listMounts()).some((m) => m.fstype === 'fuse.starling' && m.mountpoint === path);
    return fuse ? path : undefined;
  }

  async ready(layers: RemoteLayer[]): Promise<void> {
    await Promise.all(layers.map((l) => this.mounting.get(l.dir)?.catch(() => {})));
  }

  async dead(layers: RemoteLayer[]): Promise<RemoteLayer[]> {
    await this.ready(layers);
    // A daemon killed outright leaves its FUSE mounts listed, dead: one whose control socket refuses
    // is started again on the same paths (its stale mounts detached), as a restarted service does.
    // If that fails its layers are dead although still listed.
    const gone = new Set<string>();
    for (const dir of new Set(layers.map((l) => l.dir))) {
      const socket = mountPaths(mountpointOf(dir)).socket;
      if (!(await controlGone(socket))) continue;
      await this.revive(dir);
      if (await controlGone(socket)) gone.add(dir);
    }
    const fuse = new Set((await listMounts()).filter((m) => m.fstype === 'fuse.starling').map((m) => m.mountpoint));
    return layers.filter((l) => gone.has(l.dir) || !fuse.has(this.path(l)));
  }

  async restore(inUse: Map<string, number[]>): Promise<void> {
    for (const [dir, layers] of inUse) {
      let stats = await this.stats(dir).catch(() => undefined);
      if (!stats) {
        await this.revive(dir);
        stats = await this.stats(dir).catch(() => undefined);
        if (!stats) continue;
      }
      const record = await readRecord(dir);
      const missing = layers.filter((i) => !stats.layers[i]?.lazy);
      if (missing.length) this.opts.log(`${dir}: layers ${missing.join(', ')} are no longer served lazily`);
      this.noteMerged(dir, stats.layers);
      const known = stats.layers.map((l) => ({ digest: l.digest, outcome: Promise.resolve({ lazy: l.lazy, ...(l.reason ? { reason: l.reason } : {}) }) }));
      if (record.ref && !this.byRef.has(record.ref)) this.byRef.set(record.ref, Promise.resolve({ dir, ref: record.ref, layers: known, mounted: Promise.resolve() }));
    }
    await this.release(inUse);
    this.prepareSpare();
  }

  /**
   * Starts the dead daemon of `dir` again from its image.json, on the same paths; what fails is
   * logged (its layers stay unavailable). Mounts over its layers wait for it, as for a new one.
   */
  private revive(dir: string): Promise<void> {
    const pending = this.mounting.get(dir);
    if (pending) return pending.catch(() => {});
    const revived = (async () => {
      const record = await readRecord(dir);
      if (!record.args) {
        this.opts.log(`${dir}: no image.json, cannot start its daemon again; its layers stay unavailable`);
        return;
      }
      this.opts.log(`${dir}: daemon gone, starting it again (${record.args[0]})`);
      await spawnMountDaemon(record.args, mountpointOf(dir)).catch((err: Error) => this.opts.log(`${dir}: ${err.message}`));
    })();
    this.mounting.set(dir, revived);
    void revived.finally(() => this.mounting.delete(dir));
    return revived;
  }

  async release(inUse: Map<string, number[]>): Promise<void> {
    const names = await readdir(this.opts.dir).catch(() => [] as string[]);
    for (const name of names) {
      const dir = join(this.opts.dir, name);
      if (inUse.has(dir) || this.mounting.has(dir)) continue;
      await this.stop(dir);
      for (const [ref, p] of this.byRef) if ((await p.catch(() => undefined))?.dir === dir) this.byRef.delete(ref);
    }
  }

  /** The daemon of the image `req.ref` names now, started if no daemon of that reference holds the layer. */
  private async daemonFor(req: RemoteRequest): Promise<Daemon> {
    const known = await this.byRef.get(req.ref)?.catch(() => undefined);
    if (known?.layers.some((l) => l.digest === req.digest)) return known;
    const started = this.start(req.ref);
    this.byRef.set(req.ref, started);
    // Forgotten if it fails, before or after the manifest: the next Prepare starts it again.
    started.then((d) => d.mounted).catch(() => this.byRef.get(req.ref) === started && this.byRef.delete(req.ref));
    return started;
  }

  /** Starts the image's daemon; resolves once it has reported the manifest (and image.json is written). */
  private async start(ref: string): Promise<Daemon> {
    const spare = await this.takeSpare();
    const dir = spare ? dirname(spare.mountpoint) : join(this.opts.dir, randomBytes(8).toString('hex'));
    const parsed = parseDockerReference(ref);
    const plain = this.opts.plainHttpHosts.includes(parsed.domain) ? ['--plain-http'] : [];
    const options = ['--mode', 'layers', '--cache-dir', this.opts.cacheDir, ...plain, ...this.opts.mountOptions];
    const args = [formatDockerReference(parsed), mountpointOf(dir), ...options];
    let known!: { resolve(d: Daemon): void; reject(e: Error): void };
    const knownPromise = new Promise<Daemon>((resolve, reject) => (known = { resolve, reject }));
    const outcomes: Array<(o: LayerOutcome) => void> = [];
    /** What the daemon has told: the manifest, and each layer's outcome. */
    const told: { manifest?: Digest; layers: LayerOutcome[] } = { layers: [] };
    const daemon: Daemon = { ref, dir, layers: [], mounted: Promise.resolve() };
    const onProgress = (p: MountProgress) => {
      if ('layer' in p) {
        told.layers[p.layer] = { lazy: p.lazy, ...(p.reason ? { reason: p.reason } : {}) };
        return outcomes[p.layer]?.(told.layers[p.layer]!);
      }
      told.manifest = p.manifest;
      daemon.layers = p.layers.map((digest) => ({ digest, outcome: new Promise<LayerOutcome>((r) => outcomes.push(r)) }));
      // Written before any layer is answered: a service killed from here on starts the daemon again.
      const record: ImageRecord = { ref, args: [formatDockerReference({ ...parsed, digest: p.manifest }), ...args.slice(1)] };
      writeFile(join(dir, 'image.json.new'), JSON.stringify(record))
        .then(() => rename(join(dir, 'image.json.new'), join(dir, 'image.json')))
        .then(() => known.resolve(daemon), known.reject);
    };
    daemon.mounted = (async () => {
      await mkdir(mountpointOf(dir), { recursive: true });
      try {
        await (spare ? spare.use(args, onProgress) : spawnMountDaemon(args, mountpointOf(dir), onProgress));
      } catch (err) {
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
      // Ready comes after every layer's outcome (the daemon's timings are in its own log).
      const layers = Array.from({ length: daemon.layers.length }, (_, i) => told.layers[i] ?? { lazy: false });
      this.noteMerged(dir, layers);
      const lazy = layers.filter((l) => l.lazy).length;
      this.opts.log(`${ref}: manifest ${told.manifest}, ${lazy} of ${layers.length} layers lazy, mounted by a ${spare ? 'spare' : 'new'} daemon at ${mountpointOf(dir)}`);
      if (lazy > 0) return;
      delete daemon.dir;
      await this.stop(dir);
      setTimeout(() => void this.byRef.get(ref)?.then((d) => d === daemon && this.byRef.delete(ref)), NOTHING_LAZY_MS).unref();
    })();
    this.mounting.set(dir, daemon.mounted);
    daemon.mounted
      .catch((err: Error) => {
        // Layers not yet answered are not lazy; one answered lazy is reported unmounted (UNAVAILABLE) by dead().
        delete daemon.dir;
        for (const outcome of outcomes) outcome({ lazy: false, reason: err.message });
        known.reject(err);
      })
      .finally(() => {
        this.mounting.delete(dir);
        this.prepareSpare(true);
      });
    return knownPromise;
  }

  private noteMerged(dir: string, layers: ReadonlyArray<{ lazy: boolean }>): void {
    if (servesMerged(layers)) this.mergedLayers.set(dir, layers.length);
  }

  /**
   * Starts a spare daemon for the next image, unless one is there or due; `whenIdle`: once the
   * machine is idle, as a container is likely starting on the image just mounted.
   */
  private prepareSpare(whenIdle = false): void {
    if (this.spare || this.spareDue || this.closed) return;
    if (whenIdle) {
      const due = { dropped: false };
      this.spareDue = due;
      void machineIdle(() => due.dropped || this.closed).then(() => {
        if (due.dropped) return;
        this.spareDue = undefined;
        this.prepareSpare();
      });
      return;
    }
    // Its directory is made when it is used: until then only its log (in the run directory) exists.
    const dir = join(this.opts.dir, randomBytes(8).toString('hex'));
    this.spare = SpareDaemon.start(mountpointOf(dir)).catch((err: Error) => {
      this.opts.log(`cannot start a spare mount daemon: ${err.message}`);
      return undefined;
    });
  }

  /** The spare daemon, if one is ready or starting (one not yet due is dropped); the next is due once this image is mounted. */
  private async takeSpare(): Promise<SpareDaemon | undefined> {
    if (this.spareDue) this.spareDue.dropped = true;
    this.spareDue = undefined;
    const spare = await this.spare;
    this.spare = undefined;
    return spare;
  }

  /** Discards the spare daemon (the mounting ones live on). */
  async close(): Promise<void> {
    this.closed = true;
    const spare = await this.spare;
    this.spare = undefined;
    if (!spare) return;
    await spare.discard();
    await this.removeDir(dirname(spare.mountpoint));
  }

  private async stats(dir: string): Promise<StatsReport> {
    return (await control(mountPaths(mountpointOf(dir)).socket, { op: 'stats' }, 5_000)) as StatsReport;
  }

  /** Unmounts (the daemon, or by force what it left) and deletes the image's directory. */
  private async stop(dir: string): Promise<void> {
    const mnt = mountpointOf(dir);
    this.mergedLayers.delete(dir);
    await stopMountDaemon(mnt, { force: true, waitMs: 20_000 }).catch((err: Error) => this.opts.log(`${dir}: ${err.message}`));
    await this.removeDir(dir);
  }

  /** Deletes an image's directory and its daemon's run directory (control socket, log). */
  private async removeDir(dir: string): Promise<void> {
    await rm(mountPaths(mountpointOf(dir)).dir, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  }
}
