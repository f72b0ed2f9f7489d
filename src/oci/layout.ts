// OCI image layout directories (image-spec `image-layout.md`): `oci-layout`, `index.json`,
// `blobs/sha256/<hex>`. Reads verify every blob against its descriptor; writes go to a temporary
// name and are renamed into place, and index.json is written last, so an interrupted write never
// leaves a layout that names an image whose blobs are missing.
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { FileBlob, type BlobSource } from '../blob/source.js';
import { digestHex, sha256, Sha256Counter, type Digest } from './digest.js';
import { Annotation, MediaType } from './mediatypes.js';
import type { ImageDestination, ImageSource } from './store.js';
import type { Descriptor, ImageIndex } from './types.js';
import { parseIndex } from './validate.js';

export class LayoutError extends Error {}

const LAYOUT_FILE = 'oci-layout';
const INDEX_FILE = 'index.json';
const LAYOUT_VERSION = '1.0.0';
/** Manifests, indexes and configs are small; refuse to load a "JSON" blob bigger than this into memory. */
const MAX_JSON_BYTES = 64 << 20;

function blobPath(dir: string, d: Digest): string {
  return join(dir, 'blobs', 'sha256', digestHex(d));
}

function tempName(dir: string): string {
  return join(dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/** Writes `data` to `path` through a temporary file in `tmpDir` and a rename. */
async function writeAtomic(tmpDir: string, path: string, data: Buffer | string): Promise<void> {
  const tmp = tempName(tmpDir);
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/** Fails the stream at its end (or as soon as it is too long) if the bytes do not match `desc`. */
class VerifyingStream extends Transform {
  private readonly counter = new Sha256Counter();
  constructor(
    private readonly desc: Descriptor,
    private readonly what: string,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.counter.update(chunk);
    if (this.counter.bytes > this.desc.size) {
      cb(new LayoutError(`${this.what}: blob is larger than the ${this.desc.size} bytes its descriptor declares`));
      return;
    }
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    if (this.counter.bytes !== this.desc.size) {
      cb(new LayoutError(`${this.what}: blob has ${this.counter.bytes} bytes, its descriptor declares ${this.desc.size}`));
      return;
    }
    const actual = this.counter.digest();
    if (actual !== this.desc.digest) {
      cb(new LayoutError(`${this.what}: digest mismatch: expected ${this.desc.digest}, got ${actual}`));
      return;
    }
    cb();
  }
}

async function readLayoutVersion(dir: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, LAYOUT_FILE), 'utf8');
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  let version: unknown;
  try {
    version = (JSON.parse(text) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
  } catch {
    throw new LayoutError(`${join(dir, LAYOUT_FILE)}: not valid JSON`);
  }
  if (version !== LAYOUT_VERSION) throw new LayoutError(`${join(dir, LAYOUT_FILE)}: unsupported imageLayoutVersion ${JSON.stringify(version)} (expected "${LAYOUT_VERSION}")`);
  return version;
}

async function readIndexFile(dir: string): Promise<{ index: ImageIndex; bytes: Buffer } | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(join(dir, INDEX_FILE));
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  return { index: parseIndex(bytes, undefined, `${join(dir, INDEX_FILE)}`), bytes };
}

function refName(d: Descriptor): string | undefined {
  return d.annotations?.[Annotation.ociRefName];
}

export class OciLayoutSource implements ImageSource {
  private constructor(
    readonly dir: string,
    readonly description: string,
    private readonly tag: string | undefined,
    private readonly index: ImageIndex,
    private readonly indexBytes: Buffer,
  ) {}

  /** Opens an existing layout; `tag` selects the index.json entry whose ref.name annotation equals it. */
  static async open(dir: string, tag?: string): Promise<OciLayoutSource> {
    const abs = resolve(dir);
    const description = `oci:${dir}${tag !== undefined ? `:${tag}` : ''}`;
    let st;
    try {
      st = await stat(abs);
    } catch (err) {
      if (isNotFound(err)) throw new LayoutError(`${description}: directory ${dir} does not exist`);
      throw err;
    }
    if (!st.isDirectory()) throw new LayoutError(`${description}: ${dir} is not a directory`);
    if ((await readLayoutVersion(abs)) === undefined) throw new LayoutError(`${description}: ${dir} is not an OCI layout (no ${LAYOUT_FILE} file)`);
    const found = await readIndexFile(abs);
    if (!found) throw new LayoutError(`${description}: ${dir} has no ${INDEX_FILE}`);
    return new OciLayoutSource(abs, description, tag, found.index, found.bytes);
  }

  /** The ref.name of every entry of index.json (the tags `oci:DIR:TAG` can name). */
  tags(): string[] {
    return this.index.manifests.map(refName).filter((t): t is string => t !== undefined);
  }

  async resolveRoot(): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
    const entries = this.index.manifests;
    const tagList = () => (this.tags().length > 0 ? ` (tags: ${this.tags().join(', ')})` : '');
    let descriptor: Descriptor;
    if (this.tag !== undefined) {
      const hits = entries.filter((d) => refName(d) === this.tag);
      if (hits.length === 0) throw new LayoutError(`${this.description}: no image tagged ${JSON.stringify(this.tag)} in ${INDEX_FILE}${tagList()}`);
      if (hits.length > 1 && new Set(hits.map((d) => d.digest)).size > 1) {
        throw new LayoutError(`${this.description}: ${INDEX_FILE} has ${hits.length} different images tagged ${JSON.stringify(this.tag)}`);
      }
      descriptor = hits[0]!;
    } else if (entries.length === 1) {
      descriptor = entries[0]!;
    } else if (entries.length > 1 && this.tags().length === 0) {
      // An untagged multi-manifest index.json (e.g. BuildKit's OCI exporter): it is itself the image index.
      return {
        descriptor: { mediaType: MediaType.ociIndex, digest: sha256(this.indexBytes), size: this.indexBytes.length },
        bytes: this.indexBytes,
      };
    } else {
      throw new LayoutError(`${this.description}: ${INDEX_FILE} has ${entries.length} images; name one as oci:DIR:TAG${tagList()}`);
    }
    return { descriptor, bytes: await this.fetchJSONBytes(descriptor) };
  }

  private what(desc: Descriptor): string {
    return `${this.description}: blob ${desc.digest}`;
  }

  private async statBlob(desc: Descriptor): Promise<string> {
    const path = blobPath(this.dir, desc.digest);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (err) {
      if (isNotFound(err)) throw new LayoutError(`${this.what(desc)}: missing from ${join(this.dir, 'blobs/sha256')}`);
      throw err;
    }
    if (size !== desc.size) throw new LayoutError(`${this.what(desc)}: file has ${size} bytes, its descriptor declares ${desc.size}`);
    return path;
  }

  async fetchJSONBytes(desc: Descriptor): Promise<Buffer> {
    if (desc.size > MAX_JSON_BYTES) throw new LayoutError(`${this.what(desc)}: ${desc.size} bytes is too large for a manifest or config`);
    const path = await this.statBlob(desc);
    const bytes = await readFile(path);
    const actual = sha256(bytes);
    if (bytes.length !== desc.size) throw new LayoutError(`${this.what(desc)}: file has ${bytes.length} bytes, its descriptor declares ${desc.size}`);
    if (actual !== desc.digest) throw new LayoutError(`${this.what(desc)}: digest mismatch: expected ${desc.digest}, got ${actual}`);
    return bytes;
  }

  async openBlobStream(desc: Descriptor): Promise<Readable> {
    const path = await this.statBlob(desc);
    const verify = new VerifyingStream(desc, this.what(desc));
    const file = createReadStream(path);
    file.once('error', (err) => verify.destroy(err));
    return file.pipe(verify);
  }

  async openBlobSource(desc: Descriptor): Promise<BlobSource> {
    return FileBlob.open(await this.statBlob(desc));
  }

  async close(): Promise<void> {}
}

const LOCK_FILE = 'index.json.lock';
/** A lock older than this is taken to belong to a process that died while holding it. */
const STALE_LOCK_MS = 30_000;

/**
 * Serialises read-modify-write updates of index.json between processes writing tags into the same
 * layout (two conversions into one directory must not lose each other's tag).
 */
async function withIndexLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(dir, LOCK_FILE);
  const deadline = Date.now() + 2 * STALE_LOCK_MS;
  for (;;) {
    try {
      await writeFile(lock, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = await stat(lock).then((st) => Date.now() - st.mtimeMs, () => 0);
      if (age > STALE_LOCK_MS) await rm(lock, { force: true });
      else if (Date.now() > deadline) throw new LayoutError(`${dir}: ${LOCK_FILE} is held by another writer; remove it if no conversion is running`);
      else await new Promise((r) => setTimeout(r, 20 + Math.random() * 30));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}

export class OciLayoutDestination implements ImageDestination {
  private constructor(
    readonly dir: string,
    readonly description: string,
    private readonly tag: string | undefined,
  ) {}

  /**
   * Opens (creating if needed) a layout to write into. An existing directory must be empty or
   * already a layout: we never mix blobs into an unrelated directory.
   */
  static async open(dir: string, tag?: string): Promise<OciLayoutDestination> {
    const abs = resolve(dir);
    const description = `oci:${dir}${tag !== undefined ? `:${tag}` : ''}`;
    let existing: string[] = [];
    try {
      existing = await readdir(abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') throw new LayoutError(`${description}: ${dir} is not a directory`);
      if (code !== 'ENOENT') throw err;
    }
    if ((await readLayoutVersion(abs)) === undefined) {
      if (existing.length > 0) throw new LayoutError(`${description}: ${dir} exists, is not empty and is not an OCI layout (no ${LAYOUT_FILE} file)`);
      await mkdir(abs, { recursive: true });
      await writeAtomic(abs, join(abs, LAYOUT_FILE), JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION }));
    }
    await mkdir(join(abs, 'blobs', 'sha256'), { recursive: true });
    return new OciLayoutDestination(abs, description, tag);
  }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    try {
      return (await stat(blobPath(this.dir, desc.digest))).size === desc.size;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async putBlobFile(desc: Descriptor, file: string): Promise<void> {
    const size = (await stat(file)).size;
    if (size !== desc.size) throw new LayoutError(`${this.description}: ${file} has ${size} bytes, descriptor ${desc.digest} declares ${desc.size}`);
    if (await this.hasBlob(desc)) return;
    const target = blobPath(this.dir, desc.digest);
    const tmp = tempName(join(this.dir, 'blobs', 'sha256'));
    try {
      // A hard link costs nothing when the file is on the same filesystem; copy otherwise.
      await link(file, tmp).catch(() => copyFile(file, tmp));
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async putManifest(desc: Descriptor, bytes: Buffer): Promise<void> {
    const actual = sha256(bytes);
    if (actual !== desc.digest || bytes.length !== desc.size) {
      throw new LayoutError(`${this.description}: manifest bytes (${actual}, ${bytes.length} bytes) do not match descriptor ${desc.digest} (${desc.size} bytes)`);
    }
    if (await this.hasBlob(desc)) return;
    await writeAtomic(join(this.dir, 'blobs', 'sha256'), blobPath(this.dir, desc.digest), bytes);
  }

  /** Adds `desc` to index.json under the tag (replacing the entry with the same ref.name; untagged replaces untagged entries). */
  async setRoot(desc: Descriptor): Promise<void> {
    if (!(await this.hasBlob(desc))) throw new LayoutError(`${this.description}: root ${desc.digest} was not stored before setRoot`);
    await withIndexLock(this.dir, () => this.updateIndex(desc));
  }

  private async updateIndex(desc: Descriptor): Promise<void> {
    const existing = await readIndexFile(this.dir);
    const kept = (existing?.index.manifests ?? []).filter((d) => refName(d) !== this.tag);
    const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    if (desc.platform) entry.platform = desc.platform;
    const annotations = { ...desc.annotations };
    if (this.tag !== undefined) annotations[Annotation.ociRefName] = this.tag;
    if (Object.keys(annotations).length > 0) entry.annotations = annotations;
    const index: ImageIndex = { ...existing?.index, schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [...kept, entry] };
    await writeAtomic(this.dir, join(this.dir, INDEX_FILE), `${JSON.stringify(index, null, 2)}\n`);
  }

  async close(): Promise<void> {}
}
