// Entry order of a layer with prioritised files, as stargz-snapshotter's sortEntries/moveRec:
// later duplicates replace earlier ones (at the later position), existing landmarks are dropped,
// each prioritised path is pulled forward with its parent directories first and, for a hardlink,
// its target first; the rest keep their tar order (formats.md §1a.6).
import { cleanEntryName, TarEntryError } from '../tar-entry.js';

export const PREFETCH_LANDMARK = '.prefetch.landmark';
export const NO_PREFETCH_LANDMARK = '.no.prefetch.landmark';
export const TOC_TAR_NAME = 'stargz.index.json';

export interface OrderableEntry {
  /** Name as in the tar. */
  name: string;
  /** Hardlink target name, for hardlinks only. */
  hardlinkTarget?: string;
}

/** An ordered set keyed by clean name; removal leaves a hole that dump() skips. */
class EntrySet<T extends OrderableEntry> {
  private readonly index = new Map<string, number>();
  private readonly stream: (T | undefined)[] = [];
  add(e: T): void {
    this.index.set(cleanEntryName(e.name), this.stream.length);
    this.stream.push(e);
  }
  get(name: string): T | undefined {
    const i = this.index.get(cleanEntryName(name));
    return i === undefined ? undefined : this.stream[i];
  }
  remove(name: string): void {
    const key = cleanEntryName(name);
    const i = this.index.get(key);
    if (i === undefined) return;
    this.stream[i] = undefined;
    this.index.delete(key);
  }
  dump(): T[] {
    return this.stream.filter((e): e is T => e !== undefined);
  }
}

function parentOf(name: string): string {
  const trimmed = name.endsWith('/') ? name.slice(0, -1) : name;
  const slash = trimmed.lastIndexOf('/');
  return slash === -1 ? '' : trimmed.slice(0, slash + 1);
}

/**
 * Returns [prioritised entries, remaining entries]; the landmark goes between them. Throws
 * TarEntryError naming a prioritised path that is not in the layer (Go's Build fails the same way),
 * unless `missed` is given (Go's WithAllowPrioritizeNotFound): then such a path is skipped and
 * added to it, as when one list recorded on a whole image is applied to each of its layers.
 */
export function orderEntries<T extends OrderableEntry>(entries: Iterable<T>, prioritized: readonly string[], missed?: string[]): [T[], T[]] {
  const input = new EntrySet<T>();
  for (const e of entries) {
    const clean = cleanEntryName(e.name);
    if (clean === PREFETCH_LANDMARK || clean === NO_PREFETCH_LANDMARK) continue;
    input.remove(clean);
    input.add(e);
  }
  const sorted = new EntrySet<T>();
  const moveRec = (raw: string, requested: string): void => {
    const name = cleanEntryName(raw);
    if (name === '') {
      const root = input.get('');
      if (root) {
        sorted.add(root);
        input.remove('');
      }
      return;
    }
    if (!input.get(name) && !sorted.get(name)) {
      throw new TarEntryError(`prioritized file ${JSON.stringify(requested)}: ${JSON.stringify(name)} is not in the layer`);
    }
    moveRec(parentOf(name), requested);
    const link = input.get(name)?.hardlinkTarget;
    if (link !== undefined) moveRec(link, requested);
    const e = input.get(name);
    if (e) {
      sorted.add(e);
      input.remove(name);
    }
  };
  for (const p of prioritized) {
    try {
      moveRec(p, p);
    } catch (err) {
      if (!(missed && err instanceof TarEntryError)) throw err;
      missed.push(p);
    }
  }
  return [sorted.dump(), input.dump()];
}
