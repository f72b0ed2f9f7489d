// Platforms: parsing, normalisation and containerd's ordered matching (formats.md §1c.3,
// containerd/platforms `database.go`, `platforms.go`, `compare.go`).
import { readFileSync } from 'node:fs';
import { Annotation } from './mediatypes.js';
import type { Descriptor, Platform } from './types.js';

export class PlatformError extends Error {}

const COMPONENT_RE = /^[A-Za-z0-9_.-]+$/;
// `os[(version[+feature]*)]`, as containerd's specifier syntax allows (e.g. `windows(10.0.17763+win32k)`).
const OS_RE = /^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)((?:\+[A-Za-z0-9_.%-]+)*)\))?$/;

const KNOWN_OS = new Set(['aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'hurd', 'illumos', 'ios', 'js', 'linux', 'nacl', 'netbsd', 'openbsd', 'plan9', 'solaris', 'windows', 'zos']);
const KNOWN_ARCH = new Set(['386', 'amd64', 'amd64p32', 'arm', 'armbe', 'arm64', 'arm64be', 'ppc64', 'ppc64le', 'loong64', 'mips', 'mipsle', 'mips64', 'mips64le', 'mips64p32', 'mips64p32le', 'ppc', 'riscv', 'riscv64', 's390', 's390x', 'sparc', 'sparc64', 'wasm']);

function normalizeOS(os: string): string {
  if (os === '') return hostPlatform().os;
  const lower = os.toLowerCase();
  return lower === 'macos' ? 'darwin' : lower;
}

function normalizeArch(arch: string, variant: string): { architecture: string; variant: string } {
  arch = arch.toLowerCase();
  variant = variant.toLowerCase();
  switch (arch) {
    case 'i386':
      return { architecture: '386', variant: '' };
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return { architecture: 'amd64', variant: variant === 'v1' ? '' : variant };
    case 'aarch64':
    case 'arm64':
      if (variant === '8' || variant === 'v8' || variant === 'v8.0') variant = '';
      else if (variant === '9' || variant === '9.0' || variant === 'v9.0') variant = 'v9';
      return { architecture: 'arm64', variant };
    case 'armhf':
      return { architecture: 'arm', variant: 'v7' };
    case 'armel':
      return { architecture: 'arm', variant: 'v6' };
    case 'arm':
      if (variant === '' || variant === '7') variant = 'v7';
      else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
      return { architecture: 'arm', variant };
    default:
      return { architecture: arch, variant };
  }
}

/**
 * The canonical form of a platform: OS lower-cased (`macos` → `darwin`), architecture aliases
 * resolved (`x86_64` → `amd64`, `aarch64` → `arm64`, `armhf` → `arm/v7`, …), default variants
 * dropped (`arm64/v8`, `amd64/v1` → no variant; `arm` → `arm/v7`), `os.features` sorted and unique.
 * Absent optional fields stay absent.
 */
export function normalizePlatform(p: Platform): Platform {
  const { architecture, variant } = normalizeArch(p.architecture ?? '', p.variant ?? '');
  const out: Platform = { architecture, os: normalizeOS(p.os ?? '') };
  if (p['os.version']) out['os.version'] = p['os.version'];
  if (p['os.features'] && p['os.features'].length > 0) out['os.features'] = [...new Set(p['os.features'])].sort();
  if (variant) out.variant = variant;
  if (p.features && p.features.length > 0) out.features = [...p.features];
  return out;
}

function decodeOSOption(v: string, specifier: string): string {
  try {
    return v.includes('%') ? decodeURIComponent(v) : v;
  } catch {
    throw new PlatformError(`platform ${JSON.stringify(specifier)}: bad escape in ${JSON.stringify(v)}`);
  }
}

/**
 * Parses a platform specifier: `os/arch[/variant]` (e.g. `linux/arm64/v8`, `linux/amd64`), with
 * containerd's optional OS options `os(version+feature…)`, or a lone OS or architecture (the other
 * half is the host's). The result is normalised.
 */
export function parsePlatform(s: string): Platform {
  const bad = (why: string) => new PlatformError(`platform ${JSON.stringify(s)}: ${why} (expected os/arch[/variant], e.g. linux/arm64/v8)`);
  if (s.includes('*')) throw bad('wildcards are not supported');
  const parts = s.split('/');
  if (parts.length > 3) throw bad('too many components');
  const osMatch = OS_RE.exec(parts[0] ?? '');
  if (!osMatch) throw bad(`invalid OS component ${JSON.stringify(parts[0])}`);
  for (const part of parts.slice(1)) {
    if (!COMPONENT_RE.test(part)) throw bad(`invalid component ${JSON.stringify(part)}`);
  }
  const os = normalizeOS(osMatch[1]!);
  const options: Partial<Platform> = {};
  const version = decodeOSOption(osMatch[2] ?? '', s);
  if (version) options['os.version'] = version;
  if (osMatch[3]) options['os.features'] = osMatch[3].slice(1).split('+').map((f) => decodeOSOption(f, s));

  if (parts.length === 1) {
    if (KNOWN_OS.has(os)) return normalizePlatform({ ...hostPlatform(), os, ...options });
    const arch = normalizeArch(parts[0]!, '');
    if (!KNOWN_ARCH.has(arch.architecture)) throw bad('unknown operating system or architecture');
    return normalizePlatform({ os: hostPlatform().os, architecture: arch.architecture, variant: arch.variant });
  }
  return normalizePlatform({ os, architecture: parts[1]!, variant: parts[2] ?? '', ...options });
}

/** `os/arch[/variant]` (no OS version or features), the form `parsePlatform` reads back. */
export function formatPlatform(p: Platform): string {
  if (!p.os) return 'unknown';
  return [p.os, p.architecture, p.variant].filter((x) => x).join('/');
}

let host: Platform | undefined;

/** ARM variant of this machine from /proc/cpuinfo "CPU architecture" (containerd's cpuVariant). */
function armHostVariant(): string {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
  const m = /^CPU architecture\s*:\s*(\S+)/m.exec(cpuinfo);
  if (!m) return '';
  const arch = m[1]!.toLowerCase();
  // Raspberry Pi 1/Zero report ARMv7 but are ARMv6 (containerd's quirk).
  if (arch === '7' && /^model name\s*:.*ARMv6/im.test(cpuinfo)) return 'v6';
  return arch === 'aarch64' ? 'v8' : `v${arch}`;
}

const NODE_ARCH: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64', mips: 'mips', mipsel: 'mipsle' };

/** The platform this process runs on, normalised (read once and cached). */
export function hostPlatform(): Platform {
  if (!host) {
    const architecture = NODE_ARCH[process.arch] ?? process.arch;
    const os = process.platform === 'win32' ? 'windows' : process.platform;
    const variant = architecture === 'arm' || architecture === 'arm64' ? armHostVariant() : '';
    host = normalizePlatform({ os, architecture, variant });
  }
  return { ...host };
}

/** containerd's `platformVector`: the target first, then what it can also run, best first. */
function platformVector(p: Platform): Platform[] {
  const base = { os: p.os, 'os.version': p['os.version'], 'os.features': p['os.features'] };
  const vector: Platform[] = [p];
  const vnum = (v: string | undefined) => (v && /^v?\d+$/.test(v) ? Number(v.replace(/^v/, '')) : NaN);
  switch (p.architecture) {
    case 'amd64': {
      const n = vnum(p.variant);
      if (n > 1) for (let i = n - 1; i >= 1; i--) vector.push({ ...base, architecture: 'amd64', variant: `v${i}` });
      vector.push({ ...base, architecture: '386' });
      break;
    }
    case 'arm': {
      const n = vnum(p.variant);
      if (n > 5) for (let i = n - 1; i >= 5; i--) vector.push({ ...base, architecture: 'arm', variant: `v${i}` });
      break;
    }
    case 'arm64': {
      let variant = p.variant || 'v8';
      const m = /^v?(\d+)(?:\.(\d+))?$/.exec(variant);
      if (m && Number(m[1]) >= 8) {
        let major = Number(m[1]);
        let minor = m[2] !== undefined ? Number(m[2]) : 0;
        const name = (maj: number, min: number) => (min === 0 ? `v${maj}` : `v${maj}.${min}`);
        if (major === 9) {
          for (let i = minor - 1; i >= 0; i--) vector.push({ ...base, architecture: 'arm64', variant: name(9, i) });
          // v9.0 diverged from v8.5: v9.x runs v8.(x+5) code.
          minor += 5;
          major = 8;
          vector.push({ ...base, architecture: 'arm64', variant: name(8, minor) });
        }
        for (let i = minor - 1; i >= 0; i--) vector.push({ ...base, architecture: 'arm64', variant: name(major, i) });
      }
      if (/^v[89]\./.test(variant)) variant = 'v8';
      vector.push(...platformVector({ ...base, architecture: 'arm', variant }));
      break;
    }
  }
  return vector.map(normalizePlatform);
}

/** containerd's matcher: same OS, architecture and variant; candidate `os.features` ⊆ target's; `os.version` only for Windows. */
function matchesExactly(target: Platform, candidate: Platform): boolean {
  const c = normalizePlatform(candidate);
  if (c.os !== target.os || c.architecture !== target.architecture || (c.variant ?? '') !== (target.variant ?? '')) return false;
  if (target.os === 'windows' && target['os.version'] && c['os.version'] !== undefined) {
    // Windows: build numbers (major.minor.build) must agree.
    const build = (v: string) => v.split('.').slice(0, 3).join('.');
    if (build(c['os.version']) !== build(target['os.version'])) return false;
  }
  const have = new Set(target['os.features'] ?? []);
  return (c['os.features'] ?? []).every((f) => have.has(f));
}

export interface PlatformMatcher {
  matches(p: Platform): boolean;
  /** Lower is better; Infinity = no match. Vector position first, then more `os.features` wins. */
  rank(p: Platform): number;
}

/** containerd's `platforms.Only(target)`: matches the target and the platforms it can run, ordered. */
export function platformMatcher(target: Platform): PlatformMatcher {
  const vector = platformVector(normalizePlatform(target));
  const rank = (p: Platform): number => {
    const i = vector.findIndex((v) => matchesExactly(v, p));
    if (i < 0) return Infinity;
    // Fraction in (0, 0.5]: among equal positions, a candidate with more os.features sorts first.
    return i + 1 / (2 + (p['os.features']?.length ?? 0));
  };
  return { rank, matches: (p) => rank(p) !== Infinity };
}

/** BuildKit attestation manifests in an index (`unknown/unknown` + `vnd.docker.reference.type`): never a runnable image. */
export function isAttestationManifest(desc: Descriptor): boolean {
  return desc.annotations?.[Annotation.dockerReferenceType] === 'attestation-manifest';
}
