// The benchmark's registry: a real Distribution registry (test/helpers/registry.ts) reached through
// the emulated link of relay.ts. Images are pushed to the registry directly (`directHost`); every
// measured pull goes through the link (`host`), where the relay counts the bytes.
import { request, Agent } from 'node:http';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { startRegistry, type RunningRegistry } from '../../test/helpers/registry.js';
import { sha256 } from '../../src/oci/digest.js';
import type { LinkProfile } from './relay.js';
import { RelayProcess } from './relay-process.js';

export const PROFILES = {
  /** The default: 20 ms RTT, 100 Mbit/s. */
  default: { rttMs: 20, rateMbit: 100 },
  gigabit: { rttMs: 20, rateMbit: 1000 },
} as const satisfies Record<string, LinkProfile>;

export interface LinkCheck {
  /** Median round trip of an HTTP request on a kept-alive connection through the link, in ms. */
  rttMs: number;
  /** Rate of one timed blob download through the link (fresh connection, request to last byte), Mbit/s. */
  throughputMbit: number;
  probeBytes: number;
  probeSeconds: number;
}

export interface EmulatedRegistry {
  profile: LinkProfile;
  /** `127.0.0.1:PORT` of the relay: the registry as seen over the emulated link. */
  host: string;
  /** The registry itself, for pushing images without going through the link. */
  directHost: string;
  /** The link emulator, in its own process; its counters are the ground truth of bytes moved. */
  relay: RelayProcess;
  registry: RunningRegistry;
  stop(): Promise<void>;
}

export async function startEmulatedRegistry(profile: LinkProfile): Promise<EmulatedRegistry> {
  const registry = await startRegistry();
  let relay: RelayProcess;
  try {
    const [host, port] = registry.host.split(':');
    relay = await RelayProcess.start({ host: host!, port: Number(port) }, profile);
  } catch (err) {
    await registry.stop();
    throw err;
  }
  return {
    profile,
    host: relay.host,
    directHost: registry.host,
    relay,
    registry,
    async stop() {
      await relay.close();
      await registry.stop();
    },
  };
}

interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  bytes: number;
}

function httpRequest(url: string, opts: { method?: string; agent?: Agent; body?: Buffer } = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', agent: opts.agent }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => (bytes += d.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Monolithic blob upload (POST then PUT), straight to the registry. */
export async function pushBlob(directHost: string, repo: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const start = await httpRequest(`http://${directHost}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  const location = start.headers.location;
  if (start.status !== 202 || typeof location !== 'string') throw new Error(`blob upload to ${directHost}/${repo}: POST answered ${start.status}`);
  const url = new URL(location, `http://${directHost}`);
  url.searchParams.set('digest', digest);
  const put = await httpRequest(url.toString(), { method: 'PUT', body: data });
  if (put.status !== 201) throw new Error(`blob upload to ${directHost}/${repo}: PUT answered ${put.status}`);
  return digest;
}

/**
 * Measures the link as a client sees it: RTT from HTTP round trips on one kept-alive connection,
 * throughput from downloading a `probeBytes` random blob on a fresh connection.
 */
export async function checkLink(reg: EmulatedRegistry, probeBytes = 50 * 1000 * 1000): Promise<LinkCheck> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const rtts: number[] = [];
  try {
    for (let i = 0; i < 8; i++) {
      const t0 = performance.now();
      const res = await httpRequest(`http://${reg.host}/v2/`, { agent });
      if (res.status !== 200) throw new Error(`link check: GET /v2/ through the link answered ${res.status}`);
      if (i >= 2) rtts.push(performance.now() - t0); // the first pays the handshake
    }
  } finally {
    agent.destroy();
  }
  rtts.sort((a, b) => a - b);
  const digest = await pushBlob(reg.directHost, 'starling-bench/link-probe', randomBytes(probeBytes));
  const t0 = performance.now();
  const res = await httpRequest(`http://${reg.host}/v2/starling-bench/link-probe/blobs/${digest}`, { agent: new Agent({ keepAlive: false }) });
  const seconds = (performance.now() - t0) / 1000;
  if (res.status !== 200 || res.bytes !== probeBytes) throw new Error(`link check: probe blob download answered ${res.status} with ${res.bytes} bytes`);
  return {
    rttMs: Number(rtts[Math.floor(rtts.length / 2)]!.toFixed(2)),
    throughputMbit: Number(((probeBytes * 8) / seconds / 1e6).toFixed(2)),
    probeBytes,
    probeSeconds: Number(seconds.toFixed(3)),
  };
}

/** Throws when the measured link is not the configured one (a loaded machine, a broken relay). */
export function assertLinkMatches(profile: LinkProfile, check: LinkCheck): void {
  const problems: string[] = [];
  if (check.rttMs < profile.rttMs * 0.9 || check.rttMs > profile.rttMs * 1.5 + 5) problems.push(`RTT ${check.rttMs} ms, configured ${profile.rttMs} ms`);
  if (check.throughputMbit < profile.rateMbit * 0.8 || check.throughputMbit > profile.rateMbit * 1.05) {
    problems.push(`throughput ${check.throughputMbit} Mbit/s, configured ${profile.rateMbit} Mbit/s`);
  }
  if (problems.length) throw new Error(`emulated link check failed: ${problems.join('; ')}`);
}
