// The one TOC model shared by eStargz and zstd:chunked (DESIGN.md: "one model, two formats").
// `TocEntry`/`Toc` are the JSON as serialised (formats.md §1a.4, §1b.4); `FileEntry`/`LayerToc` are
// what readers hand to the rest of Starling: paths normalised, chunks resolved to compressed ranges.
import type { Digest } from '../oci/digest.js';

export type EntryType = 'dir' | 'reg' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'chunk';
export type FileType = Exclude<EntryType, 'chunk'>;
export type LayerFormat = 'estargz' | 'zstd:chunked';
/** What a mount reads a lazy layer through: a seekable format's TOC, or a gzip layer's checkpoint index. */
export type TocFormat = LayerFormat | 'gzip-index';

/** A TOC entry as it appears in the JSON of either format; absent keys mean zero/empty. */
export interface TocEntry {
  name: string;
  type: EntryType;
  size?: number;
  modtime?: string;
  accesstime?: string;
  changetime?: string;
  linkName?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  userName?: string;
  groupName?: string;
  offset?: number;
  endOffset?: number;
  innerOffset?: number;
  devMajor?: number;
  devMinor?: number;
  /** Values are base64. */
  xattrs?: Record<string, string>;
  digest?: string;
  chunkOffset?: number;
  chunkSize?: number;
  chunkDigest?: string;
  chunkType?: string;
}

export interface Toc {
  version: 1;
  entries: TocEntry[];
  tarSplitDigest?: string;
}

/** One piece of a regular file's content and where its compressed bytes live in the blob. */
export interface ChunkRef {
  /** Offset of the chunk inside the file's content. */
  fileOffset: number;
  /** Uncompressed length of the chunk. */
  size: number;
  /** Compressed range [start, end) in the blob that decompresses to (innerOffset + size + rest). */
  start: number;
  end: number;
  /** Uncompressed bytes to skip before the chunk's payload (eStargz `innerOffset`, usually 0). */
  innerOffset: number;
  /** sha256 of the chunk's uncompressed bytes. */
  digest: Digest;
  /** A zstd:chunked `zeros` chunk: all zero bytes, synthesised without fetching. */
  zeros: boolean;
  /**
   * Set when `digest` is not the chunk's own but that of a decoded unit shared by the chunks of
   * several files (a gzip-index span) of `unitSize` bytes; the chunk is [innerOffset, innerOffset + size)
   * of it. Stores load, verify and cache the unit once under its digest and slice it.
   */
  unitSize?: number;
}

/** A filesystem entry of one layer, normalised and validated. */
export interface FileEntry {
  /** Normalised path: no leading or trailing '/', no '.', '..' or empty components; '' is the root. */
  path: string;
  type: FileType;
  /** Permission, setuid/setgid and sticky bits only (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  userName?: string;
  groupName?: string;
  /** Modification time in ms since the epoch (0 when the TOC has none). */
  mtimeMs: number;
  /** Content size for `reg`; 0 otherwise. */
  size: number;
  /** Symlink target as stored, or the normalised path of a hardlink's target entry. */
  linkName: string;
  devMajor: number;
  devMinor: number;
  /** Shared `NO_XATTRS` when there are none (most entries): one empty map per entry cost ~200 bytes each. */
  xattrs: ReadonlyMap<string, Buffer>;
  /** sha256 of the whole content of a `reg` entry. */
  digest?: Digest;
  /** Chunks of a `reg` entry in file order, covering [0, size) without gaps; empty otherwise. */
  chunks: ChunkRef[];
}

/** A seekable layer opened by a reader: its verified TOC and how to decode its chunks. */
export interface LayerToc {
  format: TocFormat;
  /** The digest the TOC was verified against (eStargz: uncompressed JSON; zstd:chunked: compressed TOC; gzip index: the layer it names). */
  tocDigest: Digest;
  /** Blob offset where the TOC (and everything that is not file data) begins. */
  tocOffset: number;
  /** Entries in TOC order; landmarks and the TOC entry itself are not included. */
  entries: FileEntry[];
  /** eStargz `.prefetch.landmark`: file data in [0, prefetchEnd) is the prioritised prefix. */
  prefetchEnd?: number;
  /**
   * Decompresses a chunk's compressed bytes (the blob range [chunk.start, chunk.end)) and returns
   * exactly its `size` payload bytes after checking them against `chunk.digest`. Never inflates
   * more than innerOffset + size bytes. Throws ChunkVerifyError when they cannot be verified.
   * For chunks with a `unitSize`, it is called with the unit itself (innerOffset 0, size unitSize).
   */
  decodeChunk(chunk: ChunkRef, compressed: Buffer): Promise<Buffer>;
}

/** The xattrs of every entry that has none. */
export const NO_XATTRS: ReadonlyMap<string, Buffer> = new Map();

/** A chunk whose bytes do not decode or do not match their digest: the read must fail with EIO. */
export class ChunkVerifyError extends Error {}

/** A TOC that is malformed, inconsistent with its blob, or fails verification. */
export class TocError extends Error {}
