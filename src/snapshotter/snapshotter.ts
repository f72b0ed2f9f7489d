// Ordinary snapshots, as containerd's overlayfs snapshotter makes them: each snapshot is a directory
// ROOT/snapshots/<id>/ with `fs` (its upper dir: what containerd unpacks into, or what a container
// writes) and, while active, `work` (overlayfs's work dir). Ids are the store's, never derived
// from keys. Mounts are returned for containerd to mount: overlay over the parents' `fs` dirs
// (nearest first), or a bind mount when there is no parent below. Removal drops the metadata;
// Cleanup deletes the directories no snapshot owns (containerd's GC calls it after removing).
import { existsSync, lchownSync, renameSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { overlayOptions } from '../mount/plan.js';
import { diskUsage } from './disk-usage.js';
import { alreadyExists, unavailable } from './errors.js';
import { parseFilters, matches } from './filters.js';
import { noRemoteLayers, remoteRequest, REMOTE_LABEL, TARGET_LABEL, type RemoteLayers } from './remote.js';
import { MetaStore, type Info, type Labels, type RemoteLayer, type SnapshotIds, type Usage } from './store.js';

export interface Mount {
  type: string;
  source: string;
  options: string[];
}

export interface SnapshotterOptions {
  /** Where lazily served layers come from (see remote.ts); none by default. */
  remote?: RemoteLayers;
  /** Where a layer that could not be served lazily is reported, with the reason. */
  log?(message: string): void;
}

export class Snapshotter {
  /** Temporary directories of Prepares and Views under way, which Cleanup must leave alone. */
  private readonly preparing = new Set<string>();

  private constructor(
    private readonly root: string,
    private readonly store: MetaStore,
    private readonly remote: RemoteLayers,
    /** overlayfs's `index=off`, passed when the kernel knows the option, as containerd does. */
    private readonly indexOff: boolean,
    private readonly log: (message: string) => void,
  ) {}

  /** Opens the store and, before anything is served, makes sure every remote layer in use is mounted. */
  static async open(dir: string, options: SnapshotterOptions = {}): Promise<Snapshotter> {
    const root = resolve(dir); // mounts name absolute paths: containerd mounts them elsewhere
    await mkdir(join(root, 'snapshots'), { recursive: true, mode: 0o700 });
    const store = MetaStore.open(join(root, 'metadata.db'));
    const remote = options.remote ?? noRemoteLayers;
    try {
      await remote.restore(store.remoteLayers());
    } catch (err) {
      store.close();
      throw err;
    }
    return new Snapshotter(root, store, remote, existsSync('/sys/module/overlay/parameters/index'), options.log ?? (() => {}));
  }

  async close(): Promise<void> {
    this.store.close();
    await this.remote.close();
  }

  private get snapshotsDir(): string {
    return join(this.root, 'snapshots');
  }

  private upperPath(id: string): string {
    return join(this.snapshotsDir, id, 'fs');
  }

  private workPath(id: string): string {
    return join(this.snapshotsDir, id, 'work');
  }

  stat(key: string): Info {
    return this.store.getInfo(key).info;
  }

  update(info: { name: string; labels: Labels }, fieldpaths: string[]): Info {
    return this.store.transaction(() => this.store.updateLabels(info, fieldpaths));
  }

  /** An active snapshot's usage is measured now; a committed one's was measured at commit. */
  async usage(key: string): Promise<Usage> {
    const { id, info, usage } = this.store.getInfo(key);
    return info.kind === 'active' ? diskUsage(this.upperPath(id)) : usage;
  }

  async prepare(key: string, parent: string, labels: Labels): Promise<Mount[]> {
    const request = remoteRequest(labels);
    if (request && 'target' in request) {
      // containerd expects ALREADY_EXISTS both when the layer is there and when it was just served lazily.
      if (this.store.has(request.target)) throw alreadyExists(`target snapshot ${JSON.stringify(request.target)} already exists`);
      const served = await this.remote.mount(request);
      if ('layer' in served) {
        const remoteLabels = { ...labels, [REMOTE_LABEL]: 'remote snapshot' };
        this.store.transaction(() => this.store.commitRemote(request.target, parent, remoteLabels, served.layer));
        throw alreadyExists(`target snapshot ${JSON.stringify(request.target)} already exists`);
      }
      this.log(`layer ${request.digest} of ${request.ref} unpacked by containerd: ${served.reason}`);
    } else if (request) this.log(`layer ${labels[TARGET_LABEL]} unpacked by containerd: ${request.reason}`);
    return this.createSnapshot('active', key, parent, labels);
  }

  async view(key: string, parent: string, labels: Labels): Promise<Mount[]> {
    return this.createSnapshot('view', key, parent, labels);
  }

  async mounts(key: string): Promise<Mount[]> {
    return this.mountsOf(this.store.getSnapshot(key));
  }

  async commit(name: string, key: string, labels: Labels): Promise<void> {
    const { id } = this.store.getInfo(key);
    const usage = await diskUsage(this.upperPath(id));
    this.store.transaction(() => this.store.commitActive(key, name, usage, labels));
  }

  remove(key: string): void {
    this.store.transaction(() => this.store.remove(key));
  }

  list(filters: string[]): Info[] {
    const filter = parseFilters(filters);
    return this.store.all().filter((info) => matches(filter, (path) => infoField(info, path)));
  }

  /** Deletes every directory under snapshots/ that no snapshot owns (removed ones, interrupted Prepares). */
  async cleanup(): Promise<void> {
    const names = await readdir(this.snapshotsDir);
    // Owners read after the listing, so a Prepare that finished meanwhile keeps its directory.
    const owned = this.store.ids();
    for (const name of names) {
      if (!owned.has(name) && !this.preparing.has(name)) await rm(join(this.snapshotsDir, name), { recursive: true, force: true });
    }
    await this.remote.release(this.store.remoteLayers());
  }

  private async createSnapshot(kind: 'active' | 'view', key: string, parent: string, labels: Labels): Promise<Mount[]> {
    // The new upper dir takes its owner from the parent's root, read while the directories are
    // made: a container's Prepare comes as its image's daemon finishes mounting.
    const parentId = parent && this.store.has(parent) ? this.store.getInfo(parent).id : undefined;
    const owner = parentId === undefined ? undefined : this.rootOwner(parentId);
    owner?.catch(() => {}); // awaited once the directories are made
    const tmp = await mkdtemp(join(this.snapshotsDir, 'new-'));
    this.preparing.add(basename(tmp));
    try {
      await mkdir(join(tmp, 'fs'), { mode: 0o755 });
      if (kind === 'active') await mkdir(join(tmp, 'work'), { mode: 0o711 });
      const ids = await owner;
      // Synchronous from here: the directory gets its id's name inside the metadata transaction.
      const snapshot = this.store.transaction(() => {
        const s = this.store.create(kind, key, parent, labels);
        if (ids) lchownSync(join(tmp, 'fs'), ids.uid, ids.gid);
        const dir = join(this.snapshotsDir, s.id);
        // A directory of this id can only be left by a crash before its transaction committed.
        rmSync(dir, { recursive: true, force: true });
        renameSync(tmp, dir);
        return s;
      });
      try {
        return await this.mountsOf(snapshot);
      } catch (err) {
        // No mounts, no snapshot: containerd takes the Prepare as failed (overlay.go computes the
        // mounts inside its transaction), so a record kept here would be one it never removes.
        this.store.transaction(() => this.store.remove(key));
        await rm(join(this.snapshotsDir, snapshot.id), { recursive: true, force: true });
        throw err;
      }
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    } finally {
      this.preparing.delete(basename(tmp));
    }
  }

  /** Owner of snapshot `id`'s root; a remote layer is mounted first (a dead daemon is started again; if that fails, its dead mount is not stat'ed). */
  private async rootOwner(id: string): Promise<{ uid: number; gid: number }> {
    const layer = this.store.remoteLayer(id);
    if (layer) await this.checkMounted([layer]);
    return stat(this.layerPath(id));
  }

  /** Where a snapshot's files are: its own directory, or the mount of the remote layer it is. */
  private layerPath(id: string): string {
    const remote = this.store.remoteLayer(id);
    return remote ? this.remote.path(remote) : this.upperPath(id);
  }

  /** UNAVAILABLE unless every one of `layers` is mounted (a dead daemon is started again first): a container must not start on it. */
  private async checkMounted(layers: RemoteLayer[]): Promise<void> {
    const dead = await this.remote.dead(layers);
    if (dead.length) throw unavailable(`remote layers are not mounted: ${dead.map((l) => this.remote.path(l)).join(', ')}`);
  }

  /**
   * overlay.go's mounts(): what containerd mounts for an active or view snapshot; UNAVAILABLE when
   * a remote layer below is not mounted.
   */
  private async mountsOf(s: SnapshotIds): Promise<Mount[]> {
    const remoteParents = s.parentIds.map((id) => this.store.remoteLayer(id));
    const remote = remoteParents.filter((l) => l !== undefined);
    await this.checkMounted(remote);
    if (s.parentIds.length === 0) {
      return [{ type: 'bind', source: this.upperPath(s.id), options: [s.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
    }
    // A whole lazily served image below: its merged mount instead of one lower dir per layer.
    const merged = remote.length === remoteParents.length ? await this.remote.merged(remote) : undefined;
    const lowers = merged ? [merged] : s.parentIds.map((id) => this.layerPath(id));
    // Which lower dirs a snapshot over lazy layers got (a container once saw a whited-out file under load).
    if (remote.length > 0) this.log(`snapshot ${s.id}: lower dirs ${lowers.join(':')}`);
    if (s.kind === 'view' && lowers.length === 1) return [{ type: 'bind', source: lowers[0]!, options: ['ro', 'rbind'] }];
    const upper = s.kind === 'active' ? { upperdir: this.upperPath(s.id), workdir: this.workPath(s.id) } : undefined;
    const options = overlayOptions(lowers, upper, this.indexOff ? ['index=off'] : []);
    return [{ type: 'overlay', source: 'overlay', options }];
  }
}

/** The fields containerd's filters see on a snapshot (its adaptSnapshot). */
function infoField(info: Info, path: string[]): string | undefined {
  switch (path[0]) {
    case 'kind':
      return info.kind;
    case 'name':
      return info.name;
    case 'parent':
      return info.parent;
    case 'labels':
      return info.labels[path.slice(1).join('.')];
    default:
      return undefined;
  }
}
