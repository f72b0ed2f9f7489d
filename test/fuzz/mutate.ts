// The mutation engine of the fuzz harness: a seeded PRNG (runs are reproducible from the seed) and
// byte-level mutators in the style of AFL's havoc stage — bit flips, random bytes, inserts, deletes,
// duplicated ranges, splices with another seed, interesting integers, truncation — plus text-aware
// ones for JSON and decimal numbers, and a structural JSON mutator that swaps values for hostile ones
// while keeping the document parseable (so the validators behind JSON.parse get exercised).

/** splitmix32-style PRNG: small, fast, and the same sequence for the same seed everywhere. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x9e3779b9) >>> 0;
    let z = this.s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() / 0x100000000 < p;
  }
}

const INTERESTING_8 = [0, 1, 0x7f, 0x80, 0xff, 0x20, 0x30, 0x37];
const INTERESTING_32 = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x10000, 0xffff, 512, 4096, 0x184d2a50, 0xfd2fb528];
const INTERESTING_64 = [0n, 1n, 0x1fffffffffffffn, 0x20000000000000n, 0x7fffffffffffffffn, 0xffffffffffffffffn, 150n << 20n, 8n];
/** Replacements for digit runs in text (JSON numbers, octal tar fields, positions). */
const INTERESTING_NUMBERS = ['0', '-1', '1', '9007199254740993', '1e308', '0.5', '157286400', '18446744073709551615', '77777777777', '-0', '1e-7'];
/** Tokens that break or twist paths and JSON. */
const TOKENS = ['..', '/', '//', '../', '\\u0000', '\0', 'null', '[]', '{}', '"', ',', ':', '\\', 'ustar', 'STARGZ', 'GNUlInUx', '.wh.', '.wh..wh..opq', '\u00ff', '\ud800'];

export type Mutator = (rng: Rng, input: Buffer, others: readonly Buffer[]) => Buffer;

function pos(rng: Rng, b: Buffer): number {
  return rng.int(b.length + 1);
}

const mutators: Mutator[] = [
  function bitFlip(rng, b) {
    if (b.length === 0) return b;
    const out = Buffer.from(b);
    const n = 1 + rng.int(4);
    for (let i = 0; i < n; i++) out[rng.int(out.length)] ^= 1 << rng.int(8);
    return out;
  },
  function randomByte(rng, b) {
    if (b.length === 0) return Buffer.from([rng.int(256)]);
    const out = Buffer.from(b);
    out[rng.int(out.length)] = rng.chance(0.5) ? rng.int(256) : rng.pick(INTERESTING_8);
    return out;
  },
  function insertBytes(rng, b) {
    const p = pos(rng, b);
    const n = 1 + rng.int(rng.chance(0.9) ? 16 : 2048);
    const ins = Buffer.alloc(n, rng.chance(0.5) ? 0 : rng.int(256));
    if (rng.chance(0.5)) for (let i = 0; i < n; i++) ins[i] = rng.int(256);
    return Buffer.concat([b.subarray(0, p), ins, b.subarray(p)]);
  },
  function deleteRange(rng, b) {
    if (b.length === 0) return b;
    const p = rng.int(b.length);
    const n = 1 + rng.int(Math.min(b.length - p, rng.chance(0.8) ? 16 : 4096));
    return Buffer.concat([b.subarray(0, p), b.subarray(p + n)]);
  },
  function duplicateRange(rng, b) {
    if (b.length === 0) return b;
    const from = rng.int(b.length);
    const n = 1 + rng.int(Math.min(b.length - from, 1024));
    const to = pos(rng, b);
    return Buffer.concat([b.subarray(0, to), b.subarray(from, from + n), b.subarray(to)]);
  },
  function splice(rng, b, others) {
    const o = others.length > 0 ? rng.pick(others) : b;
    const cut = pos(rng, b);
    const from = rng.int(o.length + 1);
    return Buffer.concat([b.subarray(0, cut), o.subarray(from)]);
  },
  function interestingInt(rng, b) {
    if (b.length < 8) return b;
    const out = Buffer.from(b);
    const width = rng.pick([1, 2, 4, 8]);
    const p = rng.int(out.length - width + 1);
    const le = rng.chance(0.5);
    if (width === 1) out[p] = rng.pick(INTERESTING_8);
    else if (width === 2) le ? out.writeUInt16LE(rng.pick(INTERESTING_32) & 0xffff, p) : out.writeUInt16BE(rng.pick(INTERESTING_32) & 0xffff, p);
    else if (width === 4) le ? out.writeUInt32LE(rng.pick(INTERESTING_32), p) : out.writeUInt32BE(rng.pick(INTERESTING_32), p);
    else le ? out.writeBigUInt64LE(rng.pick(INTERESTING_64), p) : out.writeBigUInt64BE(rng.pick(INTERESTING_64), p);
    return out;
  },
  function truncate(rng, b) {
    return b.subarray(0, rng.int(b.length + 1));
  },
  function replaceNumber(rng, b) {
    const text = b.toString('latin1');
    const runs = [...text.matchAll(/-?\d+/g)];
    if (runs.length === 0) return b;
    const m = rng.pick(runs);
    return Buffer.concat([b.subarray(0, m.index), Buffer.from(rng.pick(INTERESTING_NUMBERS), 'latin1'), b.subarray(m.index + m[0].length)]);
  },
  function insertToken(rng, b) {
    const p = pos(rng, b);
    return Buffer.concat([b.subarray(0, p), Buffer.from(rng.pick(TOKENS)), b.subarray(p)]);
  },
];

/** One to four stacked byte-level mutations of `input`. */
export function mutateBytes(rng: Rng, input: Buffer, others: readonly Buffer[]): Buffer {
  let out = input;
  const n = 1 + rng.int(4);
  for (let i = 0; i < n; i++) out = rng.pick(mutators)(rng, out, others);
  return out;
}

const HOSTILE_VALUES: unknown[] = [
  null, true, -1, 0, 1, 0.5, 1e308, 2 ** 53, 2 ** 53 + 2, -(2 ** 31), 157286400, '', '..', '../../etc/passwd', '/abs/path',
  'a//b', 'a\u0000b', 'x'.repeat(5000), 'sha256:' + '0'.repeat(64), 'sha256:zz', [], {}, [1, 2], { a: 1 }, '1970-01-01T00:00:00Z', 'not-a-time',
  'reg', 'chunk', 'hardlink', 'symlink', 'dir', 'zeros',
];

/** Paths of every value inside a JSON document, for picking one to change. */
function valuePaths(v: unknown, path: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(path);
  if (out.length > 20_000) return out;
  if (Array.isArray(v)) v.forEach((x, i) => valuePaths(x, [...path, i], out));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) valuePaths(x, [...path, k], out);
  return out;
}

/**
 * Structural mutation of a JSON document: changes, deletes, duplicates or reorders values (array
 * elements included), so the result still parses and reaches the validators. Falls back to byte
 * mutation when the input is not JSON.
 */
export function mutateJson(rng: Rng, input: Buffer, others: readonly Buffer[]): Buffer {
  let doc: unknown;
  try {
    doc = JSON.parse(input.toString('utf8'));
  } catch {
    return mutateBytes(rng, input, others);
  }
  const n = 1 + rng.int(3);
  for (let k = 0; k < n; k++) {
    const paths = valuePaths(doc);
    const path = rng.pick(paths);
    if (path.length === 0) {
      doc = rng.chance(0.9) ? doc : rng.pick(HOSTILE_VALUES);
      continue;
    }
    const parent = path.slice(0, -1).reduce<unknown>((o, key) => (o as Record<string | number, unknown>)[key], doc) as Record<string | number, unknown> | unknown[];
    const key = path[path.length - 1]!;
    const op = rng.int(6);
    if (op === 0 && Array.isArray(parent)) parent.splice(key as number, 1);
    else if (op === 0) delete (parent as Record<string, unknown>)[key];
    else if (op === 1 && Array.isArray(parent)) parent.splice(rng.int(parent.length + 1), 0, structuredClone(parent[key as number]));
    else if (op === 2 && Array.isArray(parent) && parent.length > 1) {
      const j = rng.int(parent.length);
      [parent[key as number], parent[j]] = [parent[j], parent[key as number]];
    } else if (op === 3 && typeof (parent as Record<string | number, unknown>)[key] === 'number') {
      const v = (parent as Record<string | number, unknown>)[key] as number;
      (parent as Record<string | number, unknown>)[key] = rng.pick([v + 1, v - 1, v * 2, v + 512, Math.floor(v / 2), -v]);
    } else (parent as Record<string | number, unknown>)[key] = structuredClone(rng.pick(HOSTILE_VALUES));
  }
  return Buffer.from(JSON.stringify(doc) ?? 'null', 'utf8');
}
