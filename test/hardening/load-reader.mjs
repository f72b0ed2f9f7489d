// One reader of the load and lifecycle tests, run as its own process (never inside the process that
// serves the mount). Until its deadline it does random preads, whole-file sequential reads, stats
// and full directory walks on MOUNT, comparing every byte and size with the same file under SRC.
// Prints one JSON line: {ops, reads, bytesVerified, mismatches, errors, latenciesMs}. Plain ESM
// JavaScript on purpose: 64 of these start quickly without a TypeScript loader.
//   node load-reader.mjs MOUNT SRC DURATION_MS SEED
import { closeSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';

const [mount, src, durationArg, seedArg] = process.argv.slice(2);
const deadline = Date.now() + Number(durationArg);
let seed = Number(seedArg) >>> 0 || 1;
const rand = (n) => {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed % n;
};

function walk(root, rel = '', out = []) {
  for (const d of readdirSync(join(root, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${d.name}` : d.name;
    if (d.isDirectory()) walk(root, p, out);
    else out.push(p);
  }
  return out;
}

const files = walk(src).sort();
const sizes = new Map(files.map((f) => [f, statSync(join(src, f)).size]));
const stats = { ops: 0, reads: 0, bytesVerified: 0, mismatches: [], errors: [], latenciesMs: [] };

/** pread of the mount, timed per read call (one read call = at least one FUSE read). */
function timedRead(fd, buf, len, pos) {
  const t0 = performance.now();
  const n = readSync(fd, buf, 0, len, pos);
  stats.latenciesMs.push(Math.round((performance.now() - t0) * 100) / 100);
  stats.reads++;
  return n;
}

function compareRange(file, offset, length) {
  const size = sizes.get(file);
  const want = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
  const sfd = openSync(join(src, file), 'r');
  try {
    readSync(sfd, want, 0, want.length, offset);
  } finally {
    closeSync(sfd);
  }
  const got = Buffer.alloc(length);
  const fd = openSync(join(mount, file), 'r');
  let n = 0;
  try {
    while (n < length) {
      const r = timedRead(fd, got.subarray(n), length - n, offset + n);
      if (r === 0) break;
      n += r;
    }
  } finally {
    closeSync(fd);
  }
  if (n !== want.length || !got.subarray(0, n).equals(want)) stats.mismatches.push(`${file} @${offset}+${length}: got ${n} bytes, want ${want.length}`);
  else stats.bytesVerified += n;
}

const ops = [
  function randomRead() {
    const f = files[rand(files.length)];
    const size = sizes.get(f);
    const len = 1 + rand(256 << 10);
    compareRange(f, size > 0 ? rand(size) : 0, len);
  },
  function sequentialRead() {
    const f = files[rand(files.length)];
    compareRange(f, 0, sizes.get(f) + 1);
  },
  function statFile() {
    const f = files[rand(files.length)];
    const st = statSync(join(mount, f));
    if (st.size !== sizes.get(f)) stats.mismatches.push(`${f}: stat size ${st.size}, want ${sizes.get(f)}`);
  },
  function find() {
    const got = walk(mount).sort();
    if (got.join('\n') !== files.join('\n')) stats.mismatches.push(`find: ${got.length} files, want ${files.length}`);
  },
];

while (Date.now() < deadline) {
  const op = ops[rand(10) < 5 ? 0 : rand(10) < 6 ? 1 : 2 + rand(2)];
  try {
    op();
  } catch (err) {
    stats.errors.push(`${op.name}: ${err.code ?? ''} ${err.message}`);
    if (stats.errors.length > 20) break;
  }
  stats.ops++;
}
process.stdout.write(JSON.stringify(stats) + '\n');
