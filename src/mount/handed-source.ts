// The image metadata `starling mount` fetches while its daemon starts, and hands over. A daemon is a
// second Node.js process: ~0.13 s to start and ~0.2 s to load the mount code, time in which the
// caller's process sat idle waiting for it. The caller spends it on the network instead (manifest,
// config, each layer's footer and TOC); the daemon finds them once its code is loaded. The bytes are
// checked again on the daemon's side, as bytes from a registry are.
import type { Readable } from 'node:stream';
import type { BlobSource } from '../blob/source.js';
import { verifyDigest, type Digest } from '../oci/digest.js';
import type { ImageSource } from '../oci/store.js';
import type { Descriptor } from '../oci/types.js';

/** Bytes of the image: the root the reference named, the manifests, indexes and config fetched, and the TOC ranges read. */
export interface MountHandoff {
  root: { descriptor: Descriptor; bytes: Uint8Array };
  json: Array<{ descriptor: Descriptor; bytes: Uint8Array }>;
  tocs: Array<{ digest: Digest; offset: number; length: number; bytes: Uint8Array }>;
}

/** What the caller sends: the handoff, or why it could not fetch the image (the daemon fails with that). */
export type HandoffMessage = { handoff: MountHandoff } | { handoffError: string };

const asBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** `inner`, as it is; the two below change how the image is resolved. */
class ForwardingSource implements ImageSource {
  readonly description: string;

  constructor(protected readonly inner: ImageSource) {
    this.description = inner.description;
  }

  resolveRoot(): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
    return this.inner.resolveRoot();
  }

  fetchJSONBytes(desc: Descriptor): Promise<Buffer> {
    return this.inner.fetchJSONBytes(desc);
  }

  openBlobStream(desc: Descriptor): Promise<Readable> {
    return this.inner.openBlobStream(desc);
  }

  openBlobSource(desc: Descriptor): Promise<BlobSource> {
    return this.inner.openBlobSource(desc);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Keeps what the resolution of the image fetched. */
export class RecordingSource extends ForwardingSource {
  root?: MountHandoff['root'];
  readonly json: MountHandoff['json'] = [];

  override async resolveRoot(): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
    const root = await this.inner.resolveRoot();
    this.root = root;
    return root;
  }

  override async fetchJSONBytes(desc: Descriptor): Promise<Buffer> {
    const bytes = await this.inner.fetchJSONBytes(desc);
    this.json.push({ descriptor: desc, bytes });
    return bytes;
  }
}

/** `inner`, answering resolution from the handed bytes (each verified against its descriptor) and everything else from the registry. */
export class HandedSource extends ForwardingSource {
  private readonly json: Map<Digest, Uint8Array>;

  constructor(
    inner: ImageSource,
    private readonly handoff: MountHandoff,
  ) {
    super(inner);
    this.json = new Map(handoff.json.map((j) => [j.descriptor.digest, j.bytes]));
  }

  override async resolveRoot(): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
    const { descriptor, bytes } = this.handoff.root;
    verifyDigest(bytes, descriptor.digest, `${this.description} (handed over)`);
    return { descriptor, bytes: asBuffer(bytes) };
  }

  override async fetchJSONBytes(desc: Descriptor): Promise<Buffer> {
    const bytes = this.json.get(desc.digest);
    if (!bytes || bytes.length !== desc.size) return this.inner.fetchJSONBytes(desc);
    verifyDigest(bytes, desc.digest, `${this.description} ${desc.digest} (handed over)`);
    return asBuffer(bytes);
  }

  /** The TOC ranges read, by layer digest, as reads already done. */
  tocReads(): Map<Digest, { offset: number; length: number; data: Promise<Buffer> }> {
    return new Map(this.handoff.tocs.map((t) => [t.digest, { offset: t.offset, length: t.length, data: Promise.resolve(asBuffer(t.bytes)) }]));
  }
}

/** A handoff message as received over IPC, shape-checked (a malformed one is an error, not a crash). */
export function parseHandoffMessage(m: unknown): HandoffMessage {
  const msg = m as Partial<{ handoff: MountHandoff; handoffError: unknown }>;
  if (typeof msg?.handoffError === 'string') return { handoffError: msg.handoffError };
  const h = msg?.handoff;
  const bytesOk = (b: unknown) => b instanceof Uint8Array;
  const ok =
    h &&
    bytesOk(h.root?.bytes) &&
    typeof h.root.descriptor?.digest === 'string' &&
    Array.isArray(h.json) &&
    h.json.every((j) => bytesOk(j?.bytes) && typeof j.descriptor?.digest === 'string' && typeof j.descriptor.size === 'number') &&
    Array.isArray(h.tocs) &&
    h.tocs.every((t) => bytesOk(t?.bytes) && typeof t.digest === 'string' && Number.isSafeInteger(t.offset) && t.length === t.bytes.length);
  return ok ? { handoff: h } : { handoffError: 'the image metadata handed to the mount daemon was malformed' };
}
