// One reference syntax for every command: `oci:DIR[:TAG]` or `docker://[HOST[:PORT]/]NAME[:TAG][@DIGEST]`.
// Opens the matching ImageSource / ImageDestination so callers never branch on the transport.
//
// Ownership: the `oci:` half is implemented in src/oci/layout.ts (OciLayoutSource/OciLayoutDestination),
// the `docker:` half in src/registry/image.ts (openRegistrySource/openRegistryDestination).
import { OciLayoutDestination, OciLayoutSource } from '../oci/layout.js';
import type { ImageDestination, ImageSource } from '../oci/store.js';
import { openRegistryDestination, openRegistrySource, type RegistryOptions } from './image.js';

export class TransportError extends Error {}

export type ImageReference = { transport: 'oci'; dir: string; tag?: string } | { transport: 'docker'; ref: string };

// The OCI ref.name a `TAG` may be here: the distribution tag grammar (no '/', so never part of a path).
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

const SYNTAX = 'expected oci:DIR[:TAG] or docker://[HOST[:PORT]/]NAME[:TAG][@DIGEST]';

/**
 * Splits `oci:DIR[:TAG]`. DIR may itself contain ':'; the rule is: the text after the LAST ':' is
 * the tag when it is a valid tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`, so never containing '/'),
 * otherwise it is part of DIR. A trailing ':' means "no tag" (`oci:/data/a:b:` is the directory
 * `/data/a:b`), the way to name a directory whose last ':'-part looks like a tag.
 */
export function parseOciReference(ref: string): { dir: string; tag?: string } {
  if (!ref.startsWith('oci:')) throw new TransportError(`not an oci: reference: ${JSON.stringify(ref)}`);
  const rest = ref.slice('oci:'.length);
  const colon = rest.lastIndexOf(':');
  let dir = rest;
  let tag: string | undefined;
  if (colon >= 0) {
    const after = rest.slice(colon + 1);
    if (after === '') dir = rest.slice(0, colon);
    else if (TAG_RE.test(after)) {
      dir = rest.slice(0, colon);
      tag = after;
    }
  }
  if (dir === '') throw new TransportError(`${JSON.stringify(ref)}: no directory (${SYNTAX})`);
  if (dir.includes('\0')) throw new TransportError(`${JSON.stringify(ref)}: NUL in the directory name`);
  return tag === undefined ? { dir } : { dir, tag };
}

export function parseImageReference(ref: string): ImageReference {
  if (ref.startsWith('oci:')) return { transport: 'oci', ...parseOciReference(ref) };
  if (ref.startsWith('docker://')) return { transport: 'docker', ref };
  const scheme = /^([a-z][a-z0-9+-]*):/i.exec(ref)?.[1];
  const why = scheme ? `unsupported transport "${scheme}:"` : 'no transport';
  throw new TransportError(`${JSON.stringify(ref)}: ${why} (${SYNTAX})`);
}

export async function openImageSource(ref: string, opts?: RegistryOptions): Promise<ImageSource> {
  const r = parseImageReference(ref);
  return r.transport === 'oci' ? OciLayoutSource.open(r.dir, r.tag) : openRegistrySource(r.ref, opts);
}

export async function openImageDestination(ref: string, opts?: RegistryOptions): Promise<ImageDestination> {
  const r = parseImageReference(ref);
  return r.transport === 'oci' ? OciLayoutDestination.open(r.dir, r.tag) : openRegistryDestination(r.ref, opts);
}
