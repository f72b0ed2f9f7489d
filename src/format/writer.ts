// What both layer writers (eStargz, zstd:chunked) report about the blob they wrote.
import type { Digest } from '../oci/digest.js';

export interface LayerWriteResult {
  /** Layer media type: tar+gzip for eStargz, tar+zstd for zstd:chunked. */
  mediaType: string;
  /** sha256 and size of the compressed blob written. */
  digest: Digest;
  size: number;
  /** sha256 of the uncompressed tar the blob decompresses to (the config's rootfs.diff_ids entry). */
  diffID: Digest;
  /** Size of that uncompressed tar. */
  uncompressedSize: number;
  /** eStargz: sha256 of the TOC JSON; zstd:chunked: sha256 of the compressed TOC (manifest-checksum). */
  tocDigest: Digest;
  /** The layer descriptor annotations the format needs (TOC digest, positions, uncompressed size). */
  annotations: Record<string, string>;
  /** Number of TOC entries (files and chunks). */
  entryCount: number;
}
