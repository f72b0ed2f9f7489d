// For spawn.test.ts: `gated-fixture.ts MARKER LOG` makes itself again as a daemon process with
// `gated` (the second run writes its pid to MARKER and exits), prints that process's pid, opens the
// gate when a line comes on its stdin, and exits when its stdin ends: the test decides when.
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { daemonProcess } from '../../src/mount/spawn.js';

const [first, second] = process.argv.slice(2);
if (first === 'started') {
  writeFileSync(second!, String(process.pid));
} else {
  const child = await daemonProcess(['started', first!], second!, { ipc: false, gated: true });
  process.stdout.write(`${child.pid}\n`);
  createInterface({ input: process.stdin })
    .on('line', () => child.stdin!.end())
    .on('close', () => process.exit(0));
}
