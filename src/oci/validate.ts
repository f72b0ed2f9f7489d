// Parses and validates manifests, indexes and configs (OCI and Docker v2.2). Every error names the
// field that is wrong as a path, e.g. `manifest.layers[2].digest: not a sha256 digest: "x"`.
import { isDigest, type Digest } from './digest.js';
import { INDEX_TYPES, MANIFEST_TYPES } from './mediatypes.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from './types.js';

export class ValidationError extends Error {
  constructor(
    /** Path of the offending field, e.g. `manifest.layers[2].digest`. */
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

// RFC 6838 type/subtype, with the `+suffix` and parameters OCI uses.
const MEDIA_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(?:\s*;.*)?$/;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function object(v: unknown, field: string): Json {
  if (!isObject(v)) throw new ValidationError(field, `expected an object, got ${show(v)}`);
  return v;
}

function string(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new ValidationError(field, `expected a string, got ${show(v)}`);
  return v;
}

function optionalString(obj: Json, key: string, field: string): void {
  if (obj[key] !== undefined) string(obj[key], `${field}.${key}`);
}

function stringArray(v: unknown, field: string): string[] {
  if (!Array.isArray(v)) throw new ValidationError(field, `expected an array of strings, got ${show(v)}`);
  v.forEach((s, i) => string(s, `${field}[${i}]`));
  return v as string[];
}

function annotations(v: unknown, field: string): void {
  const obj = object(v, field);
  for (const [k, val] of Object.entries(obj)) string(val, `${field}[${JSON.stringify(k)}]`);
}

function mediaType(v: unknown, field: string): string {
  const s = string(v, field);
  if (!MEDIA_TYPE_RE.test(s)) throw new ValidationError(field, `not a media type: ${show(s)}`);
  return s;
}

function digest(v: unknown, field: string): Digest {
  if (!isDigest(v)) throw new ValidationError(field, `not a sha256 digest: ${show(v)}`);
  return v;
}

function parseJSON(bytes: Buffer | string, what: string): unknown {
  try {
    return JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
  } catch (err) {
    throw new ValidationError(what, `not valid JSON: ${(err as Error).message}`);
  }
}

function schemaVersion(obj: Json, field: string): void {
  if (obj.schemaVersion !== 2) throw new ValidationError(`${field}.schemaVersion`, `expected 2, got ${show(obj.schemaVersion)}`);
}

export function validatePlatform(v: unknown, field: string): Platform {
  const p = object(v, field);
  string(p.architecture, `${field}.architecture`);
  string(p.os, `${field}.os`);
  optionalString(p, 'os.version', field);
  optionalString(p, 'variant', field);
  if (p['os.features'] !== undefined) stringArray(p['os.features'], `${field}["os.features"]`);
  if (p.features !== undefined) stringArray(p.features, `${field}.features`);
  return p as unknown as Platform;
}

export function validateDescriptor(v: unknown, field: string): Descriptor {
  const d = object(v, field);
  mediaType(d.mediaType, `${field}.mediaType`);
  digest(d.digest, `${field}.digest`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new ValidationError(`${field}.size`, `expected a non-negative integer, got ${show(d.size)}`);
  }
  if (d.urls !== undefined) stringArray(d.urls, `${field}.urls`);
  if (d.annotations !== undefined) annotations(d.annotations, `${field}.annotations`);
  if (d.data !== undefined) {
    const data = string(d.data, `${field}.data`);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(data) || data.length % 4 !== 0) throw new ValidationError(`${field}.data`, 'not base64');
    if (Buffer.from(data, 'base64').length !== d.size) throw new ValidationError(`${field}.data`, `decodes to a length other than size ${d.size}`);
  }
  if (d.artifactType !== undefined) mediaType(d.artifactType, `${field}.artifactType`);
  if (d.platform !== undefined) validatePlatform(d.platform, `${field}.platform`);
  return d as unknown as Descriptor;
}

function descriptors(v: unknown, field: string): Descriptor[] {
  if (!Array.isArray(v)) throw new ValidationError(field, `expected an array of descriptors, got ${show(v)}`);
  return v.map((d, i) => validateDescriptor(d, `${field}[${i}]`));
}

function checkDeclaredType(obj: Json, expected: string | undefined, allowed: readonly string[], field: string): void {
  const declared = obj.mediaType;
  if (declared === undefined) return;
  const mt = mediaType(declared, `${field}.mediaType`);
  if (!allowed.includes(mt)) throw new ValidationError(`${field}.mediaType`, `${show(mt)} is not one of ${allowed.join(', ')}`);
  if (expected !== undefined && mt !== expected) throw new ValidationError(`${field}.mediaType`, `${show(mt)} disagrees with the descriptor's ${show(expected)}`);
}

/**
 * Validates an image manifest (OCI or Docker v2.2). `descriptorType`, when known, is the media
 * type the manifest was referenced with; the document must not contradict it.
 */
export function parseManifest(bytes: Buffer | string, descriptorType?: string, field = 'manifest'): ImageManifest {
  const m = object(parseJSON(bytes, field), field);
  schemaVersion(m, field);
  checkDeclaredType(m, descriptorType, MANIFEST_TYPES, field);
  if (m.manifests !== undefined) throw new ValidationError(`${field}.manifests`, 'present in a manifest (is this an index?)');
  // Any config media type is valid here (Docker plugins, OCI artifacts); whether the manifest is a
  // container image is for the caller to decide.
  validateDescriptor(m.config, `${field}.config`);
  descriptors(m.layers, `${field}.layers`);
  if (m.subject !== undefined) validateDescriptor(m.subject, `${field}.subject`);
  if (m.annotations !== undefined) annotations(m.annotations, `${field}.annotations`);
  if (m.artifactType !== undefined) mediaType(m.artifactType, `${field}.artifactType`);
  return m as unknown as ImageManifest;
}

/** Validates an image index (OCI) or manifest list (Docker v2.2). */
export function parseIndex(bytes: Buffer | string, descriptorType?: string, field = 'index'): ImageIndex {
  const ix = object(parseJSON(bytes, field), field);
  schemaVersion(ix, field);
  checkDeclaredType(ix, descriptorType, INDEX_TYPES, field);
  if (ix.config !== undefined || ix.layers !== undefined) throw new ValidationError(field, 'has config/layers (is this a manifest?)');
  descriptors(ix.manifests, `${field}.manifests`);
  if (ix.subject !== undefined) validateDescriptor(ix.subject, `${field}.subject`);
  if (ix.annotations !== undefined) annotations(ix.annotations, `${field}.annotations`);
  if (ix.artifactType !== undefined) mediaType(ix.artifactType, `${field}.artifactType`);
  return ix as unknown as ImageIndex;
}

export type ManifestOrIndex = { kind: 'manifest'; manifest: ImageManifest } | { kind: 'index'; index: ImageIndex };

/** Parses a document that may be a manifest or an index: by its media type (or the descriptor's), else by its shape. */
export function parseManifestOrIndex(bytes: Buffer | string, descriptorType?: string, field?: string): ManifestOrIndex {
  const probe = parseJSON(bytes, field ?? 'manifest');
  const declared = isObject(probe) && typeof probe.mediaType === 'string' ? probe.mediaType : descriptorType;
  let isIndex: boolean;
  if (declared !== undefined && INDEX_TYPES.includes(declared)) isIndex = true;
  else if (declared !== undefined && MANIFEST_TYPES.includes(declared)) isIndex = false;
  else if (declared !== undefined) throw new ValidationError(`${field ?? 'manifest'}.mediaType`, `not a manifest or index media type: ${show(declared)}`);
  else isIndex = isObject(probe) && Array.isArray(probe.manifests);
  return isIndex
    ? { kind: 'index', index: parseIndex(bytes, descriptorType, field ?? 'index') }
    : { kind: 'manifest', manifest: parseManifest(bytes, descriptorType, field ?? 'manifest') };
}

/** Validates an image config (OCI or Docker): architecture, os, rootfs.diff_ids. */
export function parseConfig(bytes: Buffer | string, field = 'config'): ImageConfig {
  const c = object(parseJSON(bytes, field), field);
  string(c.architecture, `${field}.architecture`);
  string(c.os, `${field}.os`);
  optionalString(c, 'variant', field);
  optionalString(c, 'os.version', field);
  if (c['os.features'] !== undefined) stringArray(c['os.features'], `${field}["os.features"]`);
  const rootfs = object(c.rootfs, `${field}.rootfs`);
  if (rootfs.type !== 'layers') throw new ValidationError(`${field}.rootfs.type`, `expected "layers", got ${show(rootfs.type)}`);
  if (!Array.isArray(rootfs.diff_ids)) throw new ValidationError(`${field}.rootfs.diff_ids`, `expected an array of digests, got ${show(rootfs.diff_ids)}`);
  rootfs.diff_ids.forEach((d, i) => digest(d, `${field}.rootfs.diff_ids[${i}]`));
  if (c.config !== undefined && c.config !== null) object(c.config, `${field}.config`);
  if (c.history !== undefined) {
    if (!Array.isArray(c.history)) throw new ValidationError(`${field}.history`, `expected an array, got ${show(c.history)}`);
    c.history.forEach((h, i) => object(h, `${field}.history[${i}]`));
  }
  return c as unknown as ImageConfig;
}
