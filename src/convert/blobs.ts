// Small helpers to put JSON documents and files into an ImageDestination, which only takes blob
// files (a registry uploads them, a layout links them) and manifests as bytes.
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { sha256, Sha256Counter, type Digest } from '../oci/digest.js';
import type { ImageDestination } from '../oci/store.js';
import type { Descriptor } from '../oci/types.js';

/** sha256 and size of a file, streamed. */
export async function hashFile(path: string): Promise<{ digest: Digest; size: number }> {
  const counter = new Sha256Counter();
  await pipeline(createReadStream(path), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) counter.update(chunk);
  });
  return { digest: counter.digest(), size: counter.bytes };
}

/** The canonical bytes we write for a JSON document (compact, as containerd and skopeo do). */
export function jsonBytes(doc: unknown): Buffer {
  return Buffer.from(JSON.stringify(doc));
}

/** Stores a non-manifest JSON blob (a config) and returns its descriptor. */
export async function putJSONBlob(dst: ImageDestination, mediaType: string, bytes: Buffer): Promise<Descriptor> {
  const desc: Descriptor = { mediaType, digest: sha256(bytes), size: bytes.length };
  if (await dst.hasBlob(desc)) return desc;
  const dir = await mkdtemp(join(tmpdir(), 'starling-blob-'));
  try {
    const file = join(dir, 'blob');
    await writeFile(file, bytes);
    await dst.putBlobFile(desc, file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return desc;
}

/** Stores a manifest or index and returns its descriptor. */
export async function putManifestBytes(dst: ImageDestination, mediaType: string, bytes: Buffer, extra: Partial<Descriptor> = {}): Promise<Descriptor> {
  const desc: Descriptor = { mediaType, digest: sha256(bytes), size: bytes.length, ...extra };
  await dst.putManifest(desc, bytes);
  return desc;
}
