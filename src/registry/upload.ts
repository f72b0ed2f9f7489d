// Blob uploads (distribution-spec "Pushing blobs"): cross-repository mount, monolithic PUT, and
// chunked PATCHes for large blobs; a session lost to a dropped answer is started over.
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/types.js';
import type { RegistryClient, RegistryResponse } from './client.js';
import { header } from './headers.js';
import { RegistryError } from './errors.js';
import { isNetworkError } from './retry.js';

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

// An upload session whose state the client lost (an answer dropped after the registry acted on
// it) cannot be resumed reliably: Distribution signs the offset into the session URL. Start over.
const MAX_RESTARTS = 2;

/**
 * Uploads `file` (whose content is `desc`) into `repository`; `file` is a path, or the bytes
 * themselves for a small blob made in memory. The caller has checked it is not there yet.
 */
export async function uploadBlobFile(client: RegistryClient, repository: string, desc: Pick<Descriptor, 'digest' | 'size'>, file: string | Buffer, opts: UploadOptions = {}): Promise<UploadResult> {
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
  const chunkSize = opts.chunkSize ?? 64 << 20;
  const how: UploadResult['how'] = desc.size > chunkSize ? 'chunked' : 'monolithic';
  for (let restart = 0; ; restart++) {
    try {
      if (!location) {
        const res = await client.fetch({ ...base, method: 'POST', path: 'blobs/uploads/', expect: [202] });
        await res.body.dump();
        location = uploadLocation(client, res, ctx);
      }
      if (how === 'chunked') location = await patchChunks(client, base, location, desc.size, chunkSize, file, ctx);
      const res = await client.fetch({
        ...base,
        method: 'PUT',
        url: withDigest(location, desc.digest).href,
        headers: how === 'monolithic' ? { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) } : { 'content-length': '0' },
        ...(how === 'monolithic' ? { body: () => (desc.size === 0 ? Buffer.alloc(0) : readRange(file, 0, desc.size)) } : {}),
        expect: [201, 204],
      });
      await res.body.dump();
      const stored = header(res.headers, 'docker-content-digest');
      if (stored && stored !== desc.digest) throw new RegistryError(ctx, `registry stored the upload as ${stored}`);
      return { how, requests: counter.requests };
    } catch (err) {
      // 404/416: the session URL is stale. A chunked upload whose PATCH kept failing on the network
      // (Distribution answers a stale URL with 404 and closes before reading the body, which the
      // client may see only as EPIPE on every attempt) has lost its session just the same.
      const lostSession = err instanceof RegistryError && (err.status === 404 || err.status === 416 || (how === 'chunked' && err.status === undefined && isNetworkError(err)));
      if (!lostSession || restart >= MAX_RESTARTS) throw err;
      location = undefined;
    }
  }
}

async function patchChunks(
  client: RegistryClient,
  base: { repository: string; object: string; push: true; counter: { requests: number } },
  start: URL,
  size: number,
  chunkSize: number,
  file: string | Buffer,
  ctx: ReturnType<RegistryClient['context']>,
): Promise<URL> {
  let location = start;
  for (let offset = 0; offset < size; ) {
    const end = Math.min(size, offset + chunkSize);
    const from = offset;
    const res = await client.fetch({
      ...base,
      method: 'PATCH',
      url: location.href,
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${from}-${end - 1}`, 'content-length': String(end - from) },
      body: () => readRange(file, from, end),
      expect: [202],
    });
    await res.body.dump();
    location = uploadLocation(client, res, ctx);
    offset = header(res.headers, 'range') ? rangeEnd(res, ctx) : end;
    if (offset !== end) throw new RegistryError(ctx, `chunk ${from}-${end - 1}: the registry reports ${offset} bytes received`);
  }
  return location;
}

/** Bytes [start, end) of a blob to send: a stream of the file, or a slice of the bytes. */
function readRange(file: string | Buffer, start: number, end: number): Readable | Buffer {
  return typeof file === 'string' ? createReadStream(file, { start, end: end - 1 }) : file.subarray(start, end);
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
