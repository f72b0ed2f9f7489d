#!/usr/bin/env node
// Builds native/ (the addon: gzip checkpoints, sha256 on the libuv pool, exit without teardown) with node-gyp against the Node headers installed beside
// this node binary (Debian: /usr/include/node), never downloading headers. Run by `npm ci` (the
// package's install script). A missing toolchain or header stops it with what to install.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nodedir = dirname(dirname(process.execPath));
const SETUP = 'run ./scripts/setup.sh (Debian: apt-get install g++ make python3 zlib1g-dev)';

function fail(message) {
  process.stderr.write(`build-native: ${message}\n`);
  process.exit(1);
}

const onPath = (tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
const missing = ['c++', 'make', 'python3'].filter((tool) => !onPath(tool));
if (missing.length > 0) fail(`cannot build the native addon: ${missing.join(', ')} not found; ${SETUP}`);
if (!existsSync(join(nodedir, 'include/node/node_api.h'))) {
  fail(`cannot build the native addon: no Node headers in ${join(nodedir, 'include/node')} (Debian's nodejs package installs them); headers are never downloaded`);
}
const zlibCheck = spawnSync('c++', ['-E', '-x', 'c++', '-'], { input: '#include <zlib.h>\n', stdio: ['pipe', 'ignore', 'ignore'] });
if (zlibCheck.status !== 0) fail(`cannot build the native addon: zlib.h not found; ${SETUP}`);

// npm puts its bundled node-gyp on PATH for install scripts; run by hand, use npm's copy.
const npmGyp = join(nodedir, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
const gyp = onPath('node-gyp') ? ['node-gyp'] : existsSync(npmGyp) ? [process.execPath, npmGyp] : fail('node-gyp not found (it comes with npm)');
try {
  execFileSync(gyp[0], [...gyp.slice(1), 'rebuild', `--directory=${join(root, 'native')}`, `--nodedir=${nodedir}`, '--jobs=1', '--loglevel=warn'], { stdio: 'inherit' });
} catch {
  fail('node-gyp failed to build native/ (see its output above)');
}
