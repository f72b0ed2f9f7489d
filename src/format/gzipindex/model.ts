// The gzip checkpoint index of one layer (docs/gzip-index.md): its file table and its checkpoints.
// Built by build.ts in one pass over the layer, stored by encoding.ts, read back by span.ts.
import type { Digest } from '../../oci/digest.js';
import type { FileType } from '../toc.js';
import type { Checkpoint } from './scan.js';

/** One tar entry of the layer, as FileEntry (toc.ts) has it, plus where its data is in the tar. */
export interface GzipIndexEntry {
  /** Normalised path (normalizeEntryPath); '' is the root. */
  path: string;
  type: FileType;
  /** Permission, setuid/setgid and sticky bits only. */
  mode: number;
  uid: number;
  gid: number;
  /** Whole seconds, in ms since the epoch (0 when the tar has none), as formatModtime rounds them. */
  mtimeMs: number;
  /** Uncompressed offset of the entry's data in the layer's tar (right after its headers). */
  offset: number;
  /** Data size for `reg`; 0 otherwise. */
  size: number;
  /** Symlink target as stored, or the normalised path of a hardlink's target. */
  linkName: string;
  devMajor: number;
  devMinor: number;
  xattrs: ReadonlyMap<string, Buffer>;
}

export interface GzipIndex {
  /** The gzip blob this index is of, and its size. */
  layerDigest: Digest;
  compressedSize: number;
  /** Size of the layer's tar (all members' output). */
  uncompressedSize: number;
  /** The span size asked for: checkpoints are at least this many uncompressed bytes apart. */
  spanSize: number;
  /** checkpoints[i] starts span i, which ends where span i + 1 starts (the last at uncompressedSize). */
  checkpoints: Checkpoint[];
  /** sha256 of each span's uncompressed bytes. */
  spanDigests: Digest[];
  /** Every tar entry in tar order (a later duplicate path replaces an earlier one when mounted). */
  entries: GzipIndexEntry[];
}
