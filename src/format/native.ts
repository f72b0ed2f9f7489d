// Starling's native addon (native/), typed: the gzip checkpoint functions (gzip_index.cc), sha256
// on the libuv pool (sha256.cc), exiting without Node's teardown (exit.cc) and mount(2) (mount.cc).
// Loaded on first use, so that the rest of Starling works on a machine where it was not built; using
// the gzip or mount functions there is a clear error.
import { createRequire } from 'node:module';
import { sha256, type Digest } from '../oci/digest.js';

/** Where inflate can resume: at a deflate block boundary, `bits` bits before byte `in` (formats: docs/gzip-index.md). */
export interface NativeCheckpoint {
  /** Compressed bytes before the checkpoint; when bits > 0 the block starts inside byte in - 1. */
  in: number;
  /** Uncompressed bytes before the checkpoint. */
  out: number;
  /** Bits of byte in - 1 that belong to the block (0-7). */
  bits: number;
  /** The last (up to) 32 KiB of uncompressed output of the checkpoint's member. */
  window: Buffer;
}

export interface InflateStep {
  /** Input bytes used; the rest must be passed again. */
  consumed: number;
  output: Buffer;
  checkpoints: NativeCheckpoint[];
  /** Stopped between gzip members: the blob may end here. */
  end: boolean;
}

export interface GzipIndexer {
  /**
   * Inflates from where the previous call stopped until `input` is used up or `outCapacity` bytes
   * came out. `last`: no input follows, so a blob ending inside a member is an error. Calls must not overlap.
   */
  inflate(input: Buffer, outCapacity: number, last: boolean): Promise<InflateStep>;
}

interface Addon {
  GzipIndexer: new (span: number) => GzipIndexer;
  extractSpan(input: Buffer, bits: number, window: Buffer, want: number): Promise<Buffer>;
  inflateChunk(input: Buffer, want: number, hashFrom: number): Promise<[Buffer, Buffer]>;
  zlibVersion: string;
  sha256(data: Buffer): Promise<Buffer>;
  exitNow(code: number): never;
  mount(source: string, target: string, fstype: string, data: string): Promise<void>;
  unmount(target: string, detach: boolean): Promise<void>;
}

// The same relative path from src/format/ (tsx) and dist/format/ (built).
const ADDON = '../../native/build/Release/starling_native.node';

export class NativeAddonError extends Error {}

let addon: Addon | undefined;

export function nativeAddon(): Addon {
  if (addon) return addon;
  try {
    addon = createRequire(import.meta.url)(ADDON) as Addon;
  } catch (err) {
    throw new NativeAddonError(
      `Starling's native addon (native/) is not built or does not load: ${(err as Error).message.split('\n')[0]}; run \`npm ci\` (or \`node scripts/build-native.js\`) after ./scripts/setup.sh`,
    );
  }
  return addon;
}

/** Below this size a chunk is hashed on the JS thread: the trip to the pool costs more than the hash. */
const POOL_HASH_MIN = 64 << 10;

/** The addon for the chunk path, looked up once (not per chunk); null where it does not load. */
let chunkAddon: Addon | null | undefined;

function addonIfLoaded(): Addon | null {
  if (chunkAddon === undefined) {
    try {
      chunkAddon = nativeAddon();
    } catch {
      chunkAddon = null;
    }
  }
  return chunkAddon;
}

/**
 * sha256 of a chunk on the chunk path: on the libuv pool through the addon for large chunks, so that
 * the JS thread (which serves every FUSE request) does not spend ~2.5 ms per 4 MiB hashing; on the
 * thread for small ones, and where the addon is not built.
 */
export async function chunkDigest(data: Buffer): Promise<Digest> {
  const native = data.length < POOL_HASH_MIN ? null : addonIfLoaded();
  return native ? `sha256:${(await native.sha256(data)).toString('hex')}` : sha256(data);
}

/**
 * The first `want` bytes the gzip members in `compressed` inflate to, and the sha256 of those from
 * `hashFrom` on, in one pool job; undefined where the addon does not load. Node's zlib stream cost
 * the JS thread a stream, its events and an output buffer of at least 64 KiB per chunk, and a
 * second pool trip for the hash: a cold `import numpy, pandas` (~1,100 chunks) spent ~0.5 s of the
 * thread that serves FUSE in them, and their garbage.
 */
export function inflateChunk(compressed: Buffer, want: number, hashFrom: number): Promise<[Buffer, Digest]> | undefined {
  const native = addonIfLoaded();
  return native?.inflateChunk(compressed, want, hashFrom).then(([data, digest]) => [data, `sha256:${digest.toString('hex')}` as Digest]);
}

/**
 * Ends this process with `code` at once, without Node's teardown (~25 ms): for a command that has
 * written all it says (stdout and stderr are written synchronously to files, pipes and terminals on
 * Linux) and leaves nothing running in this process. Returns only where the addon does not load.
 */
export function exitNow(code: number): void {
  let addon: Addon;
  try {
    addon = nativeAddon();
  } catch {
    return;
  }
  addon.exitNow(code);
}

/** mount(2) copies at most a page of options; a longer string would reach the filesystem cut short. */
const MOUNT_DATA_MAX = 4095;

/** mount(2) of `fstype` on `target` with options `data`, on the libuv pool (never the JS thread: see mount.cc). */
export async function mountSyscall(source: string, target: string, fstype: string, data: string): Promise<void> {
  const bytes = Buffer.byteLength(data);
  if (bytes > MOUNT_DATA_MAX) throw new Error(`mount -t ${fstype} on ${target}: ${bytes} bytes of options, more than the ${MOUNT_DATA_MAX} mount(2) takes`);
  await nativeAddon().mount(source, target, fstype, data);
}

/** umount2(2) of `target`, lazily (MNT_DETACH) with `detach`, on the libuv pool. */
export function unmountSyscall(target: string, detach: boolean): Promise<void> {
  return nativeAddon().unmount(target, detach);
}
