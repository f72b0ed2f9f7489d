// `docker://[HOST[:PORT]/]NAME[:TAG][@DIGEST]` references, normalised the way Docker does
// (distribution/reference `ParseNormalizedNamed`): no host → docker.io, one-component names on
// docker.io → `library/NAME`, no tag and no digest → `latest`.
import { isDigest, type Digest } from '../oci/digest.js';

export class ReferenceError extends Error {}

export interface DockerReference {
  /** The registry as written in references: `docker.io`, `127.0.0.1:5000`, `[::1]:5000`. */
  readonly domain: string;
  /** Where to connect (`registry-1.docker.io` for docker.io), `host[:port]`. */
  readonly host: string;
  /** The repository name without the registry: `library/ubuntu`. */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: Digest;
}

const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_API = 'registry-1.docker.io';
// distribution/reference grammar: path components joined by '/', tags up to 128 characters.
const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;
const MAX_NAME = 255;

/** Parses a docker reference, with or without the `docker://` prefix. */
export function parseDockerReference(input: string): DockerReference {
  const fail = (why: string): never => {
    throw new ReferenceError(`invalid docker reference ${JSON.stringify(input)}: ${why} (expected docker://[HOST[:PORT]/]NAME[:TAG][@DIGEST])`);
  };
  let s = input.startsWith('docker://') ? input.slice('docker://'.length) : input;
  if (s === '') fail('empty');
  let digest: Digest | undefined;
  const at = s.indexOf('@');
  if (at >= 0) {
    const d = s.slice(at + 1);
    if (!isDigest(d)) fail(`bad digest ${JSON.stringify(d)} (sha256:<64 lower-case hex>)`);
    digest = d as Digest;
    s = s.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = s.lastIndexOf('/');
  const colon = s.lastIndexOf(':');
  // A colon after the last slash starts the tag; one before it belongs to HOST:PORT.
  if (colon > lastSlash && !(lastSlash < 0 && s.startsWith('['))) {
    tag = s.slice(colon + 1);
    if (!TAG_RE.test(tag)) fail(`bad tag ${JSON.stringify(tag)}`);
    s = s.slice(0, colon);
  }
  let domain = DOCKER_HUB;
  let path = s;
  const slash = s.indexOf('/');
  if (slash >= 0) {
    const first = s.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[') || first !== first.toLowerCase()) {
      domain = first;
      path = s.slice(slash + 1);
    }
  }
  if (!HOST_RE.test(domain)) fail(`bad registry host ${JSON.stringify(domain)}`);
  if (domain.startsWith('[')) checkIPv6(domain, fail);
  const port = /:(\d+)$/.exec(domain.startsWith('[') ? domain.slice(domain.indexOf(']')) : domain);
  if (port && Number(port[1]) > 65535) fail(`port ${port[1]} out of range`);
  if (domain === 'index.docker.io') domain = DOCKER_HUB;
  if (domain === DOCKER_HUB && !path.includes('/')) path = `library/${path}`;
  if (path === '') fail('missing repository name');
  for (const c of path.split('/')) {
    if (!COMPONENT_RE.test(c)) fail(`bad repository name component ${JSON.stringify(c)} (lower-case letters, digits and separators . _ __ -)`);
  }
  if (domain.length + 1 + path.length > MAX_NAME) fail(`name longer than ${MAX_NAME} characters`);
  if (!tag && !digest) tag = 'latest';
  return {
    domain,
    host: domain === DOCKER_HUB ? DOCKER_HUB_API : domain,
    repository: path,
    ...(tag ? { tag } : {}),
    ...(digest ? { digest } : {}),
  };
}

function checkIPv6(domain: string, fail: (why: string) => never): void {
  const inner = domain.slice(1, domain.indexOf(']'));
  const groups = inner.split(':');
  if (groups.length < 3 || groups.length > 8 || !/^[0-9A-Fa-f:.]+$/.test(inner)) fail(`bad IPv6 address ${JSON.stringify(inner)}`);
}

/** `docker://domain/repository[:tag][@digest]`. */
export function formatDockerReference(ref: DockerReference): string {
  return `docker://${ref.domain}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** Docker talks plain HTTP to loopback registries without being told; everything else is TLS. */
export function defaultsToPlainHttp(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return name === 'localhost' || name === '::1' || /^127\.\d+\.\d+\.\d+$/.test(name);
}
