// The prefetch profile (docs/prefetch-profile.md): per layer of an image, the files a workload read,
// in first-read order, with the byte ranges it read. Built from a `starling record` trace, serialised
// as stable JSON, and parsed back as untrusted input: bounded in size, paths in normal form, ranges
// sane, layer digests well-formed. Which profile an image uses is chosen here too.
import { TarEntryError, normalizeEntryPath } from '../format/tar-entry.js';
import { isDigest, type Digest } from '../oci/digest.js';
import { Annotation } from '../oci/mediatypes.js';
import type { Descriptor, ImageManifest } from '../oci/types.js';

/** [start, end) in a file's content. */
export type ByteRange = [number, number];

export interface ProfileFile {
  /** Relative to the image root, normalised (`usr/bin/python3`). */
  path: string;
  /** What was read, sorted and disjoint. */
  ranges: ByteRange[];
}

export interface PrefetchProfile {
  version: 1;
  /** Layers in manifest order, each with its files in first-read order; a layer nothing was read from is left out. */
  layers: Array<{ digest: Digest; files: ProfileFile[] }>;
}

export class ProfileError extends Error {}

export const MAX_PROFILE_BYTES = 4 << 20;
const MAX_FILES = 100_000;
const MAX_RANGES_PER_FILE = 64;
const MAX_PATH_BYTES = 4096;
const MAX_NAME_LENGTH = 128;
/**
 * Ranges are rounded out to this grain when a profile is built: the kernel reads a FUSE file in
 * windows of up to 128 KiB (its read-ahead), and where a page fault of a mapped executable lands
 * varies from run to run, so a replay may read a little beside what was recorded (seen: a 28 KiB
 * gap between two recorded ranges of a static binary, read on the next run).
 */
const RANGE_GRAIN = 128 << 10;

/** Adds [start, end) to sorted, disjoint `ranges`, merging what it touches. */
export function addRange(ranges: ByteRange[], start: number, end: number): void {
  if (end <= start) return;
  let i = 0;
  while (i < ranges.length && ranges[i]![1] < start) i++;
  let j = i;
  while (j < ranges.length && ranges[j]![0] <= end) {
    start = Math.min(start, ranges[j]![0]);
    end = Math.max(end, ranges[j]![1]);
    j++;
  }
  ranges.splice(i, j - i, [start, end]);
}

/**
 * The ranges rounded out to RANGE_GRAIN, then at most `max` of them: the smallest gaps are closed
 * first (a profile may prefetch a little more, never less).
 */
function coarsen(ranges: readonly ByteRange[], size: number, max: number): ByteRange[] {
  const out: ByteRange[] = [];
  for (const [start, end] of ranges) addRange(out, start - (start % RANGE_GRAIN), Math.min(size, Math.ceil(end / RANGE_GRAIN) * RANGE_GRAIN));
  while (out.length > max) {
    let best = 1;
    for (let k = 2; k < out.length; k++) if (out[k]![0] - out[k - 1]![1] < out[best]![0] - out[best - 1]![1]) best = k;
    out.splice(best - 1, 2, [out[best - 1]![0], out[best]![1]]);
  }
  return out;
}

/** A profile name: what `--name` and the name annotation may hold. */
export function checkProfileName(name: string): string {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    throw new ProfileError(`profile name ${JSON.stringify(name)}: use 1-${MAX_NAME_LENGTH} letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  return name;
}

/**
 * A profile from a trace: `reads` maps absolute paths, in first-read order, to their sizes and the ranges read;
 * each file goes to the top-most of `layers` (manifest order) that holds its path, which is the
 * layer a merged mount served it from. Paths no layer holds are returned in `unplaced`.
 */
export function buildProfile(reads: ReadonlyMap<string, { size: number; ranges: readonly ByteRange[] }>, layers: ReadonlyArray<{ digest: Digest; has(path: string): boolean }>): { profile: PrefetchProfile; unplaced: string[] } {
  const byLayer = new Map<Digest, ProfileFile[]>();
  const unplaced: string[] = [];
  for (const [abs, { size, ranges }] of reads) {
    const path = normalizeEntryPath(abs, 'traced file');
    let top = layers.length - 1;
    while (top >= 0 && !layers[top]!.has(path)) top--;
    if (top < 0 || ranges.length === 0) {
      unplaced.push(abs);
      continue;
    }
    const digest = layers[top]!.digest;
    if (!byLayer.has(digest)) byLayer.set(digest, []);
    byLayer.get(digest)!.push({ path, ranges: coarsen(ranges, size, MAX_RANGES_PER_FILE) });
  }
  const order = [...new Set(layers.map((l) => l.digest))].filter((d) => byLayer.has(d));
  return { profile: { version: 1, layers: order.map((digest) => ({ digest, files: byLayer.get(digest)! })) }, unplaced };
}

/** The profile as its blob holds it: keys in a fixed order, no whitespace, so the same trace gives the same digest. */
export function serializeProfile(profile: PrefetchProfile): Buffer {
  const bytes = Buffer.from(JSON.stringify({ version: profile.version, layers: profile.layers.map((l) => ({ digest: l.digest, files: l.files.map((f) => ({ path: f.path, ranges: f.ranges })) })) }));
  if (bytes.length > MAX_PROFILE_BYTES) throw new ProfileError(`the profile is ${bytes.length} bytes, more than the ${MAX_PROFILE_BYTES} allowed`);
  return bytes;
}

function fail(field: string, problem: string): never {
  throw new ProfileError(`${field}: ${problem}`);
}

function array(v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) fail(field, 'expected an array');
  return v;
}

function record(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(field, 'expected an object');
  return v as Record<string, unknown>;
}

/** A profile path must already be in normal form: relative, no '.', '..', empty parts or NUL. */
function profilePath(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '' || Buffer.byteLength(v) > MAX_PATH_BYTES) fail(field, `expected a path of 1-${MAX_PATH_BYTES} bytes`);
  let normal: string;
  try {
    normal = normalizeEntryPath(v, 'profile');
  } catch (err) {
    if (err instanceof TarEntryError) fail(field, err.message);
    throw err;
  }
  if (normal !== v) fail(field, `${JSON.stringify(v.slice(0, 200))} is not a normalised relative path`);
  return v;
}

function ranges(v: unknown, field: string): ByteRange[] {
  const list = array(v, field);
  if (list.length === 0 || list.length > MAX_RANGES_PER_FILE) fail(field, `expected 1-${MAX_RANGES_PER_FILE} ranges`);
  let last = -1;
  return list.map((r, k) => {
    const [start, end] = array(r, `${field}[${k}]`);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || (start as number) <= last || (end as number) <= (start as number) || (r as unknown[]).length !== 2) {
      fail(`${field}[${k}]`, 'expected [start, end) with 0 <= start < end, sorted and disjoint');
    }
    last = end as number;
    return [start as number, end as number];
  });
}

/** Parses and validates a profile blob (untrusted). */
export function parseProfile(bytes: Buffer): PrefetchProfile {
  if (bytes.length > MAX_PROFILE_BYTES) fail('profile', `${bytes.length} bytes, more than the ${MAX_PROFILE_BYTES} allowed`);
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    fail('profile', `not JSON: ${(err as Error).message}`);
  }
  const top = record(doc, 'profile');
  if (top.version !== 1) fail('profile.version', `expected 1, got ${JSON.stringify(top.version)}`);
  let files = 0;
  const seen = new Set<string>();
  const layers = array(top.layers, 'profile.layers').map((l, i) => {
    const field = `profile.layers[${i}]`;
    const layer = record(l, field);
    if (!isDigest(layer.digest)) fail(`${field}.digest`, 'not a sha256 digest');
    if (seen.has(layer.digest)) fail(`${field}.digest`, `${layer.digest} appears twice`);
    seen.add(layer.digest);
    const paths = new Set<string>();
    const list = array(layer.files, `${field}.files`).map((f, k) => {
      if (++files > MAX_FILES) fail('profile', `more than ${MAX_FILES} files`);
      const file = record(f, `${field}.files[${k}]`);
      const path = profilePath(file.path, `${field}.files[${k}].path`);
      if (paths.has(path)) fail(`${field}.files[${k}].path`, `${JSON.stringify(path)} appears twice`);
      paths.add(path);
      return { path, ranges: ranges(file.ranges, `${field}.files[${k}].ranges`) };
    });
    return { digest: layer.digest, files: list };
  });
  return { version: 1, layers };
}

/** Every layer of the profile must be a layer of the image it is used for. */
export function checkProfileLayers(profile: PrefetchProfile, manifest: ImageManifest): void {
  const layers = new Set(manifest.layers.map((l) => l.digest));
  const foreign = profile.layers.find((l) => !layers.has(l.digest));
  if (foreign) throw new ProfileError(`layer ${foreign.digest} of the profile is not a layer of the image`);
}

/** The profiles a referrers list offers, newest first by creation time (only those named `name`, when given). */
export function rankProfiles(candidates: readonly Descriptor[], name?: string): Descriptor[] {
  const created = (d: Descriptor) => Date.parse(d.annotations?.[Annotation.ociCreated] ?? '') || -Infinity;
  return candidates
    .filter((d) => name === undefined || d.annotations?.[Annotation.starlingProfileName] === name)
    .sort((a, b) => created(b) - created(a) || (a.digest < b.digest ? -1 : 1));
}
