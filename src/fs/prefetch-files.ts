// Files to prefetch (a prefetch profile's, a --prefetch-list's) turned into a layer's chunks.
import type { ChunkRef } from '../format/toc.js';
import type { ByteRange } from '../image/profile.js';
import type { EntryTable } from './entry-table.js';

export interface PrefetchFile {
  /** Normalised, relative to the layer root. */
  path: string;
  /** Only the chunks overlapping these ranges of the content; every chunk when absent. */
  ranges?: readonly ByteRange[];
}

/**
 * The chunks of `files` in `table`, file by file in the order given. A hard link stands for its
 * target in the same layer; a path the layer does not hold as a regular file gives nothing.
 */
export function chunksOfFiles(table: EntryTable, files: readonly PrefetchFile[]): ChunkRef[] {
  if (files.length === 0) return [];
  const rows = new Map<string, number>();
  // The last row of a path wins, as in the tree.
  const lookFor = (paths: ReadonlySet<string>) => {
    for (let r = 0; r < table.length; r++) if (paths.has(table.path(r))) rows.set(table.path(r), r);
  };
  lookFor(new Set(files.map((f) => f.path)));
  const targets = new Set<string>();
  for (const r of rows.values()) if (table.typeOf(r) === 'hardlink' && !rows.has(table.linkNameOf(r))) targets.add(table.linkNameOf(r));
  lookFor(targets);
  const out: ChunkRef[] = [];
  for (const f of files) {
    let r = rows.get(f.path);
    if (r !== undefined && table.typeOf(r) === 'hardlink') r = rows.get(table.linkNameOf(r));
    if (r === undefined || table.typeOf(r) !== 'reg') continue;
    for (const c of table.chunksOf(r)) {
      if (!f.ranges || f.ranges.some(([start, end]) => c.fileOffset < end && start < c.fileOffset + c.size)) out.push(c);
    }
  }
  return out;
}
