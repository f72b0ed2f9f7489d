// A whole blob as a stream, for full downloads. A connection that breaks mid-body is resumed with
// `Range: bytes=N-` (or, if the registry ignores Range, by skipping the N bytes already passed on),
// under the client's retry budget; the stream errors at its end if size or digest disagree.
import { Readable } from 'node:stream';
import { Sha256Counter } from '../oci/digest.js';
import type { Descriptor } from '../oci/types.js';
import { discard, type RegistryClient } from './client.js';
import { header } from './headers.js';
import { RegistryError, TransientError } from './errors.js';
import { parseContentRange } from './multipart.js';
import { backoffMs, isNetworkError, sleep } from './retry.js';

export function registryBlobStream(client: RegistryClient, repository: string, desc: Pick<Descriptor, 'digest' | 'size'>): Readable {
  return Readable.from(download(client, repository, desc), { objectMode: false, highWaterMark: 1 << 20 });
}

async function* download(client: RegistryClient, repository: string, desc: Pick<Descriptor, 'digest' | 'size'>): AsyncGenerator<Buffer> {
  const object = `blob ${desc.digest}`;
  const ctx = client.context(repository, object);
  const hash = new Sha256Counter();
  let failures = 0;
  for (;;) {
    const resumeAt = hash.bytes;
    let body: Readable | undefined;
    try {
      const res = await client.fetch({
        method: 'GET',
        repository,
        path: `blobs/${desc.digest}`,
        object,
        headers: resumeAt > 0 ? { range: `bytes=${resumeAt}-`, 'accept-encoding': 'identity' } : { 'accept-encoding': 'identity' },
        expect: resumeAt > 0 ? [206, 200] : [200],
      });
      body = res.body;
      let skip = 0;
      if (res.status === 206) {
        const cr = parseContentRange(header(res.headers, 'content-range'));
        if (!cr || cr.start !== resumeAt) throw new RegistryError(ctx, `resuming at byte ${resumeAt}: got Content-Range ${JSON.stringify(header(res.headers, 'content-range') ?? '')}`);
      } else {
        skip = resumeAt;
      }
      for await (const raw of body as AsyncIterable<Buffer>) {
        let chunk = raw;
        if (skip > 0) {
          const n = Math.min(skip, chunk.length);
          skip -= n;
          chunk = chunk.subarray(n);
          if (chunk.length === 0) continue;
        }
        if (hash.bytes + chunk.length > desc.size) throw new RegistryError(ctx, `blob is longer than its descriptor's ${desc.size} bytes`);
        hash.update(chunk);
        yield chunk;
      }
      if (hash.bytes < desc.size) throw new TransientError(`body ended after ${hash.bytes} of ${desc.size} bytes`);
      break;
    } catch (err) {
      if (err instanceof RegistryError) throw err;
      if (!(err instanceof TransientError || isNetworkError(err)) || failures >= client.retry.retries) {
        throw new RegistryError(ctx, `download failed after ${hash.bytes} of ${desc.size} bytes: ${(err as Error).message}`, undefined, { cause: err });
      }
      failures++;
      await sleep(backoffMs(client.retry, failures));
    } finally {
      if (body) discard(body);
    }
  }
  const actual = hash.digest();
  if (actual !== desc.digest) throw new RegistryError(ctx, `blob digest mismatch: the ${desc.size} bytes received hash to ${actual}`);
}
