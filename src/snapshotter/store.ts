// The snapshotter's metadata (what containerd's snapshots/storage keeps in bolt): per snapshot its
// name (a key while active or a view), parent, kind, labels, timestamps and, once committed, its
// usage; internal ids name the directories. SQLite in WAL mode, every change one transaction with
// synchronous=FULL, so a crash or `kill -9` loses nothing that was answered. The connection holds
// the database exclusively: a second service on the same root fails at start instead of racing.
import Database from 'better-sqlite3';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from './errors.js';

export type Kind = 'view' | 'active' | 'committed';
export type Labels = Record<string, string>;

export interface Info {
  name: string;
  /** The parent's name, '' for none. */
  parent: string;
  kind: Kind;
  created: Date;
  updated: Date;
  labels: Labels;
}

export interface Usage {
  size: number;
  inodes: number;
}

/** An active or view snapshot, as mounts are built from it: its id and its parents' ids, nearest first. */
export interface SnapshotIds {
  id: string;
  kind: Kind;
  parentIds: string[];
}

interface Row {
  id: number;
  name: string;
  parent_id: number | null;
  parent: string | null;
  kind: Kind;
  created_ms: number;
  updated_ms: number;
  size: number;
  inodes: number;
  labels: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  parent_id INTEGER REFERENCES snapshots(id),
  kind TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  size INTEGER NOT NULL DEFAULT 0,
  inodes INTEGER NOT NULL DEFAULT 0,
  labels TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS snapshots_by_parent ON snapshots(parent_id);
CREATE TABLE IF NOT EXISTS remote_layers (
  snapshot_id INTEGER PRIMARY KEY REFERENCES snapshots(id) ON DELETE CASCADE,
  image_dir TEXT NOT NULL,
  layer INTEGER NOT NULL
);
`;

/** Where a committed remote snapshot is served: the image daemon's directory and the layer's position. */
export interface RemoteLayer {
  dir: string;
  layer: number;
}

const SELECT = 'SELECT s.*, p.name AS parent FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id';

/** containerd's limit (labels.Validate): a label's key and value together fit in 4096 bytes. */
const MAX_LABEL_BYTES = 4096;

/** Labels as containerd stores them: empty values are dropped (that is how a label is removed). */
export function cleanLabels(labels: Labels | undefined): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_LABEL_BYTES) throw invalidArgument(`label key and value greater than maximum size (${MAX_LABEL_BYTES} bytes), key: ${k.slice(0, 64)}`);
    if (v !== '') out[k] = v;
  }
  return out;
}

function toInfo(row: Row): Info {
  return {
    name: row.name,
    parent: row.parent ?? '',
    kind: row.kind,
    created: new Date(row.created_ms),
    updated: new Date(row.updated_ms),
    labels: JSON.parse(row.labels) as Labels,
  };
}

export class MetaStore {
  private constructor(private readonly db: Database.Database) {}

  static open(file: string): MetaStore {
    const db = new Database(file, { timeout: 0 });
    try {
      // Exclusive before WAL (so no shared-memory index exists), and taken now by a write
      // transaction: an exclusive connection otherwise locks only at its first write.
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.exec(`BEGIN EXCLUSIVE; ${SCHEMA} COMMIT;`);
    } catch (err) {
      db.close();
      const busy = (err as { code?: string }).code === 'SQLITE_BUSY';
      throw new Error(busy ? `${file}: in use by another snapshotter service` : `${file}: ${(err as Error).message}`);
    }
    return new MetaStore(db);
  }

  close(): void {
    this.db.close();
  }

  /** Runs `fn` as one write transaction: everything it changed, or nothing if it throws. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  private row(name: string): Row | undefined {
    return this.db.prepare(`${SELECT} WHERE s.name = ?`).get(name) as Row | undefined;
  }

  private mustRow(name: string): Row {
    const row = this.row(name);
    if (!row) throw notFound(`snapshot ${name} does not exist`);
    return row;
  }

  private parentIds(parentId: number | null): string[] {
    const ids: string[] = [];
    for (let id = parentId; id !== null; ) {
      ids.push(String(id));
      id = (this.db.prepare('SELECT parent_id FROM snapshots WHERE id = ?').get(id) as { parent_id: number | null }).parent_id;
    }
    return ids;
  }

  has(name: string): boolean {
    return this.row(name) !== undefined;
  }

  getInfo(name: string): { id: string; info: Info; usage: Usage } {
    const row = this.mustRow(name);
    return { id: String(row.id), info: toInfo(row), usage: { size: row.size, inodes: row.inodes } };
  }

  /** An active or view snapshot (FAILED_PRECONDITION for a committed one). */
  getSnapshot(key: string): SnapshotIds {
    const row = this.mustRow(key);
    if (row.kind === 'committed') throw failedPrecondition(`snapshot ${key} is committed, not active or view`);
    return { id: String(row.id), kind: row.kind, parentIds: this.parentIds(row.parent_id) };
  }

  /** Inserts an active or view snapshot on a committed parent (or none). Call inside `transaction`. */
  create(kind: 'active' | 'view', key: string, parent: string, labels: Labels): SnapshotIds {
    if (key === '') throw invalidArgument('snapshot key must not be empty');
    let parentId: number | null = null;
    if (parent !== '') {
      const p = this.row(parent);
      if (!p) throw notFound(`parent snapshot ${parent} does not exist`);
      if (p.kind !== 'committed') throw invalidArgument(`parent ${parent} is not a committed snapshot`);
      parentId = p.id;
    }
    if (this.row(key)) throw alreadyExists(`snapshot ${key} already exists`);
    const now = Date.now();
    const { lastInsertRowid } = this.db
      .prepare('INSERT INTO snapshots (name, parent_id, kind, created_ms, updated_ms, labels) VALUES (?, ?, ?, ?, ?, ?)')
      .run(key, parentId, kind, now, now, JSON.stringify(cleanLabels(labels)));
    return { id: String(lastInsertRowid), kind, parentIds: this.parentIds(parentId) };
  }

  /**
   * Turns the active snapshot `key` into the committed snapshot `name` (same id, so its children
   * and directory stay); labels are replaced, not inherited, and it gets a new creation time.
   */
  commitActive(key: string, name: string, usage: Usage, labels: Labels): string {
    if (name === '') throw invalidArgument('committed snapshot name must not be empty');
    if (this.row(name)) throw alreadyExists(`committed snapshot ${name} already exists`);
    const row = this.row(key);
    if (!row) throw notFound(`active snapshot ${key} does not exist`);
    if (row.kind !== 'active') throw failedPrecondition(`snapshot ${key} is not active`);
    const now = Date.now();
    this.db
      .prepare("UPDATE snapshots SET name = ?, kind = 'committed', created_ms = ?, updated_ms = ?, size = ?, inodes = ?, labels = ? WHERE id = ?")
      .run(name, now, now, usage.size, usage.inodes, JSON.stringify(cleanLabels(labels)), row.id);
    return String(row.id);
  }

  /**
   * Inserts the committed snapshot `name` of a layer served lazily (containerd's remote snapshots:
   * committed by the snapshotter itself, on a committed parent or none). Call inside `transaction`.
   */
  commitRemote(name: string, parent: string, labels: Labels, remote: RemoteLayer): void {
    if (name === '') throw invalidArgument('committed snapshot name must not be empty');
    let parentId: number | null = null;
    if (parent !== '') {
      const p = this.mustRow(parent);
      if (p.kind !== 'committed') throw invalidArgument(`parent ${parent} is not a committed snapshot`);
      parentId = p.id;
    }
    if (this.row(name)) throw alreadyExists(`target snapshot ${JSON.stringify(name)} already exists`);
    const now = Date.now();
    const { lastInsertRowid } = this.db
      .prepare("INSERT INTO snapshots (name, parent_id, kind, created_ms, updated_ms, labels) VALUES (?, ?, 'committed', ?, ?, ?)")
      .run(name, parentId, now, now, JSON.stringify(cleanLabels(labels)));
    this.db.prepare('INSERT INTO remote_layers (snapshot_id, image_dir, layer) VALUES (?, ?, ?)').run(lastInsertRowid, remote.dir, remote.layer);
  }

  /** The remote layer a snapshot id is served from, if it is one. */
  remoteLayer(id: string): RemoteLayer | undefined {
    const row = this.db.prepare('SELECT image_dir, layer FROM remote_layers WHERE snapshot_id = ?').get(Number(id)) as { image_dir: string; layer: number } | undefined;
    return row && { dir: row.image_dir, layer: row.layer };
  }

  /** Every remote layer in use, by image directory. */
  remoteLayers(): Map<string, number[]> {
    const byDir = new Map<string, number[]>();
    for (const r of this.db.prepare('SELECT image_dir, layer FROM remote_layers').all() as Array<{ image_dir: string; layer: number }>) {
      byDir.set(r.image_dir, [...(byDir.get(r.image_dir) ?? []), r.layer]);
    }
    return byDir;
  }

  /** Deletes a snapshot without children; returns its id. */
  remove(key: string): string {
    const row = this.mustRow(key);
    if (this.db.prepare('SELECT 1 FROM snapshots WHERE parent_id = ? LIMIT 1').get(row.id)) throw failedPrecondition(`cannot remove snapshot ${key} with child`);
    this.db.prepare('DELETE FROM snapshots WHERE id = ?').run(row.id);
    return String(row.id);
  }

  /**
   * Updates the labels of `info.name`: all of them when `fieldpaths` is empty or has "labels",
   * else each `labels.KEY` named (an empty or missing value removes it). Other fields are immutable.
   */
  updateLabels(info: { name: string; labels: Labels }, fieldpaths: string[]): Info {
    const row = this.mustRow(info.name);
    let labels = JSON.parse(row.labels) as Labels;
    if (fieldpaths.length === 0) labels = info.labels;
    for (const path of fieldpaths) {
      if (path === 'labels') labels = info.labels;
      else if (path.startsWith('labels.')) {
        const key = path.slice('labels.'.length);
        labels[key] = info.labels[key] ?? '';
      } else throw invalidArgument(`cannot update ${JSON.stringify(path)} field on snapshot ${JSON.stringify(info.name)}`);
    }
    this.db.prepare('UPDATE snapshots SET labels = ?, updated_ms = ? WHERE id = ?').run(JSON.stringify(cleanLabels(labels)), Date.now(), row.id);
    return this.getInfo(info.name).info;
  }

  /** Every snapshot, read at once: the connection cannot write while a statement is being iterated. */
  all(): Info[] {
    return (this.db.prepare(`${SELECT} ORDER BY s.id`).all() as Row[]).map(toInfo);
  }

  /** Every snapshot's id: directories under snapshots/ with any other name are garbage. */
  ids(): Set<string> {
    return new Set((this.db.prepare('SELECT id FROM snapshots').all() as Array<{ id: number }>).map((r) => String(r.id)));
  }
}
