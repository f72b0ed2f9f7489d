// The in-memory inode tree a LazyFs serves: built once per mount from layer indexes, either merged
// with the overlay rules (formats.md §1d.3) or, for `--mode overlay`, one layer in the shape kernel
// overlayfs expects (§1d.2: whiteouts as 0/0 char devices, opaque dirs by xattr). Inode numbers are
// given in build order, so the same image always gets the same numbers.
import { NO_XATTRS, type FileEntry } from '../format/toc.js';
import { splitPath, type LayerIndex } from './layer-index.js';

export interface Inode {
  ino: number;
  /** Metadata (and, for `reg`, the chunks) of the entry that won. */
  entry: FileEntry;
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

function syntheticEntry(path: string, type: FileEntry['type'], mode: number): FileEntry {
  return { path, type, mode, uid: 0, gid: 0, mtimeMs: 0, size: 0, linkName: '', devMajor: 0, devMinor: 0, xattrs: NO_XATTRS, chunks: [] };
}

class TreeBuilder {
  private nextIno = 1;
  readonly root: Inode;

  constructor() {
    this.root = this.inode(syntheticEntry('', 'dir', 0o755), -1);
  }

  inode(entry: FileEntry, layer: number): Inode {
    const node: Inode = { ino: this.nextIno++, entry, layer, nlink: 1, xattrs: entry.xattrs };
    if (entry.type === 'dir') node.children = new Map();
    return node;
  }

  /** The directory at `path`, creating missing ones (0755) and replacing non-directories in the way. */
  dir(path: string, layer: number): Inode {
    let node = this.root;
    if (path === '') return node;
    let sofar = '';
    for (const part of path.split('/')) {
      sofar = sofar ? `${sofar}/${part}` : part;
      let child = node.children!.get(part);
      if (!child?.children) {
        child = this.inode(syntheticEntry(sofar, 'dir', 0o755), layer);
        node.children!.set(part, child);
      }
      node = child;
    }
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
  addEntries(index: LayerIndex, layer: number, what: string, warn: (msg: string) => void): Map<string, Inode> {
    const byPath = new Map<string, Inode>();
    for (const e of index.entries) {
      if (e.path === '') {
        this.setDirMeta(this.root, e, layer);
        continue;
      }
      const { dir, name } = splitPath(e.path);
      const parent = this.dir(dir, layer);
      const existing = parent.children!.get(name);
      let node: Inode;
      if (e.type === 'dir' && existing?.children) {
        // Same directory in a higher layer: its metadata wins, lower contents stay merged in.
        this.setDirMeta(existing, e, layer);
        node = existing;
      } else if (e.type === 'hardlink') {
        const target = byPath.get(e.linkName);
        if (!target || target.children) {
          warn(`${what}: hardlink /${e.path} points to /${e.linkName}, which is not an earlier file of the same layer; skipped`);
          continue;
        }
        node = target;
      } else {
        node = this.inode(e, layer);
      }
      parent.children!.set(name, node);
      byPath.set(e.path, node);
    }
    return byPath;
  }

  private setDirMeta(node: Inode, e: FileEntry, layer: number): void {
    node.entry = e;
    node.layer = layer;
    node.xattrs = e.xattrs;
  }

  finish(): Tree {
    const counted = new Set<Inode>();
    let totalBytes = 0;
    const refs = new Map<Inode, number>();
    const walk = (dir: Inode) => {
      let subdirs = 0;
      for (const child of dir.children!.values()) {
        if (child.children) {
          subdirs++;
          walk(child);
        } else {
          refs.set(child, (refs.get(child) ?? 0) + 1);
        }
        if (!counted.has(child)) {
          counted.add(child);
          totalBytes += child.entry.size;
        }
      }
      dir.nlink = 2 + subdirs;
    };
    walk(this.root);
    for (const [node, n] of refs) node.nlink = n;
    return { root: this.root, inodeCount: counted.size + 1, totalBytes };
  }
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
    parent.children!.set(w.name, b.inode(syntheticEntry(path, 'char', 0), layer));
  }
  for (const dir of index.opaqueDirs) {
    const node = b.dir(dir, layer);
    node.xattrs = new Map(node.xattrs).set(OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
  }
  return b.finish();
}
