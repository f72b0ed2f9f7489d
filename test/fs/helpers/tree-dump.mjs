// Prints one line per path under ROOT: type, mode, uid, gid, size, mtime, symlink target, hardlink
// group, sha256 of content, xattrs. Run as a child process (never from the process serving a mount).
// usage: node tree-dump.mjs ROOT [--no-content]
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

const root = process.argv[2];
const content = !process.argv.includes('--no-content');
const firstPathOfInode = new Map();
const xattrs = new Map();
// getfattr -R prints "# file: PATH" then name="value" lines (base64), for files with xattrs.
const fattr = execFileSync('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'base64', '--absolute-names', root], { encoding: 'utf8', maxBuffer: 64 << 20 });
let current;
for (const line of fattr.split('\n')) {
  if (line.startsWith('# file: ')) {
    current = line.slice(8).slice(root.length + 1) || '.';
    xattrs.set(current, []);
  } else if (line && current) xattrs.get(current).push(line);
}
const out = [];
function walk(rel) {
  const abs = rel === '.' ? root : join(root, rel);
  const st = lstatSync(abs);
  const type = st.isDirectory() ? 'dir' : st.isFile() ? 'reg' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'other';
  const fields = [rel, type, (st.mode & 0o7777).toString(8), st.uid, st.gid];
  if (type === 'reg') {
    const key = `${st.dev}:${st.ino}`;
    if (st.nlink > 1 && !firstPathOfInode.has(key)) firstPathOfInode.set(key, rel);
    fields.push(st.size, `nlink=${st.nlink}`, st.nlink > 1 ? `link=${firstPathOfInode.get(key)}` : '');
    if (content) fields.push(createHash('sha256').update(readFileSync(abs)).digest('hex'));
  }
  if (type === 'symlink') fields.push(`-> ${readlinkSync(abs)}`);
  if (type === 'char' || type === 'block') fields.push(`rdev=${st.rdev}`);
  if (type !== 'dir' && type !== 'symlink') fields.push(`mtime=${Math.floor(st.mtimeMs / 1000)}`);
  fields.push(...(xattrs.get(rel) ?? []));
  out.push(fields.join(' '));
  if (type === 'dir') for (const name of readdirSync(abs).sort()) walk(rel === '.' ? name : join(rel, name));
}
walk('.');
process.stdout.write(out.join('\n') + '\n');
