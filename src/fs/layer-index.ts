// One layer's entries sorted into what the overlay rules need (formats.md §1d.1): ordinary entries,
// whiteouts (`.wh.NAME`) and opaque markers (`.wh..wh..opq`). Paths come from a TOC or a tar and are
// untrusted: anything that is not a clean relative path is rejected here, before it reaches a tree.
import { isCleanPath } from '../format/tar-entry.js';
import { TocError, type FileEntry } from '../format/toc.js';
import { EntryTable } from './entry-table.js';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

export interface Whiteout {
  /** Directory holding the whiteout ('' = root). */
  dir: string;
  /** Name hidden in lower layers. */
  name: string;
}

export interface LayerIndex {
  /** Entries other than whiteouts and opaque markers, in TOC order. */
  entries: EntryTable;
  whiteouts: Whiteout[];
  /** Directories whose lower-layer contents are hidden. */
  opaqueDirs: string[];
}

export function splitPath(path: string): { dir: string; name: string } {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? { dir: '', name: path } : { dir: path.slice(0, slash), name: path.slice(slash + 1) };
}

function checkPath(path: string, what: string): void {
  if (path !== '' && !isCleanPath(path)) throw new TocError(`${what}: unsafe path in layer: ${JSON.stringify(path)}`);
}

export function indexLayer(entries: readonly FileEntry[], what: string): LayerIndex {
  const index: LayerIndex = { entries: new EntryTable(entries.length, entries.reduce((n, e) => n + e.chunks.length, 0)), whiteouts: [], opaqueDirs: [] };
  for (const e of entries) {
    checkPath(e.path, what);
    if (e.path === '' && e.type !== 'dir') throw new TocError(`${what}: the root is a ${e.type}, not a directory`);
    if (e.type === 'hardlink') checkPath(e.linkName, what);
    const { dir, name } = splitPath(e.path);
    if (name === OPAQUE_MARKER) {
      index.opaqueDirs.push(dir);
    } else if (name.startsWith(WHITEOUT_PREFIX)) {
      const hidden = name.slice(WHITEOUT_PREFIX.length);
      // A bare `.wh.` is invalid (§1d.1); it hides nothing and is not shown.
      if (hidden !== '') index.whiteouts.push({ dir, name: hidden });
    } else {
      index.entries.add(e);
    }
  }
  index.entries.seal();
  return index;
}
