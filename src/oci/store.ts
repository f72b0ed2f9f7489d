// Where images come from and go to. `oci:` layout directories and `docker://` registries both
// implement these, so conversion and pull never care which transport they talk to.
import type { Readable } from 'node:stream';
import type { Descriptor } from './types.js';
import type { BlobSource } from '../blob/source.js';

export interface ImageSource {
  /** Human-readable name for messages, e.g. `oci:/tmp/img:latest` or `docker://host/repo:tag`. */
  readonly description: string;
  /** The manifest or index the reference names, its bytes verified against its descriptor. */
  resolveRoot(): Promise<{ descriptor: Descriptor; bytes: Buffer }>;
  /** A manifest, index or config (small JSON), verified against the descriptor. */
  fetchJSONBytes(desc: Descriptor): Promise<Buffer>;
  /** A blob as a stream; the stream errors at its end if size or digest disagree with `desc`. */
  openBlobStream(desc: Descriptor): Promise<Readable>;
  /** Random access to a blob, for lazy reads. */
  openBlobSource(desc: Descriptor): Promise<BlobSource>;
  /** Readies `connections` connections for requests about to be sent at once (a source over a network). */
  preconnect?(connections: number): void;
  close(): Promise<void>;
}

export interface ImageDestination {
  readonly description: string;
  hasBlob(desc: Descriptor): Promise<boolean>;
  /** Stores the blob read from `file` (already hashed by the caller: `desc` is authoritative). */
  putBlobFile(desc: Descriptor, file: string): Promise<void>;
  /** Stores a manifest or index (by digest). */
  putManifest(desc: Descriptor, bytes: Buffer): Promise<void>;
  /** Names the root manifest or index (the tag of the reference); called last. */
  setRoot(desc: Descriptor): Promise<void>;
  close(): Promise<void>;
}
