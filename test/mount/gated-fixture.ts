// For spawn.test.ts: `after-exit-fixture.ts MARKER LOG` makes itself again as a daemon process with
// `afterExit` (the second run writes its pid to MARKER and exits), prints that process's pid, and
// exits when its stdin ends: the test decides when.
import { writeFileSync } from 'node:fs';
import { daemonProcess } from '../../src/mount/spawn.js';

const [first, second] = process.argv.slice(2);
if (first === 'started') {
  writeFileSync(second!, String(process.pid));
} else {
  const child = await daemonProcess(['started', first!], second!, { ipc: false, afterExit: true });
  process.stdout.write(`${child.pid}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}
