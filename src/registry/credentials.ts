// Registry credentials from docker's config.json (formats.md §1c.6): `DOCKER_AUTH_CONFIG` (JSON in
// the config format) first, then `$DOCKER_CONFIG/config.json` (default ~/.docker/config.json).
// Within one config a per-host `credHelpers` entry wins over `credsStore`, which wins over `auths`.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';

export type Credential =
  | { kind: 'basic'; username: string; password: string }
  /** A refresh token for the OAuth2 `refresh_token` grant (docker's `identitytoken`). */
  | { kind: 'identity'; username?: string; token: string }
  /** A bearer token sent as is (docker's `registrytoken`). */
  | { kind: 'bearer'; token: string };

export interface CredentialStore {
  /** Credentials for a registry named as in references (`docker.io`, `127.0.0.1:5000`), if any. */
  get(domain: string): Promise<Credential | undefined>;
}

export class CredentialError extends Error {}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
}

interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

const HUB_KEY = 'https://index.docker.io/v1/';
const HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** `https://host:port/v1/` → `host:port`, the way docker/cli matches legacy `auths` keys. */
function keyHost(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '');
}

function serverKey(domain: string): string {
  return HUB_ALIASES.has(domain) ? HUB_KEY : domain;
}

function entryFor<T>(map: Record<string, T> | undefined, domain: string): T | undefined {
  if (!map) return undefined;
  const key = serverKey(domain);
  if (key in map) return map[key];
  for (const [k, v] of Object.entries(map)) {
    const h = keyHost(k);
    if (h === domain || (HUB_ALIASES.has(domain) && HUB_ALIASES.has(h))) return v;
  }
  return undefined;
}

function fromAuthEntry(e: AuthEntry, where: string): Credential | undefined {
  if (e.registrytoken) return { kind: 'bearer', token: e.registrytoken };
  let { username, password } = e;
  if (e.auth) {
    const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new CredentialError(`${where}: "auth" does not decode to user:password`);
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1).replace(/\0+$/, '');
  }
  if (e.identitytoken) return { kind: 'identity', token: e.identitytoken, ...(username ? { username } : {}) };
  if (username !== undefined && password !== undefined && username !== '') return { kind: 'basic', username, password };
  return undefined;
}

/** Runs `docker-credential-<helper> get` with the server URL on stdin. */
async function fromHelper(helper: string, domain: string, env: NodeJS.ProcessEnv): Promise<Credential | undefined> {
  const bin = `docker-credential-${helper}`;
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(bin, ['get'], { stdio: ['pipe', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', (e) => reject(new CredentialError(`credential helper ${bin}: ${e.message}`)));
    child.once('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
    child.stdin.end(serverKey(domain));
  });
  if (code !== 0) {
    if (/credentials not found/i.test(stdout + stderr)) return undefined;
    throw new CredentialError(`credential helper ${bin} failed for ${domain} (exit ${code}): ${(stderr || stdout).trim()}`);
  }
  let parsed: { Username?: string; Secret?: string };
  try {
    parsed = JSON.parse(stdout) as typeof parsed;
  } catch {
    throw new CredentialError(`credential helper ${bin}: output for ${domain} is not JSON`);
  }
  if (!parsed.Secret) return undefined;
  if (parsed.Username === '<token>') return { kind: 'identity', token: parsed.Secret };
  return { kind: 'basic', username: parsed.Username ?? '', password: parsed.Secret };
}

async function fromConfig(cfg: DockerConfig, domain: string, where: string, env: NodeJS.ProcessEnv): Promise<Credential | undefined> {
  const helper = entryFor(cfg.credHelpers, domain) ?? cfg.credsStore;
  if (helper) return fromHelper(helper, domain, env);
  const entry = entryFor(cfg.auths, domain);
  return entry ? fromAuthEntry(entry, `${where}: auths entry for ${domain}`) : undefined;
}

function parseConfig(text: string, where: string): DockerConfig {
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as DockerConfig;
  } catch (err) {
    throw new CredentialError(`${where}: ${(err as Error).message}`);
  }
}

/** The docker CLI's credential lookup, reading the environment given (default: this process's). */
export function dockerConfigCredentials(env: NodeJS.ProcessEnv = process.env): CredentialStore {
  return {
    async get(domain) {
      if (env.DOCKER_AUTH_CONFIG) {
        const c = await fromConfig(parseConfig(env.DOCKER_AUTH_CONFIG, 'DOCKER_AUTH_CONFIG'), domain, 'DOCKER_AUTH_CONFIG', env);
        if (c) return c;
      }
      const path = join(env.DOCKER_CONFIG ?? join(env.HOME ?? homedir(), '.docker'), 'config.json');
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw new CredentialError(`${path}: ${(err as Error).message}`);
      }
      return fromConfig(parseConfig(text, path), domain, path, env);
    },
  };
}

/** A fixed credential for one registry (from command-line options or tests). */
export function staticCredentials(domain: string, cred: Credential): CredentialStore {
  return { get: async (d) => (d === domain ? cred : undefined) };
}
