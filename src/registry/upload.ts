// Blob uploads (distribution-spec "Pushing blobs"): cross-repository mount, monolithic PUT, and
// chunked PATCHes for large blobs, resuming from the registry's own record of what it has when a
// chunk's fate is unknown (416 after a retried PATCH).
import { createReadStream } from 'node:fs';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/types.js';
import { header, type RegistryClient, type RegistryResponse } from './client.js';
import { RegistryError } from './errors.js';

export interface UploadOptions {
  /** Blobs larger than this go up in PATCH chunks of this size (default 64 MiB). */
  chunkSize?: number;
  /** Repositories of the same registry that hold the blob: tried for a cross-repository mount first. */
  mountFrom?: readonly string[];
}

export interface UploadResult {
  /** `mounted` = the registry linked the blob from another repository, no bytes sent. */
  how: 'mounted' | 'monolithic' | 'chunked';
  requests: number;
}

/** Uploads `file` (whose content is `desc`) into `repository`. The caller has checked it is not there yet. */
export async function uploadBlobFile(client: RegistryClient, repository: string, desc: Pick<Descriptor, 'digest' | 'size'>, file: string, opts: UploadOptions = {}): Promise<UploadResult> {
  const object = `blob ${desc.digest}`;
  const ctx = client.context(repository, object);
  const counter = { requests: 0 };
  const base = { repository, object, push: true, counter } as const;
  let location: URL | undefined;
  for (const from of opts.mountFrom ?? []) {
    if (from === repository) continue;
    const res = await client.fetch({
      ...base,
      method: 'POST',
      path: `blobs/uploads/?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(from)}`,
      extraScopes: [`repository:${from}:pull`],
      expect: [201, 202],
    });
    await res.body.dump();
    if (res.status === 201) return { how: 'mounted', requests: counter.requests };
    location = uploadLocation(client, res, ctx); // not mountable: the registry opened an upload instead
    break;
  }
  if (!location) {
    const res = await client.fetch({ ...base, method: 'POST', path: 'blobs/uploads/', expect: [202] });
    await res.body.dump();
    location = uploadLocation(client, res, ctx);
  }
  const chunkSize = opts.chunkSize ?? 64 << 20;
  let how: UploadResult['how'] = 'monolithic';
  if (desc.size > chunkSize) {
    how = 'chunked';
    location = await patchChunks(client, base, location, desc.size, chunkSize, file, ctx);
  }
  const final = withDigest(location, desc.digest);
  const monolithic = how === 'monolithic';
  const res = await client.fetch({
    ...base,
    method: 'PUT',
    url: final.href,
    headers: monolithic ? { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) } : { 'content-length': '0' },
    ...(monolithic ? { body: () => (desc.size === 0 ? Buffer.alloc(0) : createReadStream(file)) } : {}),
    expect: [201, 204],
  });
  await res.body.dump();
  const stored = header(res.headers, 'docker-content-digest');
  if (stored && stored !== desc.digest) throw new RegistryError(ctx, `registry stored the upload as ${stored}`);
  return { how, requests: counter.requests };
}

async function patchChunks(
  client: RegistryClient,
  base: { repository: string; object: string; push: true; counter: { requests: number } },
  start: URL,
  size: number,
  chunkSize: number,
  file: string,
  ctx: ReturnType<RegistryClient['context']>,
): Promise<URL> {
  let location = start;
  let offset = 0;
  while (offset < size) {
    const end = Math.min(size, offset + chunkSize);
    const from = offset;
    const res = await client.fetch({
      ...base,
      method: 'PATCH',
      url: location.href,
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${from}-${end - 1}`, 'content-length': String(end - from) },
      body: () => createReadStream(file, { start: from, end: end - 1 }),
      expect: [202, 416],
    });
    await res.body.dump();
    if (res.status === 416) {
      // A retried PATCH whose first try landed after all: ask the registry where the upload stands.
      const status = await client.fetch({ ...base, method: 'GET', url: location.href, expect: [204] });
      await status.body.dump();
      location = uploadLocation(client, status, ctx);
      offset = rangeEnd(status, ctx);
      continue;
    }
    location = uploadLocation(client, res, ctx);
    offset = header(res.headers, 'range') ? rangeEnd(res, ctx) : end;
    if (offset !== end) throw new RegistryError(ctx, `chunk ${from}-${end - 1}: the registry reports ${offset} bytes received`);
  }
  return location;
}

/** `Range: 0-N` of an upload → N+1 bytes received. */
function rangeEnd(res: RegistryResponse, ctx: ReturnType<RegistryClient['context']>): number {
  const m = /^(?:bytes=)?0-(\d+)$/.exec(header(res.headers, 'range') ?? '');
  if (!m) throw new RegistryError(ctx, `upload status without a valid Range header: ${JSON.stringify(header(res.headers, 'range') ?? '')}`);
  return Number(m[1]) + 1;
}

function uploadLocation(client: RegistryClient, res: RegistryResponse, ctx: ReturnType<RegistryClient['context']>): URL {
  const loc = header(res.headers, 'location');
  if (!loc) throw new RegistryError(ctx, `upload answer (HTTP ${res.status}) without a Location header`);
  return new URL(loc, client.baseUrl);
}

function withDigest(location: URL, digest: Digest): URL {
  const u = new URL(location);
  u.searchParams.set('digest', digest);
  return u;
}
