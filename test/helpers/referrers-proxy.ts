// A registry with the OCI 1.1 referrers API, for tests: a proxy in front of a Distribution 2.8 (which
// lacks the API) that passes every request through except two. It answers
// `GET /v2/<name>/referrers/<digest>` itself from the referrers tag schema's index in Distribution,
// so both discovery paths see the same data; and on a manifest PUT with a `subject` it updates that
// index itself, as a registry with the API tracks subjects, and answers with `OCI-Subject`.
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { sha256 } from '../../src/oci/digest.js';

export interface ReferrersProxy {
  /** `127.0.0.1:PORT`. */
  host: string;
  /** Requests seen: referrers API calls, and manifest GETs/HEADs of a referrers tag (`sha256-…`). */
  counts: { referrers: number; tagReads: number };
  stop(): Promise<void>;
}

const INDEX = 'application/vnd.oci.image.index.v1+json';

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

interface Listed {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** `pageSize`: at most this many descriptors per answer, the rest behind `Link: <…>; rel="next"`. */
export async function startReferrersProxy(upstream: string, opts: { pageSize?: number } = {}): Promise<ReferrersProxy> {
  const counts = { referrers: 0, tagReads: 0 };
  const tagUrl = (name: string, digest: string) => `${upstream}/v2/${name}/manifests/${digest.replace(':', '-')}`;
  const readTag = async (name: string, digest: string): Promise<Listed[]> => {
    const res = await fetch(tagUrl(name, digest), { headers: { accept: INDEX } });
    return res.status === 404 ? [] : ((await res.json()) as { manifests: Listed[] }).manifests;
  };

  async function referrers(res: ServerResponse, url: URL, name: string, digest: string): Promise<void> {
    counts.referrers++;
    const type = url.searchParams.get('artifactType');
    const all = (await readTag(name, digest)).filter((d) => type === null || d.artifactType === type);
    const page = Number(url.searchParams.get('page') ?? '0');
    const size = opts.pageSize ?? (all.length || 1);
    const headers: Record<string, string> = { 'content-type': INDEX };
    if (type !== null) headers['oci-filters-applied'] = 'artifactType';
    if ((page + 1) * size < all.length) {
      const next = new URL(url.pathname, 'http://x');
      if (type !== null) next.searchParams.set('artifactType', type);
      next.searchParams.set('page', String(page + 1));
      headers.link = `<${next.pathname}${next.search}>; rel="next"`;
    }
    res.writeHead(200, headers).end(JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests: all.slice(page * size, (page + 1) * size) }));
  }

  async function putManifest(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    const bytes = await body(req);
    const up = await fetch(`${upstream}${req.url}`, { method: 'PUT', body: new Uint8Array(bytes), headers: { 'content-type': req.headers['content-type'] ?? '' } });
    const headers: Record<string, string> = {};
    up.headers.forEach((v, k) => (headers[k] = v));
    const doc = JSON.parse(bytes.toString()) as { mediaType?: string; artifactType?: string; config?: { mediaType: string }; subject?: { digest: string }; annotations?: Record<string, string> };
    if (up.status === 201 && doc.subject) {
      const listed = await readTag(name, doc.subject.digest);
      const digest = sha256(bytes);
      if (!listed.some((d) => d.digest === digest)) {
        const artifactType = doc.artifactType ?? doc.config?.mediaType;
        listed.push({ mediaType: doc.mediaType ?? String(req.headers['content-type']), digest, size: bytes.length, ...(artifactType ? { artifactType } : {}), ...(doc.annotations ? { annotations: doc.annotations } : {}) });
        const put = await fetch(tagUrl(name, doc.subject.digest), { method: 'PUT', body: JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests: listed }), headers: { 'content-type': INDEX } });
        if (put.status !== 201) throw new Error(`proxy: updating the referrers index: HTTP ${put.status}`);
      }
      headers['oci-subject'] = doc.subject.digest;
    }
    res.writeHead(up.status, headers).end(Buffer.from(await up.arrayBuffer()));
  }

  function pass(req: IncomingMessage, res: ServerResponse): void {
    const target = new URL(req.url!, upstream);
    const out = request(target, { method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode!, up.headers);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const ref = /^\/v2\/(.+)\/referrers\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
    const manifest = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
    const handled =
      ref && req.method === 'GET'
        ? referrers(res, url, ref[1]!, ref[2]!)
        : manifest && req.method === 'PUT' && /json/.test(req.headers['content-type'] ?? '')
          ? putManifest(req, res, manifest[1]!)
          : undefined;
    if (handled) {
      handled.catch((err: Error) => res.writeHead(500).end(err.message));
      return;
    }
    if (manifest && /^sha256-/.test(manifest[2]!) && (req.method === 'GET' || req.method === 'HEAD')) counts.tagReads++;
    pass(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    host: `127.0.0.1:${port}`,
    counts,
    stop: () => {
      server.closeAllConnections(); // clients keep connections alive
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}
