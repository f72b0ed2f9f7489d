// Ordinary snapshots, as containerd's overlayfs snapshotter makes them: each snapshot is a directory
// ROOT/snapshots/<id>/ with `fs` (its upper dir: what containerd unpacks into, or what a container
// writes) and, while active, `work` (overlayfs's work dir). Ids are the store's, never derived
// from keys. Mounts are returned for containerd to mount: overlay over the parents' `fs` dirs
// (nearest first), or a bind mount when there is no parent below. Removal drops the metadata;
// Cleanup deletes the directories no snapshot owns (containerd's GC calls it after removing).
import { existsSync, lchownSync, renameSync, rmSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { diskUsage } from './disk-usage.js';
import { alreadyExists } from './errors.js';
import { parseFilters, matches } from './filters.js';
import { noRemoteLayers, type RemoteLayers } from './remote.js';
import { MetaStore, type Info, type Labels, type SnapshotIds, type Usage } from './store.js';

export interface Mount {
  type: string;
  source: string;
  options: string[];
}

export interface SnapshotterOptions {
  /** Where lazily served layers plug in (see remote.ts); none by default. */
  remote?: RemoteLayers;
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
  ) {}

  static async open(dir: string, options: SnapshotterOptions = {}): Promise<Snapshotter> {
    const root = resolve(dir); // mounts name absolute paths: containerd mounts them elsewhere
    await mkdir(join(root, 'snapshots'), { recursive: true, mode: 0o700 });
    const store = MetaStore.open(join(root, 'metadata.db'));
    return new Snapshotter(root, store, options.remote ?? noRemoteLayers, existsSync('/sys/module/overlay/parameters/index'));
  }

  close(): void {
    this.store.close();
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
    // ── Remote (lazy) layers plug in here. A layer served lazily is committed by `remote` under
    // its `containerd.io/snapshot.ref` label, and containerd expects ALREADY_EXISTS for it.
    const committedAs = await this.remote.prepare({ key, parent, labels });
    if (committedAs !== undefined) throw alreadyExists(`target snapshot ${JSON.stringify(committedAs)} already exists`);
    return this.createSnapshot('active', key, parent, labels);
  }

  async view(key: string, parent: string, labels: Labels): Promise<Mount[]> {
    return this.createSnapshot('view', key, parent, labels);
  }

  mounts(key: string): Mount[] {
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
  }

  private async createSnapshot(kind: 'active' | 'view', key: string, parent: string, labels: Labels): Promise<Mount[]> {
    const tmp = await mkdtemp(join(this.snapshotsDir, 'new-'));
    this.preparing.add(basename(tmp));
    try {
      await mkdir(join(tmp, 'fs'), { mode: 0o755 });
      if (kind === 'active') await mkdir(join(tmp, 'work'), { mode: 0o711 });
      // Synchronous from here: the directory gets its id's name inside the metadata transaction.
      const snapshot = this.store.transaction(() => {
        const s = this.store.create(kind, key, parent, labels);
        if (s.parentIds.length > 0) {
          const owner = statSync(this.upperPath(s.parentIds[0]!));
          lchownSync(join(tmp, 'fs'), owner.uid, owner.gid);
        }
        const dir = join(this.snapshotsDir, s.id);
        // A directory of this id can only be left by a crash before its transaction committed.
        rmSync(dir, { recursive: true, force: true });
        renameSync(tmp, dir);
        return s;
      });
      return this.mountsOf(snapshot);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    } finally {
      this.preparing.delete(basename(tmp));
    }
  }

  /** overlay.go's mounts(): what containerd mounts for an active or view snapshot. */
  private mountsOf(s: SnapshotIds): Mount[] {
    if (s.parentIds.length === 0) {
      return [{ type: 'bind', source: this.upperPath(s.id), options: [s.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
    }
    if (s.kind === 'view' && s.parentIds.length === 1) {
      return [{ type: 'bind', source: this.upperPath(s.parentIds[0]!), options: ['ro', 'rbind'] }];
    }
    const options = this.indexOff ? ['index=off'] : [];
    if (s.kind === 'active') options.push(`workdir=${this.workPath(s.id)}`, `upperdir=${this.upperPath(s.id)}`);
    options.push(`lowerdir=${s.parentIds.map((id) => this.upperPath(id)).join(':')}`);
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
