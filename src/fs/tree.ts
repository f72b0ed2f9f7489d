// The in-memory inode tree a LazyFs serves: built once per mount from layer indexes, either merged
// with the overlay rules (formats.md §1d.3) or, for `--mode overlay`, one layer in the shape kernel
// overlayfs expects (§1d.2: whiteouts as 0/0 char devices, opaque dirs by xattr). Inode numbers are
// given in build order, so the same image always gets the same numbers.
import { NO_XATTRS, type FileEntry } from '../format/toc.js';
import { EntryTable } from './entry-table.js';
import { splitPath, type LayerIndex } from './layer-index.js';

export interface Inode {
  ino: number;
  /** The entry that won (metadata and, for `reg`, the chunks): row `row` of `table`. */
  table: EntryTable;
  row: number;
  /** Layer whose chunks serve this inode's content. */
  layer: number;
  /** Directory children by name. */
  children?: Map<string, Inode>;
  nlink: number;
  xattrs: ReadonlyMap<string, Buffer>;
}

export const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';

export interface Tree {
  root: Inode;
  /** Number of distinct inodes. */
  inodeCount: number;
  /** Sum of regular file sizes (each inode once). */
  totalBytes: number;
}

/** The entry an inode serves, as an object (for an open file, a prefetch list, a test). */
export function entryOf(node: Inode): FileEntry {
  return node.table.entry(node.row);
}

class TreeBuilder {
  private nextIno = 1;
  /** Entries no layer has: directories implied by a path, whiteouts shown as devices. */
  private readonly synthetic = new EntryTable();
  readonly root: Inode;

  constructor() {
    this.root = this.syntheticInode('', 'dir', 0o755, -1);
  }

  inode(table: EntryTable, row: number, layer: number): Inode {
    const node: Inode = { ino: this.nextIno++, table, row, layer, nlink: 1, xattrs: table.xattrsOf(row) };
    if (table.typeOf(row) === 'dir') node.children = new Map();
    return node;
  }

  syntheticInode(path: string, type: FileEntry['type'], mode: number, layer: number): Inode {
    const row = this.synthetic.add({ path, type, mode, uid: 0, gid: 0, mtimeMs: 0, size: 0, linkName: '', devMajor: 0, devMinor: 0, xattrs: NO_XATTRS, chunks: [] });
    return this.inode(this.synthetic, row, layer);
  }

  /** The directory `dir` last returned, and its path: entries come grouped by directory (tar order), so most lookups repeat it. */
  private lastDir?: { path: string; node: Inode };

  /** The directory at `path`, creating missing ones (0755) and replacing non-directories in the way. */
  dir(path: string, layer: number): Inode {
    // Still the same directory: between two entries only an entry replacing a directory (it or an
    // ancestor) could detach it, and addEntries drops the memo then and at each layer's start.
    if (this.lastDir?.path === path) return this.lastDir.node;
    let node = this.root;
    if (path === '') return node;
    let start = 0;
    while (start <= path.length) {
      const slash = path.indexOf('/', start);
      const end = slash < 0 ? path.length : slash;
      const part = path.slice(start, end);
      let child = node.children!.get(part);
      if (!child?.children) {
        child = this.syntheticInode(path.slice(0, end), 'dir', 0o755, layer);
        node.children!.set(part, child);
      }
      node = child;
      start = end + 1;
    }
    this.lastDir = { path, node };
    return node;
  }

  /** The existing directory at `path`, or undefined. */
  findDir(path: string): Inode | undefined {
    let node: Inode | undefined = this.root;
    if (path === '') return node;
    for (const part of path.split('/')) {
      node = node?.children?.get(part);
      if (!node?.children) return undefined;
    }
    return node;
  }

  /** Adds one layer's ordinary entries on top of what is there. */
  addEntries(index: LayerIndex, layer: number, what: string, warn: (msg: string) => void): void {
    // This layer's inodes by path: a hardlink's target must be an earlier file of the same layer.
    const byPath = new Map<string, Inode>();
    const table = index.entries;
    this.lastDir = undefined; // whiteouts and opaque markers applied since may have detached it
    for (let row = 0; row < table.length; row++) {
      const path = table.path(row);
      if (path === '') {
        this.setDirMeta(this.root, table, row, layer);
        continue;
      }
      const { dir, name } = splitPath(path);
      const parent = this.dir(dir, layer);
      const existing = parent.children!.get(name);
      const type = table.typeOf(row);
      let node: Inode;
      if (type === 'dir' && existing?.children) {
        // Same directory in a higher layer: its metadata wins, lower contents stay merged in.
        this.setDirMeta(existing, table, row, layer);
        node = existing;
      } else if (type === 'hardlink') {
        const linkName = table.linkNameOf(row);
        const target = byPath.get(linkName);
        if (!target || target.children) {
          warn(`${what}: hardlink /${path} points to /${linkName}, which is not an earlier file of the same layer; skipped`);
          continue;
        }
        node = target;
      } else {
        node = this.inode(table, row, layer);
      }
      parent.children!.set(name, node);
      if (existing?.children && !node.children) this.lastDir = undefined; // a directory replaced: the memo may hold it
      if (!node.children) byPath.set(path, node);
    }
  }

  private setDirMeta(node: Inode, table: EntryTable, row: number, layer: number): void {
    node.table = table;
    node.row = row;
    node.layer = layer;
    node.xattrs = table.xattrsOf(row);
  }

  finish(): Tree {
    // Two walks, no set of visited inodes: the first zeroes the link count of every non-directory,
    // the second counts the names of each (hard links share an inode), so an inode is new when its
    // count goes from 0 to 1. A directory has one name.
    const walk = (dir: Inode, visit: (child: Inode) => void) => {
      for (const child of dir.children!.values()) {
        visit(child);
        if (child.children) walk(child, visit);
      }
    };
    walk(this.root, (child) => {
      if (!child.children) child.nlink = 0;
    });
    let inodeCount = 1;
    let totalBytes = 0;
    walk(this.root, (child) => {
      if (child.children) {
        child.nlink = 2 + countSubdirs(child);
      } else if (child.nlink++ > 0) {
        return;
      }
      inodeCount++;
      totalBytes += child.table.num(child.row, 'size');
    });
    this.root.nlink = 2 + countSubdirs(this.root);
    return { root: this.root, inodeCount, totalBytes };
  }
}

function countSubdirs(dir: Inode): number {
  let n = 0;
  for (const child of dir.children!.values()) if (child.children) n++;
  return n;
}

/** All layers (bottom first) stacked with the OCI overlay rules into one tree. */
export function buildMergedTree(layers: readonly LayerIndex[], warn: (msg: string) => void = () => {}): Tree {
  const b = new TreeBuilder();
  layers.forEach((index, layer) => {
    // Whiteouts and opaque markers only affect lower layers, so they apply before this layer's entries.
    for (const dir of index.opaqueDirs) {
      const node = b.findDir(dir);
      if (node) node.children = new Map();
    }
    for (const w of index.whiteouts) b.findDir(w.dir)?.children!.delete(w.name);
    b.addEntries(index, layer, `layer ${layer}`, warn);
  });
  return b.finish();
}

/**
 * One layer as a lower directory for kernel overlayfs: `.wh.NAME` becomes a 0/0 character device
 * NAME (unless the layer also has a real NAME), and an opaque marker becomes the directory's
 * `trusted.overlay.opaque = y` xattr (formats.md §1d.2).
 */
export function buildLayerTree(index: LayerIndex, layer: number, warn: (msg: string) => void = () => {}): Tree {
  const b = new TreeBuilder();
  b.addEntries(index, layer, `layer ${layer}`, warn);
  for (const w of index.whiteouts) {
    const parent = b.dir(w.dir, layer);
    if (parent.children!.has(w.name)) continue;
    const path = w.dir ? `${w.dir}/${w.name}` : w.name;
    parent.children!.set(w.name, b.syntheticInode(path, 'char', 0, layer));
  }
  for (const dir of index.opaqueDirs) {
    const node = b.dir(dir, layer);
    node.xattrs = new Map(node.xattrs).set(OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
  }
  return b.finish();
}
