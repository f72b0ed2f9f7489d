// Copies an image (every manifest of an index, their configs and layers) from one ImageSource to an
// ImageDestination, blob by blob through a temp file: how the registry tests push what
// buildImage wrote and pull it back.
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ImageDestination, ImageSource } from '../../src/oci/store.js';
import type { Descriptor } from '../../src/oci/types.js';
import { parseManifestOrIndex } from '../../src/oci/validate.js';

export async function copyImage(src: ImageSource, dst: ImageDestination): Promise<Descriptor> {
  const work = await mkdtemp(join(tmpdir(), 'starling-copy-'));
  let n = 0;
  const copyBlob = async (d: Descriptor) => {
    if (await dst.hasBlob(d)) return;
    const file = join(work, `blob${n++}`);
    await pipeline(await src.openBlobStream(d), createWriteStream(file));
    await dst.putBlobFile(d, file);
  };
  const copyDoc = async (desc: Descriptor, bytes: Buffer): Promise<void> => {
    const doc = parseManifestOrIndex(bytes, desc.mediaType);
    if (doc.kind === 'index') {
      for (const child of doc.index.manifests) await copyDoc(child, await src.fetchJSONBytes(child));
    } else {
      await copyBlob(doc.manifest.config);
      for (const l of doc.manifest.layers) await copyBlob(l);
    }
    await dst.putManifest(desc, bytes);
  };
  try {
    const root = await src.resolveRoot();
    await copyDoc(root.descriptor, root.bytes);
    await dst.setRoot(root.descriptor);
    return root.descriptor;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
