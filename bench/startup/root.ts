// The directory of the Starling package the harness belongs to: a checkout (the harness runs from
// its TypeScript sources) or an installed package (compiled, under dist/harness/). Found by walking
// up to the directory that holds the package's CLI.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function packageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin/starling.js'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no Starling package (package.json and bin/starling.js) above ${from}`);
  }
}

export const PACKAGE_ROOT = packageRoot(dirname(fileURLToPath(import.meta.url)));
